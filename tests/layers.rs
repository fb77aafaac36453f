//! The architecture as a test: layers flow one way, and no two files import each other.
//!
//! ```text
//! program (vocabulary) <- model, kernel <- check <- report <- front ends
//! ```
//!
//! `program/` imports nothing above it; `model/` and `kernel/` import only `program/` (never each
//! other); `check/` imports `program/` and `model/` (a kernel run reaches it as data,
//! `program::outcome::KernelRun`); `report/` adds `check/`; the front ends (`main.rs`,
//! `campaign.rs`, `bench.rs`, `corpus.rs`, `env.rs`, `trial.rs`) use everything. Every `crate::`
//! and `super::` path in `src/` is resolved to the file that defines it (through `mod.rs`
//! re-exports), and the file graph must have no cycle. All `unsafe` is under `kernel/`.
//!
//! Each rule has a counter-test below that feeds the checker a tree breaking it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer a file belongs to, by its path under `src/`.
fn layer(file: &str) -> &'static str {
    match file.split('/').next().unwrap_or("") {
        "program" => "program",
        "model" => "model",
        "kernel" => "kernel",
        "check" => "check",
        "report" => "report",
        _ => "front",
    }
}

/// Which layers a layer may import.
fn allowed(from: &str) -> &'static [&'static str] {
    match from {
        "program" => &["program"],
        "model" => &["program", "model"],
        "kernel" => &["program", "kernel"],
        "check" => &["program", "model", "check"],
        "report" => &["program", "model", "check", "report"],
        _ => &["program", "model", "kernel", "check", "report", "front"],
    }
}

/// A source tree: path under `src/` -> text.
type Tree = BTreeMap<String, String>;

fn read_tree(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root).expect("under root");
                let text = std::fs::read_to_string(&p).expect("utf-8 source");
                out.insert(rel.to_string_lossy().into_owned(), text);
            }
        }
    }
    let mut out = Tree::new();
    walk(root, root, &mut out);
    out
}

/// Source without comments, string literals and `#[cfg(test)]` modules' insides are kept
/// (tests import like everything else); only comments and strings are blanked, so that a path
/// in a doc comment or a message is not an import.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r' && (b[i..].starts_with(b"r\"") || b[i..].starts_with(b"r#")) {
            // A raw string: r"...", r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while j < b.len() && b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            if j < b.len() && b[j] == b'"' {
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                j += 1;
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = (j + close.len()).min(b.len());
                out.push_str("\"\"");
            } else {
                out.push('r');
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('"', '\''); lifetimes ('a) pass through.
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            let c = text[i..].chars().next().expect("char");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Every path a file names: the expanded trees of its `use` declarations and every inline
/// `crate::a::b` / `super::a` path, as segment lists starting with `crate` or `super`.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    // `use` trees (braces expanded).
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        let after = &rest[at + 3..];
        let end = after.find(';').unwrap_or(after.len());
        let tree: String = drop_renames(&after[..end])
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        expand(&tree, &mut Vec::new(), &mut found);
        rest = &after[end..];
    }
    // Inline paths.
    for start in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(at) = rest.find(start) {
            let before = rest[..at].chars().next_back();
            let tail = &rest[at..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                rest = &tail[start.len()..];
                continue;
            }
            let len = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            let segs: Vec<String> = tail[..len]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            found.push(segs);
            rest = &tail[len..];
        }
    }
    found
        .into_iter()
        .filter(|p| matches!(p.first().map(String::as_str), Some("crate" | "super")))
        .collect()
}

/// A `use` tree without its renames (`a as b` -> `a`).
fn drop_renames(tree: &str) -> String {
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "as" && i + 1 < words.len() {
            // The renamed-to name may carry the tree's punctuation after it (`b,` or `b}`).
            let name = words[i + 1];
            let punct = name.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_');
            out.push_str(punct);
            i += 2;
        } else {
            out.push_str(words[i]);
            out.push(' ');
            i += 1;
        }
    }
    out
}

fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let at = from + i;
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && after.is_some_and(|c| c.is_whitespace())
        {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// Expands a `use` tree without spaces (`crate::a::{b,c::{d,e}}`) into paths.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let (head, brace) = match tree.find('{') {
        Some(i) => (
            &tree[..i],
            Some(&tree[i + 1..tree.rfind('}').unwrap_or(tree.len())]),
        ),
        None => (tree, None),
    };
    let base = prefix.len();
    for seg in head.split("::").filter(|s| !s.is_empty()) {
        prefix.push(seg.to_string());
    }
    match brace {
        None => out.push(prefix.clone()),
        Some(inner) => {
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&inner[start..i], prefix, out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if start < inner.len() {
                expand(&inner[start..], prefix, out);
            }
        }
    }
    prefix.truncate(base);
}

/// The module path of a file (`check/compare.rs` -> [check, compare]; `lib.rs` -> []).
fn module_of(file: &str) -> Vec<String> {
    let mut segs: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(
        segs.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        segs.pop();
    }
    segs
}

/// The file of a module path, if the tree has one.
fn file_of(tree: &Tree, module: &[String]) -> Option<String> {
    if module.is_empty() {
        return Some("lib.rs".into());
    }
    let joined = module.join("/");
    [format!("{joined}.rs"), format!("{joined}/mod.rs")]
        .into_iter()
        .find(|f| tree.contains_key(f))
}

/// Whether `code` defines an item `name` (not a re-export).
fn defines(code: &str, name: &str) -> bool {
    [
        "fn",
        "struct",
        "enum",
        "trait",
        "type",
        "const",
        "static",
        "mod",
        "macro_rules!",
    ]
    .iter()
    .any(|kw| {
        let mut rest = code;
        while let Some(i) = rest.find(kw) {
            let after = rest[i + kw.len()..].trim_start();
            if after.starts_with(name)
                && !after[name.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            {
                return true;
            }
            rest = &rest[i + kw.len()..];
        }
        false
    })
}

/// Resolves a path named in `from` to the file that defines what it names.
fn resolve(
    tree: &Tree,
    codes: &BTreeMap<String, String>,
    from: &str,
    path: &[String],
) -> Option<String> {
    let mut module = if path.first().map(String::as_str) == Some("super") {
        let mut m = module_of(from);
        let mut rest = path;
        while rest.first().map(String::as_str) == Some("super") {
            m.pop();
            rest = &rest[1..];
        }
        let mut full = m;
        full.extend(rest.iter().cloned());
        full
    } else {
        path[1..].to_vec()
    };
    module.retain(|s| s != "self");
    // The longest prefix that is a file.
    let mut depth = module.len();
    while depth > 0 && file_of(tree, &module[..depth]).is_none() {
        depth -= 1;
    }
    let file = file_of(tree, &module[..depth])?;
    // An item reached through a `mod.rs` (or lib.rs) re-export: the child file defining it.
    if let Some(item) = module.get(depth)
        && (file.ends_with("mod.rs") || file == "lib.rs")
        && !defines(&codes[&file], item)
    {
        let dir = module[..depth].join("/");
        for (f, code) in codes {
            let parent = Path::new(f)
                .parent()
                .map(|p| p.to_string_lossy().into_owned());
            if parent.as_deref() == Some(dir.as_str()) && f != &file && defines(code, item) {
                return Some(f.clone());
            }
        }
    }
    Some(file)
}

/// Every rule the tree breaks, one line each.
fn violations(tree: &Tree) -> Vec<String> {
    let codes: BTreeMap<String, String> = tree
        .iter()
        .map(|(f, t)| (f.clone(), code_only(t)))
        .collect();
    let mut bad = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, code) in &codes {
        if layer(file) != "kernel" && find_word(&format!("{code} "), "unsafe").is_some() {
            bad.push(format!("{file}: unsafe code outside kernel/"));
        }
        for path in paths(code) {
            let Some(target) = resolve(tree, &codes, file, &path) else {
                continue;
            };
            if target == *file || target == "lib.rs" || target == "main.rs" {
                continue;
            }
            let (from, to) = (layer(file), layer(&target));
            if !allowed(from).contains(&to) {
                bad.push(format!(
                    "{file}: imports {} ({target}): the {from} layer may not use the {to} layer",
                    path.join("::")
                ));
            }
            // A mod.rs naming its own children (declaring, re-exporting) is no dependency.
            let own_child =
                file.ends_with("mod.rs") && Path::new(&target).parent() == Path::new(file).parent();
            if !own_child {
                graph.entry(file.clone()).or_default().insert(target);
            }
        }
    }
    for cycle in cycles(&graph) {
        bad.push(format!(
            "import cycle between files: {}",
            cycle.join(" -> ")
        ));
    }
    bad.sort();
    bad.dedup();
    bad
}

/// The strongly connected components with more than one file (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(next) = s.graph.get(v) {
            for w in next {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(lw));
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(iw));
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn layers_flow_one_way_and_files_have_no_cycles() {
    let tree = read_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(tree.contains_key("model/mod.rs") && tree.contains_key("kernel/mod.rs"));
    let bad = violations(&tree);
    assert!(
        bad.is_empty(),
        "the layout breaks its rules:\n{}",
        bad.join("\n")
    );
}

fn tree_of(files: &[(&str, &str)]) -> Tree {
    files
        .iter()
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect()
}

/// Counter-tests: each rule catches a tree that breaks it.
#[test]
fn an_upward_import_is_caught() {
    let tree = tree_of(&[
        ("lib.rs", "pub mod kernel; pub mod model; pub mod program;"),
        ("kernel/mod.rs", "pub struct Executor;"),
        ("program/mod.rs", "pub struct Op;"),
        (
            "model/mod.rs",
            "use crate::kernel::Executor;\nuse crate::program::Op;",
        ),
    ]);
    let bad = violations(&tree);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].contains("model/mod.rs: imports crate::kernel::Executor"),
        "{bad:?}"
    );
}

#[test]
fn a_grouped_import_through_a_reexport_is_resolved() {
    let tree = tree_of(&[
        ("lib.rs", "pub mod check; pub mod program;"),
        ("check/mod.rs", "pub mod compare;\npub use compare::*;"),
        ("check/compare.rs", "pub enum Verdict {}"),
        (
            "program/op.rs",
            "// use crate::check::Verdict; in a comment is no import\nuse crate::{check::{self, Verdict}};",
        ),
        ("program/mod.rs", "pub mod op;"),
    ]);
    let bad = violations(&tree);
    assert!(
        bad.iter()
            .any(|b| b.contains("program/op.rs: imports crate::check::Verdict (check/compare.rs)")),
        "{bad:?}"
    );
}

#[test]
fn a_cycle_between_files_is_caught() {
    let tree = tree_of(&[
        ("lib.rs", "pub mod model;"),
        ("model/mod.rs", "pub mod a;\npub mod b;"),
        ("model/a.rs", "use super::b::B;\npub struct A;"),
        ("model/b.rs", "pub struct B(crate::model::a::A);"),
    ]);
    let bad = violations(&tree);
    assert_eq!(
        bad,
        vec!["import cycle between files: model/a.rs -> model/b.rs".to_string()],
    );
}

#[test]
fn unsafe_outside_the_kernel_is_caught() {
    let tree = tree_of(&[
        ("lib.rs", "pub mod env;"),
        (
            "env.rs",
            "fn f() { let s = \"unsafe in a string\"; unsafe { g() } }",
        ),
    ]);
    assert_eq!(
        violations(&tree),
        vec!["env.rs: unsafe code outside kernel/".to_string()]
    );
}

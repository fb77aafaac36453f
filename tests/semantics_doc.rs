//! Every rule that the code, the scenarios and the fuzz seeds cite is defined in
//! `docs/SEMANTICS.md`, inside this repository.
//!
//! # Citation syntax
//!
//! A rule ID is one capital letter `A`-`M`, `O` or `T`, then one or two digits (`B2`, `F10`, `K21`,
//! `O4`), followed by neither a letter, a digit nor `_` (so `E2BIG` is no ID), nor by a `.` and
//! a letter (`O1.pagemap-zero-page` and `R14.mprotect-hole` name probe measurements, not rules).
//!
//! An *ID list* is one or more items separated by `,`, `;`, `/`, `&`, `and` or `or`; an item is
//! an ID, or a range `G1-G9` (also with `–` or `..`; expanded to every ID between), optionally
//! after `section N ` or `§N `, optionally followed by a parenthesised aside, which is skipped:
//! `K1 (Dirty COW) and section 2 E6`.
//!
//! An ID list is a citation where it starts
//! - (a) right after a `[`, or after a `,` or `;` inside an open `[...]`: `[B2, B3]`;
//! - (b) the same with parentheses: `(G8)`, `(SIGBUS/BUS_ADRERR, G8)`, `(E1; probe R14...)`;
//! - (c) right after the word `SEMANTICS` or `SEMANTICS.md`: `SEMANTICS A5`,
//!   `SEMANTICS.md section 5 K3/K4`, `(SEMANTICS G1-G9)`.
//!
//! Text is read in logical lines: a run of comment lines with the same leader (`//`, `///`,
//! `//!`, `#`, C's `*`) is one line, so a list may wrap; so is a Markdown paragraph. IDs
//! anywhere else (`PEER-CASES.md C21`, `0xA1`, `-O1`, `E2BIG`) are not citations.
//!
//! A rule is defined by a heading `### ID. Title` in `docs/SEMANTICS.md`, once, and its section
//! has a `**Source...**` and a `**Scenarios...**` line. Every scenario path the document names
//! exists, every scenario that cites a rule is listed in that rule's section, and nothing in
//! `src/`, `docs/` or the README points at `../shared/`, which a clone does not have.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where rules are defined, relative to the crate root.
const DOC: &str = "docs/SEMANTICS.md";

/// What is searched for citations, relative to the crate root: directories (recursively) and
/// the file name endings that count in them.
const CITING: &[(&str, &[&str])] = &[
    ("src", &[".rs", ".c"]),
    ("scenarios", &[".trace"]),
    ("fuzz/fuzz_targets", &[".rs"]),
    ("fuzz/src", &[".rs"]),
    ("fuzz/seeds", &[".trace"]),
    ("fuzz/corpus/trace_parse", &[".trace"]),
    ("tests", &[".rs", ".c", ".trace"]),
    ("proptests", &[".rs"]),
    ("docs", &[".md", ".trace"]),
    ("README.md", &[".md"]),
];

/// Files that must not point outside the repository for their references.
const SELF_CONTAINED: &[(&str, &[&str])] = &[
    ("src", &[".rs", ".c"]),
    ("docs", &[".md"]),
    ("README.md", &[".md"]),
];

/// A rule ID: `B2` is `RuleId { letter: b'B', number: 2 }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct RuleId {
    letter: u8,
    number: u8,
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.letter as char, self.number)
    }
}

/// One citation: the ID and the 1-based line it stands on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Citation {
    id: RuleId,
    line: usize,
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The rule ID at byte `p` of `s` and the byte after it, if one starts there. The caller
/// knows that `p` is at a boundary (a list position).
fn id_at(s: &str, p: usize) -> Option<(RuleId, usize)> {
    let b = s.as_bytes();
    let letter = *b.get(p)?;
    if !matches!(letter, b'A'..=b'M' | b'O' | b'T') {
        return None;
    }
    let mut q = p + 1;
    while q < b.len() && q < p + 3 && b[q].is_ascii_digit() {
        q += 1;
    }
    if q == p + 1 {
        return None;
    }
    let mut rest = s[q..].chars();
    match rest.next() {
        Some(c) if is_word(c) => return None,
        // A probe name: `O1.pagemap-zero-page`.
        Some('.') if rest.next().is_some_and(|c| c.is_ascii_alphabetic()) => return None,
        _ => {}
    }
    let number = s[p + 1..q].parse().ok()?;
    Some((RuleId { letter, number }, q))
}

fn skip_ws(s: &str, mut p: usize) -> usize {
    while let Some(c) = s[p..].chars().next() {
        if !c.is_whitespace() {
            break;
        }
        p += c.len_utf8();
    }
    p
}

/// Skips `section N ` or `§N ` at `p`, if there.
fn skip_section(s: &str, p: usize) -> usize {
    let after = if let Some(r) = s[p..].strip_prefix("section") {
        let r2 = r.trim_start();
        if r2.len() == r.len() {
            return p;
        }
        s.len() - r2.len()
    } else if s[p..].starts_with('§') {
        p + '§'.len_utf8()
    } else {
        return p;
    };
    let digits = s[after..].bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return p;
    }
    let end = after + digits;
    let next = skip_ws(s, end);
    if next == end {
        return p;
    }
    next
}

/// Skips a parenthesised aside at `p` (nested parentheses allowed), if there.
fn skip_aside(s: &str, p: usize) -> usize {
    if !s[p..].starts_with('(') {
        return p;
    }
    let mut depth = 0usize;
    for (i, c) in s[p..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return p + i + 1;
                }
            }
            _ => {}
        }
    }
    p
}

/// The ID list starting at `p` (see the module comment), each ID with the byte offset of the
/// item that named it.
fn id_list(s: &str, p: usize) -> Vec<(usize, RuleId)> {
    let mut out = Vec::new();
    let mut p = skip_ws(s, p);
    loop {
        p = skip_section(s, p);
        let Some((first, mut q)) = id_at(s, p) else {
            break;
        };
        out.push((p, first));
        for sep in ["-", "–", ".."] {
            if let Some(r) = s[q..].strip_prefix(sep) {
                let start = s.len() - r.len();
                if let Some((last, end)) = id_at(s, start) {
                    if last.letter == first.letter && last.number > first.number {
                        for n in first.number + 1..=last.number {
                            out.push((
                                p,
                                RuleId {
                                    letter: first.letter,
                                    number: n,
                                },
                            ));
                        }
                    } else {
                        out.push((start, last));
                    }
                    q = end;
                }
                break;
            }
        }
        q = skip_aside(s, skip_ws(s, q));
        let q = skip_ws(s, q);
        let rest = &s[q..];
        let next = if let Some(r) = rest.strip_prefix([',', ';', '/', '&']) {
            r
        } else if let Some(r) = rest
            .strip_prefix("and ")
            .or_else(|| rest.strip_prefix("or "))
        {
            r
        } else {
            break;
        };
        p = skip_ws(s, s.len() - next.len());
    }
    out
}

/// The citations in one logical line, keyed by byte offset (so a list seen from two starting
/// points counts once).
fn line_citations(s: &str) -> BTreeMap<(usize, RuleId), ()> {
    let mut found = BTreeMap::new();
    let mut open: Vec<char> = Vec::new();
    let mut prev: Option<char> = None;
    for (i, c) in s.char_indices() {
        let after = i + c.len_utf8();
        match c {
            '[' | '(' => {
                open.push(c);
                found.extend(id_list(s, after).into_iter().map(|k| (k, ())));
            }
            ']' | ')' => {
                let opener = if c == ']' { '[' } else { '(' };
                if open.last() == Some(&opener) {
                    open.pop();
                }
            }
            ',' | ';' if !open.is_empty() => {
                found.extend(id_list(s, after).into_iter().map(|k| (k, ())));
            }
            'S' if !prev.is_some_and(is_word) && s[i..].starts_with("SEMANTICS") => {
                let mut end = i + "SEMANTICS".len();
                if s[end..].starts_with(".md") {
                    end += 3;
                }
                if !s[end..].chars().next().is_some_and(is_word) {
                    found.extend(id_list(s, end).into_iter().map(|k| (k, ())));
                }
            }
            _ => {}
        }
        prev = Some(c);
    }
    found
}

/// The comment leader of a source line (`//`, `///`, `//!`, `#`, `*` for C comments), and the
/// text after it.
fn comment(line: &str) -> Option<(&'static str, &str)> {
    let t = line.trim_start();
    for (prefix, class) in [
        ("//!", "//!"),
        ("///", "///"),
        ("//", "//"),
        ("/*", "*"),
        ("*", "*"),
        ("#", "#"),
    ] {
        if let Some(rest) = t.strip_prefix(prefix) {
            return Some((class, rest));
        }
    }
    None
}

/// Splits a file into logical lines: each with its text and, for each physical line joined
/// into it, the byte offset where that line's text starts and its 1-based number.
fn logical_lines(text: &str, markdown: bool) -> Vec<(String, Vec<(usize, usize)>)> {
    let mut out: Vec<(String, Vec<(usize, usize)>)> = Vec::new();
    let mut current_class: Option<&str> = None;
    for (n, line) in text.lines().enumerate() {
        let (class, body) = if markdown {
            if line.trim().is_empty() {
                (None, line)
            } else {
                (Some("md"), line)
            }
        } else {
            match comment(line) {
                Some((class, rest)) => (Some(class), rest),
                None => (None, line),
            }
        };
        let joins = class.is_some() && class == current_class && !out.is_empty();
        if joins {
            let (s, map) = out.last_mut().expect("not empty");
            s.push(' ');
            map.push((s.len(), n + 1));
            s.push_str(body);
        } else {
            out.push((line.to_string(), vec![(0, n + 1)]));
        }
        current_class = class;
    }
    out
}

/// Every citation in a file's text.
fn citations(text: &str, markdown: bool) -> Vec<Citation> {
    let mut out = Vec::new();
    for (s, map) in logical_lines(text, markdown) {
        for (offset, id) in line_citations(&s).into_keys() {
            let line = map
                .iter()
                .rev()
                .find(|(start, _)| *start <= offset)
                .map(|(_, n)| *n)
                .expect("offset 0 is mapped");
            out.push(Citation { id, line });
        }
    }
    out
}

/// The rules a document defines: `### ID. Title` headings, with the line of each (more than
/// one line for an ID defined twice).
fn definitions(doc: &str) -> BTreeMap<RuleId, Vec<usize>> {
    let mut out: BTreeMap<RuleId, Vec<usize>> = BTreeMap::new();
    for (n, line) in doc.lines().enumerate() {
        let Some(rest) = line.strip_prefix("### ") else {
            continue;
        };
        if let Some((id, end)) = id_at(rest, 0)
            && rest[end..].starts_with(". ")
            && !rest[end + 2..].trim().is_empty()
        {
            out.entry(id).or_default().push(n + 1);
        }
    }
    out
}

/// One message per citation of an ID that `defined` lacks: `path:line: ID`.
fn undefined(defined: &BTreeSet<RuleId>, cited: &[(String, Citation)]) -> Vec<String> {
    cited
        .iter()
        .filter(|(_, c)| !defined.contains(&c.id))
        .map(|(path, c)| format!("{path}:{}: {} is cited but not defined", c.line, c.id))
        .collect()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files under `entry` (a directory, walked recursively in name order, or a file) whose names
/// end with one of `endings`.
fn files(entry: &str, endings: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, endings: &[&str], out: &mut Vec<PathBuf>) {
        let Ok(read) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, endings, out);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| endings.iter().any(|e| n.ends_with(e)))
            {
                out.push(path);
            }
        }
    }
    let path = root().join(entry);
    let mut out = Vec::new();
    if path.is_dir() {
        walk(&path, endings, &mut out);
    } else if path.is_file() {
        out.push(path);
    }
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every citation in the repository, with the file it is in.
fn repository_citations() -> Vec<(String, Citation)> {
    let doc = root().join(DOC);
    let this = root().join("tests/semantics_doc.rs");
    let mut out = Vec::new();
    for (entry, endings) in CITING {
        for path in files(entry, endings) {
            // The definitions themselves, and this file's examples of bad citations.
            if path == doc || path == this {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let markdown = path.extension().is_some_and(|e| e == "md");
            let name = relative(&path);
            out.extend(
                citations(&text, markdown)
                    .into_iter()
                    .map(|c| (name.clone(), c)),
            );
        }
    }
    out
}

fn read_doc() -> String {
    std::fs::read_to_string(root().join(DOC))
        .unwrap_or_else(|e| panic!("{DOC} must exist in the repository: {e}"))
}

#[test]
fn every_cited_rule_is_defined_in_docs_semantics() {
    let defs = definitions(&read_doc());
    let cited = repository_citations();
    assert!(
        cited.len() > 100,
        "the extractor found only {} citations: is it still reading the tree?",
        cited.len()
    );
    let defined: BTreeSet<RuleId> = defs.keys().copied().collect();
    let missing = undefined(&defined, &cited);
    assert!(
        missing.is_empty(),
        "{} citation(s) of rules that {DOC} does not define (add a `### ID. Title` section):\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn every_rule_is_defined_once_with_source_and_scenarios() {
    let doc = read_doc();
    let defs = definitions(&doc);
    let twice: Vec<String> = defs
        .iter()
        .filter(|(_, lines)| lines.len() > 1)
        .map(|(id, lines)| format!("{id} at lines {lines:?}"))
        .collect();
    assert!(
        twice.is_empty(),
        "rules defined more than once in {DOC}: {twice:?}"
    );
    // Each section says where the rule comes from and what shows it.
    let mut problems = Vec::new();
    for (id, body) in sections(&doc) {
        for field in ["**Source", "**Scenario"] {
            if !body.contains(field) {
                problems.push(format!("{DOC}: {id} has no {field}...** line"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The text of each rule's section: from its heading to the next heading.
fn sections(doc: &str) -> BTreeMap<RuleId, String> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = BTreeMap::new();
    for (id, at) in definitions(doc) {
        let start = at[0];
        let end = lines[start..]
            .iter()
            .position(|l| l.starts_with("## ") || l.starts_with("### "))
            .map_or(lines.len(), |k| start + k);
        out.insert(id, lines[start..end].join("\n"));
    }
    out
}

#[test]
fn each_rule_lists_the_scenarios_that_cite_it() {
    let sections = sections(&read_doc());
    let mut missing = BTreeSet::new();
    for path in files("scenarios", &[".trace"]) {
        let text = std::fs::read_to_string(&path).expect("readable");
        let name = relative(&path);
        for c in citations(&text, false) {
            if let Some(body) = sections.get(&c.id)
                && !body.contains(&name)
            {
                missing.insert(format!("{}: add {name} to its **Scenarios:** line", c.id));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "scenarios cite rules whose sections in {DOC} do not list them:\n{}",
        missing.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn scenario_paths_in_the_doc_exist() {
    let doc = read_doc();
    let mut missing = Vec::new();
    for (n, line) in doc.lines().enumerate() {
        for (i, _) in line.match_indices("scenarios/") {
            // A path is `scenarios/...trace`, ending at the first character that no path has.
            let rest = &line[i..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || "/-_.".contains(c)))
                .unwrap_or(rest.len());
            let path = rest[..end].trim_end_matches('.');
            if path.ends_with(".trace") && !root().join(path).is_file() {
                missing.push(format!("{DOC}:{}: {path}", n + 1));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "scenario files named in {DOC} that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn references_stay_inside_the_repository() {
    let mut found = Vec::new();
    for (entry, endings) in SELF_CONTAINED {
        for path in files(entry, endings) {
            let text = std::fs::read_to_string(&path).expect("readable");
            for (n, line) in text.lines().enumerate() {
                if line.contains("../shared/") {
                    found.push(format!("{}:{}: {}", relative(&path), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "references to ../shared/, which a clone does not have (cite {DOC} instead):\n{}",
        found.join("\n")
    );
}

fn ids(text: &str) -> Vec<String> {
    citations(text, false)
        .into_iter()
        .map(|c| format!("{}@{}", c.id, c.line))
        .collect()
}

#[test]
fn extractor_finds_each_form() {
    let text = "\
//! fresh mappings read zero [A1, A2, C1, C2]; a copy [B2, B3]
// then fresh zero pages (D3). past the end (SIGBUS/BUS_ADRERR, G8)
/// mprotect: ENOMEM (E1; probe R14.mprotect-hole).
    \"must choose a free range (SEMANTICS A5)\"
# source: SEMANTICS.md B2
x // role since 5.19 (SEMANTICS K3/K4)
    /// mremap (SEMANTICS G1-G9): flags checked first
# source: SEMANTICS.md section 5 K1 (Dirty COW) and section 2 E6 (FOLL_FORCE writes)
    // argument combinations (measured; SEMANTICS A4, D1,
    // F0, O4).
";
    assert_eq!(
        ids(text),
        [
            "A1@1", "A2@1", "C1@1", "C2@1", "B2@1", "B3@1", "D3@2", "G8@2", "E1@3", "A5@4", "B2@5",
            "K3@6", "K4@6", "G1@7", "G2@7", "G3@7", "G4@7", "G5@7", "G6@7", "G7@7", "G8@7", "G9@7",
            "K1@8", "E6@8", "A4@9", "D1@9", "F0@10", "O4@10",
        ]
    );
}

#[test]
fn extractor_ignores_what_is_not_a_citation() {
    let text = "\
// E2BIG (E2BIG) [0xA1] [0xA1B2] (O1.pagemap-zero-page) (probe O1.pagemap-zero-page)
pub const CFLAGS: &[&str] = &[\"-std=gnu11\", \"-O1\", \"-Wall\"];
# source: PEER-CASES.md C21 (LTP mmap10, private /dev/zero variant)
// B2 alone, K3 in prose, F10x, [B123], (Z9), SEMANTICSB2, SEMANTICS section in brackets
// the [§4] section and SEMANTICS §6.5: nothing
";
    assert_eq!(ids(text), Vec::<String>::new());
}

#[test]
fn an_undefined_citation_fails_the_check() {
    let doc = "### B2. Private memory is value-copied at fork\n\n### K3. vmsplice\n";
    let defined: BTreeSet<RuleId> = definitions(doc).into_keys().collect();
    assert_eq!(defined.len(), 2);
    let cited: Vec<(String, Citation)> = citations(
        "// copy on write [B2]\n// a pin (SEMANTICS K3/K4)\n// and [B99]\n",
        false,
    )
    .into_iter()
    .map(|c| ("src/example.rs".to_string(), c))
    .collect();
    assert_eq!(
        undefined(&defined, &cited),
        [
            "src/example.rs:2: K4 is cited but not defined",
            "src/example.rs:3: B99 is cited but not defined",
        ]
    );
}

#[test]
fn headings_define_only_in_the_exact_form() {
    let doc = "\
### B2. Private memory is value-copied at fork
### B3 Nested fork
## B4. Wipe-on-fork
### B5.
### F10. KSM
### E2BIG. not an ID
";
    let ids: Vec<String> = definitions(doc).keys().map(|i| i.to_string()).collect();
    assert_eq!(ids, ["B2", "F10"]);
}

#[test]
fn markdown_paragraphs_are_logical_lines() {
    let md = "Threads and `vfork` (SEMANTICS B7,\nB8), memfd.\n\nAs SEMANTICS.md K20 says.\n";
    let found: Vec<String> = citations(md, true)
        .into_iter()
        .map(|c| format!("{}@{}", c.id, c.line))
        .collect();
    assert_eq!(found, ["B7@1", "B8@2", "K20@4"]);
}

//! The committed fuzz corpus, replayed through the checker on the real kernel, so that the
//! coverage of past findings never depends on nightly or on cargo-fuzz being installed.
//!
//! Every file of `fuzz/corpus/ops/` decodes to a program exactly as the `ops` fuzz target
//! decodes it (`generate::from_bytes` with the default generator config), and runs through one
//! executor of this build (`CARGO_BIN_EXE_cowcheck`) against the model.
//!
//! The seeds are generated from the project's traces (`fuzz/seeds/*.trace`, and any
//! `scenarios/**/*.trace` and `tests/**/*.trace`): for each trace, a search finds the raw bytes
//! that the decoder turns into that program, or into the nearest program it can make. To
//! regenerate them after the traces or the generator changed:
//!
//! ```text
//! cargo test --release --test fuzz_corpus -- --ignored regenerate_seed_corpus
//! ```

use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use cowcheck::campaign;
use cowcheck::check::Verdict;
use cowcheck::kernel::{Executor, ExecutorConfig};
use cowcheck::program::generate::{self, GenConfig, RawOp};
use cowcheck::program::{Op, Program, trace};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus_dir() -> PathBuf {
    root().join("fuzz/corpus/ops")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn executor() -> Executor {
    let config = ExecutorConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_cowcheck")));
    Executor::start(&config).expect("start the executor")
}

/// Old artifacts are first-dialect bytes: none may start with the dialect-2 prefix, or it would
/// change program when the later op families came.
#[test]
fn no_committed_artifact_takes_the_second_dialect() {
    for dir in [corpus_dir(), root().join("fuzz/seeds")] {
        for path in files_in(&dir) {
            let bytes = std::fs::read(&path).expect("read a corpus file");
            for prefix in [generate::DIALECT_2, generate::DIALECT_3] {
                assert!(
                    !bytes.starts_with(prefix),
                    "{} starts with a later dialect's prefix",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn every_committed_corpus_input_agrees_with_the_model() {
    let files = files_in(&corpus_dir());
    assert!(
        !files.is_empty(),
        "no seeds in {}; regenerate them (see this file's doc)",
        corpus_dir().display()
    );
    let mut ex = executor();
    let mut failures = Vec::new();
    let mut ops = 0;
    for path in &files {
        let bytes = std::fs::read(path).expect("read a corpus file");
        let program = generate::from_bytes(&bytes, GenConfig::default());
        assert!(
            program.validate().is_ok(),
            "{} decodes to an invalid program",
            path.display()
        );
        ops += program.ops.len();
        let (verdict, _) = cowcheck::trial::run(&mut ex, &program, None)
            .unwrap_or_else(|e| panic!("harness error on {}: {e}", path.display()));
        if let Verdict::Diverged(d) = verdict {
            let f = campaign::explain(&mut ex, 0, &program, d).expect("shrink");
            failures.push(format!(
                "{} diverges ({}); shrunk:\n{}",
                path.display(),
                f.signature,
                f.shrunk
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus inputs diverge:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    eprintln!("{} corpus inputs, {ops} ops, all agree", files.len());
}

// ---------------------------------------------------------------------------------------------
// Seeds from traces.

/// The bytes that `RawOp::arbitrary` reads back as `r` (integers are little-endian).
fn raw_bytes(r: &RawOp) -> Vec<u8> {
    let mut b = vec![r.verb, r.who, r.what];
    b.extend_from_slice(&r.a.to_le_bytes());
    b.extend_from_slice(&r.b.to_le_bytes());
    b.extend_from_slice(&[r.c, r.d]);
    b
}

/// A fuzz input that decodes to `build(raws)`: the raw ops, then one byte, because the decoder
/// keeps a raw op only if input is left after it.
fn input_bytes(raws: &[RawOp]) -> Vec<u8> {
    let mut bytes: Vec<u8> = raws.iter().flat_map(raw_bytes).collect();
    bytes.push(0);
    bytes
}

/// How far `got` is from `want`: 0 when equal, else 1 + the edit distance between their trace
/// lines, and a large penalty when even the verb differs.
fn distance(want: &Op, got: &Op) -> u32 {
    if want == got {
        return 0;
    }
    let verb_differs = want.kind() != got.kind();
    1 + edit_distance(&want.to_string(), &got.to_string()) + if verb_differs { 1000 } else { 0 }
}

fn edit_distance(a: &str, b: &str) -> u32 {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut row: Vec<u32> = (0..=b.len() as u32).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i as u32 + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (diag + (ca != cb) as u32).min(up + 1).min(row[j] + 1);
            diag = up;
        }
    }
    row[b.len()]
}

/// Values worth trying for each field of a raw op.
fn field_values(field: usize) -> Vec<u16> {
    match field {
        // u8 fields: every value.
        0..=2 | 5 | 6 => (0..=255).collect(),
        // u16 fields: page numbers, byte offsets and the high flag bit.
        _ => (0..=130)
            .chain(0x8000..0x8000 + 70)
            .chain((130..4096).step_by(1).filter(|v| v % 16 == 0 || *v > 4000))
            .collect(),
    }
}

fn set_field(r: &mut RawOp, field: usize, v: u16) {
    match field {
        0 => r.verb = v as u8,
        1 => r.who = v as u8,
        2 => r.what = v as u8,
        3 => r.a = v,
        4 => r.b = v,
        5 => r.c = v as u8,
        _ => r.d = v as u8,
    }
}

/// Raw ops that the generator's builder turns into `target`'s ops, or into the nearest ops it
/// can make. A coordinate search over the fields of each raw op, driven by `distance`; it
/// knows nothing of the builder's internals, so changes to the generator cannot make it stale.
fn encode(target: &Program) -> (Vec<RawOp>, usize) {
    let config = GenConfig::default();
    let mut raws: Vec<RawOp> = Vec::new();
    let mut exact = 0;
    for want in target.ops.iter().take(config.max_ops) {
        let made = generate::build(&raws, config).ops.len();
        let score = |r: &RawOp, raws: &mut Vec<RawOp>| -> u32 {
            raws.push(*r);
            let ops = generate::build(raws, config).ops;
            raws.pop();
            match ops.get(made) {
                Some(got) if ops.len() == made + 1 => distance(want, got),
                _ => u32::MAX,
            }
        };
        let mut best = RawOp {
            verb: 0,
            who: 0,
            what: 0,
            a: 0,
            b: 0,
            c: 0,
            d: 0,
        };
        let mut best_score = score(&best, &mut raws);
        for pass in 0..3 {
            // Coordinate rounds: one field at a time, until no field helps.
            'rounds: for _ in 0..4 {
                let before = best_score;
                for field in [0, 1, 2, 5, 6, 3, 4] {
                    for v in field_values(field) {
                        let mut cand = best;
                        set_field(&mut cand, field, v);
                        let s = score(&cand, &mut raws);
                        if s < best_score {
                            best = cand;
                            best_score = s;
                            if s == 0 {
                                break 'rounds;
                            }
                        }
                    }
                }
                if best_score == before {
                    break;
                }
            }
            if best_score == 0 || pass == 2 {
                break;
            }
            // Fields that only help together (one byte may choose both a span's form and a
            // pattern's value): every pair of the two trailing bytes.
            let start = best;
            for c in 0..=255u8 {
                for d in 0..=255u8 {
                    let cand = RawOp { c, d, ..start };
                    let s = score(&cand, &mut raws);
                    if s < best_score {
                        best = cand;
                        best_score = s;
                    }
                }
            }
        }
        if best_score == u32::MAX {
            continue;
        }
        if best_score == 0 {
            exact += 1;
        }
        raws.push(best);
    }
    (raws, exact)
}

/// The project's traces that seed the corpus.
fn seed_traces() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for p in files_in(dir) {
            if p.extension().is_some_and(|e| e == "trace") {
                out.push(p);
            }
        }
        if let Ok(d) = std::fs::read_dir(dir) {
            let mut dirs: Vec<PathBuf> = d
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            dirs.sort();
            for d in dirs {
                walk(&d, out);
            }
        }
    }
    let mut out = Vec::new();
    for dir in ["fuzz/seeds", "scenarios", "tests"] {
        walk(&root().join(dir), &mut out);
    }
    out
}

#[test]
fn the_seed_search_finds_exact_encodings() {
    let text = std::fs::read_to_string(root().join("fuzz/seeds/cow-child-write.trace"))
        .expect("the classic copy-on-write seed trace");
    let program = trace::parse_str(&text).expect("parses");
    let (raws, exact) = encode(&program);
    assert_eq!(exact, program.ops.len(), "every op encoded exactly");
    let decoded = generate::from_bytes(&input_bytes(&raws), GenConfig::default());
    assert_eq!(decoded.ops, program.ops);
}

#[test]
#[ignore = "writes fuzz/corpus/ops and fuzz/corpus/trace_parse; run by hand to regenerate"]
fn regenerate_seed_corpus() {
    let ops_dir = corpus_dir();
    let parse_dir = root().join("fuzz/corpus/trace_parse");
    std::fs::create_dir_all(&ops_dir).expect("mkdir");
    std::fs::create_dir_all(&parse_dir).expect("mkdir");
    for old in files_in(&ops_dir).into_iter().chain(files_in(&parse_dir)) {
        if old
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        {
            std::fs::remove_file(old).expect("remove an old seed");
        }
    }
    for path in seed_traces() {
        let text = std::fs::read(&path).expect("read a trace");
        let Ok(program) = trace::parse(&text) else {
            eprintln!("skipped {} (does not parse)", path.display());
            continue;
        };
        let stem = path
            .file_stem()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        std::fs::write(
            parse_dir.join(format!("seed-{stem}.trace")),
            program.to_string(),
        )
        .expect("write");
        let (raws, exact) = encode(&program);
        let bytes = input_bytes(&raws);
        let decoded = generate::from_bytes(&bytes, GenConfig::default());
        assert_eq!(decoded, generate::build(&raws, GenConfig::default()));
        std::fs::write(ops_dir.join(format!("seed-{stem}")), &bytes).expect("write");
        eprintln!(
            "{}: {} of {} ops exact, decodes to {} ops",
            path.display(),
            exact,
            program.ops.len(),
            decoded.ops.len()
        );
        if exact < program.ops.len() {
            eprintln!("  decodes to:\n{decoded}");
        }
    }
}

#[test]
fn raw_bytes_read_back_as_the_same_raw_op() {
    let r = RawOp {
        verb: 1,
        who: 2,
        what: 3,
        a: 0x1234,
        b: 0x8001,
        c: 5,
        d: 6,
    };
    let bytes = raw_bytes(&r);
    assert_eq!(
        RawOp::arbitrary(&mut Unstructured::new(&bytes)).expect("raw op"),
        r
    );
}

//! The fuzzer and the later op families (docs/FUZZING.md, "The later op families"): the
//! dialect-4 seeds of `fuzz/corpus/ops/families/`, the mutations that keep a dialect
//! (`generate::mutate`), and the rule that skips what the kernel lacks.
//!
//! The seeds are programs of `cowcheck run`'s generator: `generate::random_program_bytes(SEED,
//! index, GenConfig::default())` for the indices in their names (`seed4-SEED-INDEX`), chosen
//! greedily among the first few hundred so that together they have every op kind of the later
//! families and every race kind, and none of them a hugetlb map (the fuzzer runs those only
//! with `COWCHECK_FUZZ_HUGETLB=1`). To regenerate them after the generator changed:
//!
//! ```text
//! cargo test --release --test fuzz_families -- --ignored regenerate_family_seeds
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cowcheck::check::Verdict;
use cowcheck::check::coverage::{self, CellSet};
use cowcheck::kernel::{Executor, ExecutorConfig};
use cowcheck::program::features::Features;
use cowcheck::program::generate::mutate::{self, PREFIX_BYTES, ROLLS};
use cowcheck::program::generate::{self, GenConfig, SplitMix};
use cowcheck::program::{Op, OpKind, Program};

/// The campaign seed the family seeds are drawn from.
const SEED: u64 = 3;
/// How many of its programs the greedy choice looks at.
const DRAWS: u64 = 400;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn seeds_dir() -> PathBuf {
    root().join("fuzz/corpus/ops/families")
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

fn decode(bytes: &[u8]) -> Program {
    generate::from_bytes(bytes, GenConfig::default())
}

/// What a program has of the later families: its op kinds, its race kinds, and "thp" for a
/// map of half a PMD or more.
fn traits(p: &Program) -> BTreeSet<String> {
    let mut t = BTreeSet::new();
    for op in &p.ops {
        t.insert(op.kind().name().to_string());
        match op {
            Op::Race { kind, .. } => {
                t.insert(format!("race {kind:?}"));
            }
            Op::Map { pages, args, .. } if *pages >= 256 && !args.hugetlb => {
                t.insert("thp".into());
            }
            _ => {}
        }
    }
    t
}

fn uses_hugetlb(p: &Program) -> bool {
    p.ops
        .iter()
        .any(|o| matches!(o, Op::Map { args, .. } if args.hugetlb))
}

/// (index, bytes) of the family seeds, chosen greedily: a program is taken when it brings a
/// trait no program taken before had.
fn choose_seeds() -> Vec<(u64, Vec<u8>)> {
    let mut have = BTreeSet::new();
    let mut out = Vec::new();
    for index in 0..DRAWS {
        let bytes = generate::random_program_bytes(SEED, index, GenConfig::default());
        let p = decode(&bytes);
        if uses_hugetlb(&p) {
            continue;
        }
        let t = traits(&p);
        if t.iter().any(|x| !have.contains(x)) {
            have.extend(t);
            out.push((index, bytes));
        }
    }
    out
}

fn committed_seeds() -> Vec<(PathBuf, Vec<u8>)> {
    files_in(&seeds_dir())
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).expect("read a family seed");
            (p, b)
        })
        .collect()
}

#[test]
#[ignore = "writes fuzz/corpus/ops/families; run by hand to regenerate"]
fn regenerate_family_seeds() {
    let dir = seeds_dir();
    std::fs::create_dir_all(&dir).expect("mkdir");
    for old in files_in(&dir) {
        std::fs::remove_file(old).expect("remove an old seed");
    }
    for (index, bytes) in choose_seeds() {
        std::fs::write(dir.join(format!("seed4-{SEED}-{index}")), &bytes).expect("write");
        let p = decode(&bytes);
        eprintln!(
            "seed4-{SEED}-{index}: {} ops, {:?}",
            p.ops.len(),
            traits(&p)
        );
    }
}

/// The committed seeds are what the generator draws now, and together they reach threads,
/// racing ops, vfork, CLONE_VM, the allocator and THP-sized maps, in dialect 3.
#[test]
fn the_family_seeds_are_the_generators_and_reach_every_family() {
    let committed = committed_seeds();
    let mut chosen = choose_seeds();
    // The files sort by name.
    chosen.sort_by_key(|(index, _)| format!("seed4-{SEED}-{index}"));
    assert_eq!(
        committed.len(),
        chosen.len(),
        "the family seeds are stale; regenerate them (see this file's doc)"
    );
    let mut all = BTreeSet::new();
    for ((path, bytes), (index, want)) in committed.iter().zip(&chosen) {
        assert!(
            path.ends_with(format!("seed4-{SEED}-{index}")) && bytes == want,
            "{} is not program {index} of seed {SEED}; regenerate the family seeds",
            path.display()
        );
        assert_eq!(mutate::dialect(bytes), 4, "{}", path.display());
        let p = decode(bytes);
        assert!(p.validate().is_ok());
        all.extend(traits(&p));
    }
    for want in [
        "thread", "by", "end", "race", "stop", "vfork", "clone", "alloc", "free", "mallopt", "thp",
    ] {
        assert!(all.contains(want), "no family seed has {want}: {all:?}");
    }
    let races = all.iter().filter(|t| t.starts_with("race ")).count();
    assert!(races >= 6, "race kinds among the seeds: {all:?}");
    // Some seed has a thread that runs ops and a race, in one program.
    assert!(committed.iter().any(|(_, b)| {
        let t = traits(&decode(b));
        t.contains("by") && t.contains("race")
    }));
}

/// The structural mutations keep a tagged input (a dialect-4 seed) in its dialect, on op
/// boundaries, whatever the roll; chains of them stay valid programs, and tag mutations bring in
/// family ops.
#[test]
fn mutations_keep_a_tagged_input_in_its_dialect() {
    let seeds = committed_seeds();
    assert!(!seeds.is_empty(), "no family seeds");
    let mut rng = SplitMix::new(1);
    let mut family_ops = 0;
    for (_, seed) in &seeds {
        let mut data = seed.clone();
        let mut size = data.len();
        data.resize(512, 0);
        for round in 0..300 {
            let roll = (rng.next_u64() % ROLLS as u64) as usize;
            if let Some(n) = mutate::structural(&mut data, size, 512, roll, &mut rng) {
                size = n;
            }
            let bytes = &data[..size];
            assert_eq!(mutate::dialect(bytes), 4, "round {round}, roll {roll}");
            assert_eq!(
                (size - PREFIX_BYTES) % 10,
                (seed.len() - PREFIX_BYTES) % 10,
                "off the op grain after roll {roll}"
            );
            let p = decode(bytes);
            assert!(p.validate().is_ok());
            family_ops += p
                .ops
                .iter()
                .filter(|o| {
                    matches!(
                        o.kind(),
                        OpKind::Thread | OpKind::By | OpKind::Race | OpKind::Alloc
                    )
                })
                .count();
        }
    }
    assert!(family_ops > 1000, "{family_ops} family ops in the mutants");
}

/// Lifting a first-dialect input into dialect 3 keeps its program: every committed corpus
/// input (all first dialect) lifts to the same ops.
#[test]
fn lifting_keeps_the_program_of_every_corpus_input() {
    let mut n = 0;
    for path in files_in(&root().join("fuzz/corpus/ops")) {
        let bytes = std::fs::read(&path).expect("read a corpus file");
        let mut data = bytes.clone();
        data.resize(bytes.len() * 2 + 32, 0);
        let mut rng = SplitMix::new(n);
        let cap = data.len();
        let size = mutate::lift(&mut data, bytes.len(), cap, || rng.next_u64() as u8)
            .expect("room enough");
        assert_eq!(mutate::dialect(&data[..size]), 4);
        assert_eq!(
            decode(&data[..size]),
            decode(&bytes),
            "{} lifts to another program",
            path.display()
        );
        n += 1;
    }
    assert!(n > 100, "{n} corpus inputs");
    // A lifted input is not lifted twice.
    let mut data = generate::random_program_bytes(SEED, 0, GenConfig::default());
    let size = data.len();
    assert_eq!(mutate::lift(&mut data, size, size + 100, || 0), None);
}

/// The skip rule: a program that needs what the kernel lacks, or a hugetlb map where hugetlb
/// was not asked for, is named; one that needs nothing of it is not; fresh programs are drawn
/// without it.
#[test]
fn programs_that_need_an_absent_feature_are_skipped() {
    use mutate::Skip;
    let config = GenConfig::default();
    let no_clone = Features {
        clone_vm: false,
        ..Features::ALL
    };
    let (mut huge, mut clone, mut neither) = (0, 0, 0);
    for index in 0..300 {
        let bytes = generate::random_program_bytes(SEED, index, config);
        let p = decode(&bytes);
        assert_eq!(mutate::skip(&bytes, &p, Features::ALL, true), None);
        let hugetlb = mutate::uses_hugetlb(&p);
        assert_eq!(hugetlb, uses_hugetlb(&p));
        assert_eq!(
            mutate::skip(&bytes, &p, Features::ALL, false),
            hugetlb.then_some(Skip::Hugetlb),
            "program {index}"
        );
        let clones = p.ops.iter().any(|o| o.kind() == OpKind::CloneVm);
        if clones {
            assert_eq!(
                mutate::skip(&bytes, &p, no_clone, true),
                Some(Skip::Absent),
                "program {index}"
            );
            clone += 1;
        }
        huge += usize::from(hugetlb);
        neither += usize::from(!clones && !hugetlb);
    }
    assert!(
        huge > 10 && clone > 0 && neither > 100,
        "{huge} {clone} {neither}"
    );
    // Fresh programs have neither what the kernel lacks nor hugetlb maps unless asked.
    for seed in 0..200 {
        let bytes = mutate::fresh_program_bytes(seed, no_clone, false);
        assert_eq!(mutate::dialect(&bytes), 4);
        let p = decode(&bytes);
        assert!(!uses_hugetlb(&p), "fresh program of seed {seed}");
        assert!(
            !p.ops.iter().any(|o| o.kind() == OpKind::CloneVm),
            "fresh program of seed {seed}"
        );
    }
    // First-dialect inputs follow the same rule (classic ops gated on features).
    let no_guard = Features {
        guard: false,
        guard_shared: false,
        ..Features::ALL
    };
    let mut guarded = 0;
    for path in files_in(&root().join("fuzz/corpus/ops")) {
        let bytes = std::fs::read(&path).expect("read a corpus file");
        let p = decode(&bytes);
        let guards = p
            .ops
            .iter()
            .any(|o| matches!(o, Op::Advise { advice, .. } if advice.name().starts_with("guard")));
        if guards {
            assert!(
                mutate::needs_absent(&bytes, &p, no_guard),
                "{}",
                path.display()
            );
            guarded += 1;
        }
    }
    assert!(guarded > 0);
}

/// Every family seed agrees with the model on this kernel, skipped where it needs a feature
/// the kernel lacks, as the `ops` target skips it.
#[test]
fn every_family_seed_agrees_with_the_model() {
    let config = ExecutorConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_cowcheck")));
    let mut ex = Executor::start(&config).expect("start the executor");
    let (mut ran, mut threads) = (0, 0);
    let mut cells = CellSet::new();
    for (path, bytes) in committed_seeds() {
        let program = decode(&bytes);
        if mutate::skip(&bytes, &program, ex.hello.features, false).is_some() {
            eprintln!(
                "{}: skipped, needs a feature this kernel lacks",
                path.display()
            );
            continue;
        }
        let (verdict, _) = cowcheck::trial::run(&mut ex, &program, Some(&mut cells))
            .unwrap_or_else(|e| panic!("harness error on {}: {e}", path.display()));
        match verdict {
            Verdict::Agreed(t) => {
                ran += 1;
                threads += usize::from(t.thread_ops > 0 || t.races.iter().sum::<usize>() > 0);
            }
            Verdict::Diverged(d) => panic!(
                "{} diverges ({}):\n{program}",
                path.display(),
                d.signature(&program)
            ),
        }
    }
    eprintln!(
        "{ran} family seeds ran, {threads} with threads or races, {} semantic cells",
        cells.len()
    );
    // Their cells reach the fuzzer as the classic ops' do (`check_program` hands the same
    // sink to the comparison).
    if ran == committed_seeds().len() {
        for kind in [
            OpKind::Race,
            OpKind::Thread,
            OpKind::Stop,
            OpKind::Vfork,
            OpKind::CloneVm,
            OpKind::Alloc,
        ] {
            assert!(
                cells.iter().any(|c| c.op == kind),
                "no cell of {}",
                kind.name()
            );
        }
    }
}

/// A race names one page, a vfork the pages its child writes: their cells are those pages',
/// not the whole mapping's.
#[test]
fn race_and_vfork_cells_are_their_pages() {
    let text = "cowcheck-trace 1\n\
                p0 map m0 private 4\n\
                p0 write m0 1 fill 0x01\n\
                p0 race t0 write m0 1\n\
                p0 stop t0\n\
                p0 vfork write m0 2 fill 0x02\n";
    let program = cowcheck::program::trace::parse_str(text).expect("trace");
    let mut cells: Vec<(usize, String)> = Vec::new();
    coverage::walk(&program, 4096, |i, c| cells.push((i, c.to_string())));
    let of = |i: usize| -> Vec<&str> {
        cells
            .iter()
            .filter(|(j, _)| *j == i)
            .map(|(_, c)| c.as_str())
            .collect()
    };
    assert_eq!(of(2), ["race private private-exclusive alone"]);
    assert_eq!(of(4), ["vfork private private-untouched alone"]);
}

//! A runtime's own regions (valgrind's page for vgdb, here the stand-in shim
//! tests/faults/libownregion.c): learnt from a baseline program under `--under`, or named
//! with `--ignore-region`, set aside where the program has no memory and reported once; never
//! learnt on the plain kernel, never set aside over the program's own memory, and a real
//! divergence under the same runtime is still caught.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use cowcheck::check::set_aside;
use cowcheck::kernel::{Executor, ExecutorConfig};
use cowcheck::program::ProcId;
use cowcheck::program::outcome::{Backing, PROT_R, PROT_W, ProcView, Region, Snapshot};
use cowcheck::program::runtime_regions::RegionKind;

/// tests/faults/libownregion.c built once; `None` (after a note) without a C compiler.
fn libownregion() -> Option<PathBuf> {
    shim("libownregion")
}

fn under_shim(lib: &Path) -> String {
    format!("env LD_PRELOAD={}", lib.display())
}

#[test]
fn the_plain_kernel_shows_no_region_of_a_runtime() {
    let config = ExecutorConfig::new(PathBuf::from(BIN));
    let mut executor = Executor::start(&config).expect("start the executor");
    let learnt = cowcheck::trial::learn_own_regions(&mut executor).expect("baseline program");
    assert!(learnt.is_empty(), "learnt on the plain kernel: {learnt:?}");
}

#[test]
fn a_runtime_region_is_learnt_set_aside_and_reported_once() {
    let Some(lib) = libownregion() else { return };
    let mut config = ExecutorConfig::new(PathBuf::from(BIN));
    config.under = under_shim(&lib).split(' ').map(String::from).collect();
    let mut executor = Executor::start(&config).expect("start the executor");
    let learnt = cowcheck::trial::learn_own_regions(&mut executor).expect("baseline program");
    assert_eq!(learnt, vec![RegionKind::parse("rw-s:file").unwrap()]);

    let dir = tmpdir("own-region-run");
    let run = cowcheck(&[
        "run",
        "--under",
        &under_shim(&lib),
        "--cases",
        "200",
        "--seed",
        "3",
        "--jobs",
        "1",
        "--json",
        "--out",
        &dir.display().to_string(),
    ]);
    run.expect_code(0);
    let v = run.json();
    assert_eq!(
        v["runtime_regions"][0]["kind"],
        "rw-s:file",
        "{}",
        run.dump()
    );
    assert_eq!(v["runtime_regions"].as_array().unwrap().len(), 1);
    assert!(v["programs_with_runtime_regions"].as_u64().unwrap() > 0);
}

/// The broken side: the same region, neither learnt nor named, is a layout divergence.
#[test]
fn without_recognition_the_runtime_region_diverges() {
    let Some(lib) = libownregion() else { return };
    let dir = tmpdir("own-region-replay");
    let trace = write_file(&dir, "private.trace", PRIVATE);
    let t = trace.display().to_string();
    let shim = under_shim(&lib);
    let plain = cowcheck(&["replay", "--under", &shim, &t]);
    plain.expect_code(1);
    assert!(plain.stdout.contains("layout"), "{}", plain.dump());
    cowcheck(&[
        "replay",
        "--under",
        &shim,
        "--ignore-region",
        "rw-s:file",
        &t,
    ])
    .expect_code(0);
    // A kind that is not the region's sets nothing aside.
    cowcheck(&[
        "replay",
        "--under",
        &shim,
        "--ignore-region",
        "rw-s:shmem",
        &t,
    ])
    .expect_code(1);
}

/// A real divergence under the same runtime is still found: private memory made shared by
/// tests/faults/libfault.c, with the shim's region beside it.
#[test]
fn a_real_divergence_under_the_runtime_is_still_caught() {
    let (Some(own), Some(fault)) = (libownregion(), libfault()) else {
        return;
    };
    let dir = tmpdir("own-region-fault");
    let under = format!(
        "env COWCHECK_FAULT=private-shared LD_PRELOAD={}:{}",
        fault.display(),
        own.display()
    );
    let run = cowcheck(&[
        "run",
        "--under",
        &under,
        "--seed",
        "1",
        "--cases",
        "300",
        "--jobs",
        "1",
        "--json",
        "--out",
        &dir.display().to_string(),
    ]);
    run.expect_code(1);
    let v = run.json();
    assert_eq!(
        v["runtime_regions"][0]["kind"],
        "rw-s:file",
        "{}",
        run.dump()
    );
    assert_eq!(v["runtime_regions"].as_array().unwrap().len(), 1);
}

fn region(start: u64, end: u64, shared: bool, backing: Backing) -> Region {
    Region {
        start,
        end,
        prot: PROT_R | PROT_W,
        shared,
        backing,
    }
}

/// Memory the model expects of a process is never set aside, whatever kinds are named; a
/// region elsewhere of a named kind is, with its pages.
#[test]
fn set_aside_never_touches_the_programs_memory() {
    let kinds = [
        RegionKind::parse("rw-s").unwrap(),
        RegionKind::parse("rw-p:anon").unwrap(),
    ];
    let p0 = ProcId(0);
    let expected = Snapshot {
        procs: vec![ProcView {
            proc: p0,
            regions: vec![region(0x10000, 0x12000, false, Backing::Anon)],
            pages: vec![(0x10000, 1), (0x11000, 2)],
            phys: Vec::new(),
        }],
    };
    // The kernel shows the program's mapping grown by a page and made shared (a divergence),
    // and a shared file page far away (the runtime's).
    let observed = Snapshot {
        procs: vec![ProcView {
            proc: p0,
            regions: vec![
                region(0x10000, 0x13000, true, Backing::Shmem),
                region(0x40000, 0x41000, true, Backing::Other),
            ],
            pages: vec![(0x10000, 1), (0x11000, 2), (0x12000, 3), (0x40000, 9)],
            phys: Vec::new(),
        }],
    };
    let (kept, n) = set_aside(&kinds, &expected, &observed);
    assert_eq!(n, 1);
    assert_eq!(
        kept.procs[0].regions,
        vec![region(0x10000, 0x13000, true, Backing::Shmem)]
    );
    assert_eq!(
        kept.procs[0].pages,
        vec![(0x10000, 1), (0x11000, 2), (0x12000, 3)]
    );
    // No kinds: nothing set aside.
    assert_eq!(set_aside(&[], &expected, &observed), (observed.clone(), 0));
    // A process the model does not expect keeps everything.
    let (kept, n) = set_aside(&kinds, &Snapshot::default(), &observed);
    assert_eq!((kept, n), (observed, 0));
}

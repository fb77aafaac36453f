//! Proof that the glibc rules (docs/SEMANTICS.md M8 to M11) can fail: tests/faults/libglibc.c
//! leaves glibc's `malloc` in place (the probe still says GLIBC_MALLOC) and breaks one rule;
//! loaded into the executor with `--under`, it is caught by `cowcheck run --seed 1 --cases 20000`,
//! shrunk to a few ops, saved, and the saved trace replays to a divergence under the fault and
//! agrees without it. The shim without a fault changes nothing: a short campaign stays clean.

mod common;

use std::path::PathBuf;

use common::*;

/// Most ops a shrunk divergence may keep.
const MAX_SHRUNK_OPS: usize = 6;

/// tests/faults/libglibc.c built once; `None` (after a note) without a C compiler or glibc.
fn libglibc() -> Option<PathBuf> {
    if !cfg!(target_env = "gnu") {
        eprintln!("note: not a glibc build; skipping the libglibc tests");
        return None;
    }
    shim("libglibc")
}

/// free of a mapped chunk that keeps the mapping (M9).
#[test]
fn libglibc_free_keeps_mapped() {
    let Some(lib) = libglibc() else { return };
    let under = format!(
        "env COWCHECK_GLIBC_FAULT=free-keeps-mapped LD_PRELOAD={}",
        lib.display()
    );
    let Caught {
        divergence: div,
        trace,
        ops,
        ..
    } = caught_and_shrunk("libglibc-free-keeps-mapped", &under, MAX_SHRUNK_OPS);
    assert!(
        ops.iter().any(|o| o.contains(" free ")),
        "the divergence should be a free:\n{trace}"
    );
    assert!(
        div.to_string().contains("M9"),
        "the divergence should cite M9: {div}"
    );
}

/// free of a mapped chunk followed by a mallopt that puts the threshold back at 128 KiB: an
/// allocator whose threshold never rises, caught by M8 with the threshold M11 raised.
#[test]
fn libglibc_threshold_never_rises() {
    let Some(lib) = libglibc() else { return };
    let under = format!(
        "env COWCHECK_GLIBC_FAULT=threshold-never-rises LD_PRELOAD={}",
        lib.display()
    );
    let Caught {
        divergence: div,
        trace,
        ops,
        saved,
    } = caught_and_shrunk("libglibc-threshold-never-rises", &under, MAX_SHRUNK_OPS);
    assert!(
        ops.iter().any(|o| o.contains(" free ")) && !ops.iter().any(|o| o.contains(" mallopt ")),
        "the divergence should be an allocation after a free, with no mallopt:\n{trace}"
    );
    assert!(
        div.to_string().contains("M11"),
        "the divergence should cite M11: {div}"
    );
    reproducer_shows_it(&lib, &saved);
}

/// The C reproducer of that finding prints the glibc facts it checks (M8, M9, M11): it passes
/// without the fault and fails with it (the shim started one fork up, where a reproducer's
/// program processes are).
fn reproducer_shows_it(lib: &std::path::Path, trace: &std::path::Path) {
    let bin = built_reproducer(&trace.with_extension("c"), trace);
    let run = |fault: bool| {
        let mut cmd = std::process::Command::new(&bin);
        if fault {
            cmd.env("COWCHECK_GLIBC_FAULT", "threshold-never-rises")
                .env("COWCHECK_GLIBC_FAULT_DEPTH", "1")
                .env("LD_PRELOAD", lib);
        }
        let out = cmd.output().expect("the reproducer runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, clean) = run(false);
    assert_eq!(code, Some(0), "{clean}");
    assert!(
        clean.contains("free unmapped")
            && clean.contains("(its own mapping: ")
            && clean.contains("raised by the free of a mapped chunk, M11"),
        "{clean}"
    );
    let (code, faulty) = run(true);
    assert_eq!(code, Some(1), "{faulty}");
    assert!(
        faulty.contains("not ok 3") && faulty.contains("(M8)"),
        "{faulty}"
    );
}

/// The shim with no fault selected keeps glibc's behaviour: no false alarm.
#[test]
fn libglibc_without_a_fault_is_clean() {
    let Some(lib) = libglibc() else { return };
    let under = format!("env LD_PRELOAD={}", lib.display());
    cowcheck(&["run", "--seed", "1", "--cases", "300", "--under", &under]).expect_code(0);
}

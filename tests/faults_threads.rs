//! Proof that the racing checks can fail (docs/SEMANTICS.md T2, T9): under tests/faults/libthreads.c,
//! whose fork lets a multithreaded process's child see its parent's memory for a moment after
//! the fork, a seeded campaign finds a divergence within 60 s, shrinks it to a few ops with a
//! race and a fork in its window, saves it, and the saved trace replays to a divergence under
//! the fault and agrees without it. A single-threaded fork is untouched by the fault, so only
//! the threads family can catch it.

mod common;

use std::path::PathBuf;

use common::*;

/// tests/faults/libthreads.c (`shim`).
fn libthreads() -> Option<PathBuf> {
    shim("libthreads")
}

/// tests/faults/libvfork.c (`shim`).
fn libvfork() -> Option<PathBuf> {
    shim("libvfork")
}

#[test]
fn fork_peek_is_caught_and_shrunk() {
    let Some(lib) = libthreads() else { return };
    let under = format!(
        "env COWCHECK_THREADS_FAULT=fork-peek LD_PRELOAD={}",
        lib.display()
    );
    // The fault shows only while its 20 ms window is open, so on a loaded machine the shrinker
    // may keep an op or two that a quiet one drops (seen once at 7 ops beside three compiles):
    // the bound of the wider op set's faults (tests/faults.rs), not the core ones'.
    let Caught { ops, trace, .. } = caught_and_shrunk("libthreads-fork-peek", &under, 8);
    let race = ops.iter().position(|o| o.contains(" race "));
    let fork = ops.iter().rposition(|o| o.contains(" fork "));
    assert!(
        matches!((race, fork), (Some(r), Some(f)) if r < f),
        "the shrunk trace needs a fork inside a racing window:\n{trace}"
    );
}

#[test]
fn vfork_copy_is_caught_and_shrunk() {
    let Some(lib) = libvfork() else { return };
    let under = format!("env LD_PRELOAD={}", lib.display());
    let Caught { ops, trace, .. } = caught_and_shrunk("libvfork-copy", &under, 4);
    assert!(
        ops.iter().any(|o| o.contains(" vfork ")),
        "the shrunk trace needs a vfork:\n{trace}"
    );
}

#[test]
fn dirty_cow_is_caught_and_shrunk() {
    let Some(lib) = libthreads() else { return };
    let under = format!(
        "env COWCHECK_THREADS_FAULT=dirty-cow LD_PRELOAD={}",
        lib.display()
    );
    // docs/SEMANTICS.md T9: the forced write of a process whose other thread zaps the page
    // reaches its parent. Shrunk (measured): `map`, `fork`, then the pair in the child.
    let Caught { ops, trace, .. } = caught_and_shrunk("libthreads-dirty-cow", &under, 6);
    let pair = ["dontneed", "poke"]
        .iter()
        .all(|k| ops.iter().any(|o| o.contains(" race ") && o.contains(k)));
    assert!(
        pair && ops.iter().any(|o| o.contains(" fork ")),
        "the shrunk trace needs a fork and the racing pair:\n{trace}"
    );
}

/// The C reproducer of a vfork child's stores (docs/SEMANTICS.md T5) passes on this kernel and
/// fails under tests/faults/libvfork.c, whose vfork is a fork.
#[test]
fn the_vfork_reproducer_fails_under_a_copying_vfork() {
    let Some(lib) = libvfork() else { return };
    let trace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios/threads/vfork-child-writes-shared.trace");
    let dir = tmpdir("repro-vfork");
    let c = dir.join("vfork.c");
    let bin = built_reproducer(&c, &trace);
    let deadline = std::time::Duration::from_secs(60);
    let plain = run_command(std::process::Command::new(&bin), deadline);
    plain.expect_code(0);
    assert!(
        plain.stdout.starts_with("KTAP version 1"),
        "{}",
        plain.dump()
    );
    let mut cmd = std::process::Command::new(&bin);
    cmd.env("LD_PRELOAD", &lib);
    let faulty = run_command(cmd, deadline);
    faulty.expect_code(1);
    assert!(faulty.stdout.contains("not ok"), "{}", faulty.dump());
}

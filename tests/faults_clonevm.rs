//! Proof that the CLONE_VM checks can fail (docs/SEMANTICS.md T30, T31): under
//! tests/faults/libclonevm.c, whose `clone` drops CLONE_VM from a process clone (the child gets
//! a copy of the address space, as a fork child does), a seeded campaign finds a divergence,
//! shrinks it to a few ops with a `clone`, saves it, and the saved trace replays to a
//! divergence under the fault and agrees without it; and a scenario whose child writes to a
//! private page diverges under the fault by its contents, in `replay` and in its C reproducer.

mod common;

use std::path::PathBuf;

use common::*;

/// tests/faults/libclonevm.c (`shim`).
fn libclonevm() -> Option<PathBuf> {
    shim("libclonevm")
}

#[test]
fn a_copying_clone_is_caught_and_shrunk() {
    let Some(lib) = libclonevm() else { return };
    let under = format!("env LD_PRELOAD={}", lib.display());
    let Caught { ops, trace, .. } = caught_and_shrunk("libclonevm-copy", &under, 4);
    assert!(
        ops.iter().any(|o| o.contains(" clone ")),
        "the shrunk trace needs a clone:\n{trace}"
    );
}

/// The shortest shape the campaign shrinks to (a shared page, a clone): the copy shows in
/// the physical channel only where the clone's parent takes its view after the child's
/// loads (`schedule::late_viewers`, T31). The views are ordered so, and every replay under the
/// copying clone diverges; unordered, 14 of 20 did, and this test failed.
#[test]
fn the_copy_shows_in_every_replay_of_the_shortest_trace() {
    let Some(lib) = libclonevm() else { return };
    let dir = tmpdir("clonevm-shortest");
    let trace = write_file(
        &dir,
        "shortest.trace",
        "cowcheck-trace 1\np0 map m0 shared 3\np0 write m0 2 fill 0x59\np0 clone p1\n",
    );
    let path = trace.to_str().expect("utf-8 path");
    cowcheck(&["replay", path]).expect_code(0);
    let under = format!("env LD_PRELOAD={}", lib.display());
    for _ in 0..10 {
        let run = cowcheck(&["replay", path, "--under", &under]);
        run.expect_code(1);
        assert!(
            run.stdout.contains("first seen after op 3: p0 clone p1"),
            "{}",
            run.dump()
        );
    }
}

/// A clone child's store to a private page is its parent's (T31): under the copying clone the
/// parent reads its own old bytes, and the scenario's expectation fails on the kernel's side.
#[test]
fn the_private_write_scenario_fails_under_a_copying_clone() {
    let Some(lib) = libclonevm() else { return };
    let trace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios/threads/clone-vm-writes-private.trace");
    let path = trace.to_str().expect("utf-8 path");
    cowcheck(&["replay", path]).expect_code(0);
    let under = format!("env LD_PRELOAD={}", lib.display());
    let run = cowcheck(&["replay", path, "--under", &under]);
    run.expect_code(1);
    assert!(
        run.stdout
            .contains("line 11 (op 5, p0 read m0 1 => 0x22): kernel"),
        "the parent must miss the child's store:\n{}",
        run.dump()
    );
}

/// The C reproducer of a clone child's private stores (docs/SEMANTICS.md T30, T31; `V_CLONE`
/// in runtime.c) passes on this kernel and fails under the copying clone: the parent misses
/// the child's store, and the child its parent's. (The campaign's shrunk trace above is caught
/// by the exclusive bit, I8: the copy's second page table maps the shared page the views
/// read; a reproducer checks pagemap page by page, not across processes.)
#[test]
fn the_clone_reproducer_fails_under_a_copying_clone() {
    let Some(lib) = libclonevm() else { return };
    let trace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios/threads/clone-vm-writes-private.trace");
    let dir = tmpdir("repro-clonevm");
    let c = dir.join("clonevm.c");
    let bin = built_reproducer(&c, &trace);
    let deadline = std::time::Duration::from_secs(60);
    let plain = run_command(std::process::Command::new(&bin), deadline);
    plain.expect_code(0);
    assert!(
        plain.stdout.contains("# 0 of 12 tests failed"),
        "{}",
        plain.dump()
    );
    let mut cmd = std::process::Command::new(&bin);
    cmd.env("LD_PRELOAD", &lib);
    let faulty = run_command(cmd, deadline);
    faulty.expect_code(1);
    assert!(
        faulty
            .stdout
            .contains("not ok 7 - p0 read m0 1: reads 0x22×4096"),
        "{}",
        faulty.dump()
    );
}

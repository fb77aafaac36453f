//! Proof that the checks of racing layout changes can fail (docs/SEMANTICS.md T11): under
//! tests/faults/libracers.c `protect-stuck`, whose mprotect to read-write from a thread that is
//! not its process's first does nothing, a seeded campaign finds a divergence, shrinks it to a
//! few ops with a `protect` race, saves it, and the saved trace replays to a divergence under
//! the fault and agrees without it; and the C reproducer of
//! scenarios/threads/protect-flips-across-fork.trace fails under the fault and passes without.
//! A single-threaded mprotect is untouched by the fault, so only a racing thread shows it.
//! Likewise for racing mremap moves (T13) under `remap-copies`, whose mremap from a thread that
//! is not its process's first copies the page and leaves the source mapped, and for racing
//! vmsplice (T14) under `vmsplice-leak`, whose vmsplice from such a thread, once its process
//! forked, gives the pipe a page with bytes a child could have stored, and for racing
//! MADV_PAGEOUT (T16) under `pageout-drops`, whose MADV_PAGEOUT from such a thread drops a
//! private page's bytes, and for racing faults (T17) under `fault-leak`, whose MADV_DONTNEED
//! from such a thread, once its process forked, first writes the page's last word into the
//! newest child's copy (the K15 class: a thread's store after fork reaching the child).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// tests/faults/libracers.c (`shim`).
fn libracers() -> Option<PathBuf> {
    shim("libracers")
}

#[test]
fn protect_stuck_is_caught_and_shrunk() {
    // Measured: caught at the 139th program of seed 1 (3 s), shrunk to `map`, `map ... fixed`,
    // `race t0 protect`, `stop t0` and a store that dies.
    race_caught_and_shrunk("protect-stuck", "protect", 6);
}

/// Runs `cowcheck run` under the libracers fault `fault` (tests/common `caught_and_shrunk`) and
/// checks that the shrunk trace, at most `max_ops` long, still has a `race` of `kind`.
fn race_caught_and_shrunk(fault: &str, kind: &str, max_ops: usize) {
    let Some(lib) = libracers() else { return };
    let under = format!(
        "env COWCHECK_RACERS_FAULT={fault} LD_PRELOAD={}",
        lib.display()
    );
    let Caught { ops, trace, .. } =
        caught_and_shrunk(&format!("libracers-{fault}"), &under, max_ops);
    assert!(
        ops.iter()
            .any(|o| o.contains(" race ") && o.contains(&format!(" {kind} "))),
        "the shrunk trace needs a {kind} race:\n{trace}"
    );
}

/// Builds the C reproducer of `scenarios/threads/SCENARIO.trace`, checks that it passes
/// without a fault (2 s of rounds) and exits 1 under the libracers fault `fault` (up to 60 s):
/// its run under the fault, for the caller's checks of what failed. `None` without the shim.
fn reproducer_under_fault(scenario: &str, fault: &str) -> Option<Run> {
    let lib = libracers()?;
    let trace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios/threads")
        .join(format!("{scenario}.trace"));
    let dir = tmpdir(&format!("repro-{fault}"));
    let bin = built_reproducer(&dir.join(format!("{scenario}.c")), &trace);
    let clean = run(&bin, &[("COWCHECK_REPRO_SECONDS", "2")]);
    clean.expect_code(0);
    assert!(
        clean.stdout.contains("every round passed"),
        "{}",
        clean.dump()
    );
    let lib = lib.display().to_string();
    let out = run(
        &bin,
        &[
            ("COWCHECK_REPRO_SECONDS", "60"),
            ("COWCHECK_RACERS_FAULT", fault),
            ("LD_PRELOAD", &lib),
        ],
    );
    out.expect_code(1);
    Some(out)
}

/// Runs the reproducer `bin` with `env`: its exit code and stdout.
fn run(bin: &Path, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(bin);
    cmd.envs(env.iter().copied());
    run_command(cmd, Duration::from_secs(120))
}

#[test]
fn the_protect_reproducer_fails_under_protect_stuck() {
    let Some(out) = reproducer_under_fault("protect-flips-across-fork", "protect-stuck") else {
        return;
    };
    // The store after the stop meets the page the fault left read-only.
    assert!(
        out.stdout.contains("not ok") && out.stdout.contains("p0 write m0 1 fill 0x13"),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout.contains("the last round failed"),
        "{}",
        out.dump()
    );
}

#[test]
fn remap_copies_is_caught_and_shrunk() {
    // Measured: caught at the 45th program of seed 1 (1.4 s), shrunk to `map` and
    // `race t0 remap`, whose first view shows the page at home and at the spare.
    race_caught_and_shrunk("remap-copies", "remap", 4);
}

#[test]
fn the_remap_reproducer_fails_under_remap_copies() {
    let Some(out) = reproducer_under_fault("remap-racer-across-fork", "remap-copies") else {
        return;
    };
    // After the stop the fault's copy left the spare mapped, where the model has a hole.
    assert!(
        out.stdout.contains("not ok") && out.stdout.contains("expected unmapped, got mapped"),
        "{}",
        out.dump()
    );
}

#[test]
fn vmsplice_leak_is_caught_and_shrunk() {
    // Measured: caught at the 117th program of seed 1 (2.7 s), shrunk to `map`,
    // `race t0 vmsplice`, `fork` and the `stop`, which reports drops where none may be.
    race_caught_and_shrunk("vmsplice-leak", "vmsplice", 5);
}

#[test]
fn the_vmsplice_reproducer_fails_under_vmsplice_leak() {
    let Some(out) = reproducer_under_fault("vmsplice-racer-child-writes", "vmsplice-leak") else {
        return;
    };
    // The stop's drained pages differed from the first one.
    assert!(
        out.stdout.contains("not ok") && out.stdout.contains("p0 stop t0"),
        "{}",
        out.dump()
    );
}

#[test]
fn pageout_drops_is_caught_and_shrunk() {
    // Measured: caught at the 115th program of seed 1 (2.3 s), shrunk to `map`, a `poke` that
    // fills the page, `race t0 pageout` and a read of the page, which the fault zeroed.
    race_caught_and_shrunk("pageout-drops", "pageout", 5);
}

#[test]
fn the_pageout_reproducer_fails_under_pageout_drops() {
    let Some(out) = reproducer_under_fault("pageout-racer", "pageout-drops") else {
        return;
    };
    // The private page the writer and the pageout thread raced on lost its bytes.
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("not ok") && l.contains("p0 read m0 0[0..100]: reads 0x33")),
        "{}",
        out.dump()
    );
}

#[test]
fn fault_leak_is_caught_and_shrunk() {
    // Measured: caught at the 19th program of seed 1 (0.2 s), shrunk to `map`, `fork` and
    // `race t0 fault`, whose counter showed in the child's page.
    race_caught_and_shrunk("fault-leak", "fault", 4);
}

#[test]
fn the_fault_reproducer_fails_under_fault_leak() {
    let Some(out) = reproducer_under_fault("fault-racer", "fault-leak") else {
        return;
    };
    // A child's copy took a counter the parent's thread stored after the fork: seen by a read
    // of the page, or by the state check of a child whose copy changed after its read (the
    // shim writes into the newest child it knows, which for a moment after p0's second fork
    // is still p1: 1 run in 8 showed it there, `not ok 11 - state of p1 after op 7`, "first:
    // m0 page 0: expected mapped with its bytes but the last 8 as the model's").
    let lines: Vec<&str> = out.stdout.lines().collect();
    let by_read = lines
        .iter()
        .any(|l| l.starts_with("not ok") && l.contains("read m0 0"));
    let by_state = lines.iter().enumerate().any(|(i, l)| {
        l.starts_with("not ok")
            && l.contains("- state of p")
            && lines[i + 1..]
                .iter()
                .take_while(|d| d.starts_with('#'))
                .any(|d| {
                    d.contains("first: m0 page 0: expected mapped with its bytes but the last 8")
                })
    });
    assert!(by_read || by_state, "{}", out.dump());
}

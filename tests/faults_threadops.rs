//! Proof that the op-thread checks can fail (docs/SEMANTICS.md T21, T23): under
//! tests/faults/libthreadops.c, whose `munmap` and `fork` misbehave only when a thread other than
//! the process's main one calls them, a seeded campaign finds a divergence, shrinks it to a few
//! ops with an op run by a thread, saves it, and the saved trace replays to a divergence under
//! the fault and agrees without it. A call by a main thread is untouched by the faults, so only
//! the op threads can catch them; the scenarios of T21 and T23 fail under them too.

mod common;

use std::path::PathBuf;

use common::*;

/// tests/faults/libthreadops.c (`shim`).
fn libthreadops() -> Option<PathBuf> {
    shim("libthreadops")
}

fn under(lib: &std::path::Path, fault: &str) -> String {
    format!(
        "env COWCHECK_THREADOPS_FAULT={fault} LD_PRELOAD={}",
        lib.display()
    )
}

/// The shrunk trace's ops include one run by a thread (`tK VERB ...`) of `verb`.
fn by_a_thread(ops: &[String], verb: &str) -> bool {
    ops.iter().any(|o| {
        let mut words = o.split_whitespace();
        matches!((words.next(), words.next()), (Some(t), Some(v)) if t.starts_with('t') && v == verb)
    })
}

#[test]
fn munmap_keeps_is_caught_and_shrunk() {
    let Some(lib) = libthreadops() else { return };
    // Measured: `p0 thread t7`, `p0 map m0 private 6`, `t7 unmap m0 4`, `p0 write m0 0..6 ...`.
    let Caught { ops, trace, .. } =
        caught_and_shrunk("libthreadops-munmap-keeps", &under(&lib, "munmap-keeps"), 5);
    assert!(
        by_a_thread(&ops, "unmap"),
        "the shrunk trace needs an unmap by a thread:\n{trace}"
    );
}

#[test]
fn fork_shares_is_caught_and_shrunk() {
    let Some(lib) = libthreadops() else { return };
    let Caught { ops, trace, .. } =
        caught_and_shrunk("libthreadops-fork-shares", &under(&lib, "fork-shares"), 5);
    assert!(
        by_a_thread(&ops, "fork"),
        "the shrunk trace needs a fork by a thread:\n{trace}"
    );
}

/// The scenarios of T21 and T23 agree here and fail under the faults (the checks by content,
/// with the physical channel off).
#[test]
fn the_scenarios_fail_under_the_faults() {
    let Some(lib) = libthreadops() else { return };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for (scenario, fault) in [
        (
            "scenarios/threads/thread-munmaps-main-reads.trace",
            "munmap-keeps",
        ),
        (
            "scenarios/threads/main-writes-after-thread-fork.trace",
            "fork-shares",
        ),
    ] {
        let path = root.join(scenario);
        let extra = ["--no-physical".to_string()];
        let (code, _, plain) = replay_json(&path, &extra);
        assert_eq!(code, 0, "{scenario} agrees here\n{}", plain.dump());
        let extra = [
            "--no-physical".to_string(),
            "--under".to_string(),
            under(&lib, fault),
        ];
        let (code, _, faulty) = replay_json(&path, &extra);
        assert_eq!(code, 1, "{scenario} fails under {fault}\n{}", faulty.dump());
    }
}

/// The C reproducers (pthreads, the op thread pinned like the executor's) of the T21 and T23
/// scenarios pass here and fail under the faults.
#[test]
fn the_reproducers_fail_under_the_faults() {
    let Some(lib) = libthreadops() else { return };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tmpdir("repro-threadops");
    let deadline = std::time::Duration::from_secs(60);
    for (name, fault) in [
        ("thread-munmaps-main-reads", "munmap-keeps"),
        ("main-writes-after-thread-fork", "fork-shares"),
    ] {
        let trace = root.join(format!("scenarios/threads/{name}.trace"));
        let bin = built_reproducer(&dir.join(format!("{name}.c")), &trace);
        let plain = run_command(std::process::Command::new(&bin), deadline);
        plain.expect_code(0);
        assert!(plain.stdout.contains("# 0 of"), "{}", plain.dump());
        let mut cmd = std::process::Command::new(&bin);
        cmd.env("LD_PRELOAD", &lib)
            .env("COWCHECK_THREADOPS_FAULT", fault);
        let faulty = run_command(cmd, deadline);
        faulty.expect_code(1);
        assert!(faulty.stdout.contains("not ok"), "{}", faulty.dump());
    }
}

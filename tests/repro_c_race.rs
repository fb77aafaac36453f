//! The C reproducers of racing programs (docs/SEMANTICS.md part T): every scenario with a `race`
//! op has one, which compiles with the reproducer's flags (`-Wall -Wextra -Werror -pthread`),
//! runs the program in rounds (a fresh process tree each) and passes on this kernel for
//! `COWCHECK_REPRO_SECONDS=2`; and the reproducers of the fork race (T2) and of Dirty COW's pair
//! (T9) fail under tests/faults/libthreads.c's `fork-peek` and `dirty-cow` faults, which only
//! concurrency shows. A faulty run stops at its first failing round, so its time limit is only
//! a guard.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios/threads")
        .join(format!("{name}.trace"))
}

/// `cowcheck repro-c --build`: the binary built from `trace`, in `dir`.
fn build(dir: &Path, trace: &Path) -> PathBuf {
    let name = trace.file_stem().expect("a name").to_string_lossy();
    let c = dir.join(format!("{name}.c"));
    let bin = built_reproducer(&c, trace);
    let text = std::fs::read_to_string(&c).expect("the reproducer");
    assert!(text.contains("#define COWCHECK_RACES 1"), "{name}");
    assert!(text.contains("-pthread"), "{name}");
    bin
}

/// Runs a reproducer with `env`, and checks its KTAP and its round count line.
fn run(bin: &Path, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(bin);
    cmd.envs(env.iter().copied());
    let out = run_command(cmd, Duration::from_secs(120));
    assert!(
        out.stdout.starts_with("KTAP version 1\n1.."),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("# ") && l.contains(" round(s) ran in ")),
        "{}",
        out.dump()
    );
    out
}

fn racing_scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut v: Vec<PathBuf> = cowcheck::corpus::discover(&dir)
        .expect("scenarios")
        .into_iter()
        .map(|s| s.path)
        .filter(|p| {
            std::fs::read_to_string(p).is_ok_and(|t| t.lines().any(|l| l.contains(" race ")))
        })
        // A `race free` that starts is refused (its page's bytes are the kernel's choice, T15).
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("free-racer"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_racing_reproducer_passes_on_this_kernel() {
    if !on_path("cc") {
        return;
    }
    let dir = tmpdir("repro-race-all");
    let all = racing_scenarios();
    assert!(all.len() >= 8, "{all:?}");
    for trace in &all {
        let bin = build(&dir, trace);
        let out = run(&bin, &[("COWCHECK_REPRO_SECONDS", "2")]);
        out.expect_code(0);
        assert!(!out.stdout.contains("not ok"), "{}", out.dump());
        assert!(out.stdout.contains("every round passed"), "{}", out.dump());
    }
}

#[test]
fn a_round_count_bounds_the_run() {
    if !on_path("cc") {
        return;
    }
    let dir = tmpdir("repro-race-rounds");
    let bin = build(&dir, &scenario("fork-while-writing-private"));
    let out = run(
        &bin,
        &[
            ("COWCHECK_REPRO_SECONDS", "100"),
            ("COWCHECK_REPRO_ROUNDS", "3"),
        ],
    );
    out.expect_code(0);
    assert!(
        out.stdout.contains("# 3 round(s) ran in "),
        "{}",
        out.dump()
    );
}

/// Fails under `mode` of tests/faults/libthreads.c; returns the output.
fn fails_under(trace: &str, mode: &str) -> Option<Run> {
    let lib = shim("libthreads")?;
    let dir = tmpdir(&format!("repro-race-{mode}"));
    let bin = build(&dir, &scenario(trace));
    let lib = lib.display().to_string();
    let out = run(
        &bin,
        &[
            ("COWCHECK_REPRO_SECONDS", "60"),
            ("COWCHECK_THREADS_FAULT", mode),
            ("LD_PRELOAD", &lib),
        ],
    );
    out.expect_code(1);
    assert!(out.stdout.contains("\nnot ok "), "{}", out.dump());
    assert!(
        out.stdout.contains("the last round failed"),
        "{}",
        out.dump()
    );
    Some(out)
}

#[test]
fn the_fork_race_reproducer_fails_under_fork_peek() {
    // T2: the child's copy holds a counter past the fork's `after + 1`.
    let Some(out) = fails_under("fork-while-writing-private", "fork-peek") else {
        return;
    };
    assert!(
        out.stdout.contains("(the fork's counter: before "),
        "{}",
        out.dump()
    );
}

#[test]
fn the_dirty_cow_reproducer_fails_under_dirty_cow() {
    // T9: the forced write reaches the parent's read-only page: a later read or view of p0's
    // page fails (which one first depends on when the racing write lands: `not ok 13 - p0 read
    // m0 0..2` in most rounds, `not ok 19 - p0 read m0 0` in one CI run).
    let Some(out) = fails_under("dirty-cow-pair", "dirty-cow") else {
        return;
    };
    assert!(
        out.stdout.lines().any(|l| l.starts_with("not ok")
            && (l.contains(" - p0 read m0 ") || l.contains(" - state of p0 "))),
        "{}",
        out.dump()
    );
}

/// T15: a `race free` that starts is refused, never guessed: its page reads old or zero at the
/// kernel's choice, and the reproducer checks exact bytes.
#[test]
fn a_free_race_is_refused() {
    let dir = tmpdir("repro-race-free");
    let out = cowcheck(&[
        "repro-c".as_ref(),
        "-o".as_ref(),
        dir.join("free-racer.c").as_os_str(),
        scenario("free-racer").as_os_str(),
    ]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("race free (when it starts)"),
        "{}",
        out.dump()
    );
    assert!(!dir.join("free-racer.c").exists());
}

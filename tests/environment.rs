//! A failure of the environment is never reported as a kernel divergence: a call that fails
//! for lack of a resource where the model says it succeeds is an environment error (exit 2,
//! naming the limit), and a run refuses to start under limits it cannot live with.

mod common;

use common::*;

/// A fork that fails with EAGAIN (what a process limit does) inside a program: exit 2, the
/// limit named, no DIVERGENCE, nothing saved. Before, this was `DIVERGENCE (fork: expected done
/// got errno 11)` with exit 1.
#[test]
fn a_fork_refused_for_lack_of_processes_is_an_environment_error() {
    let Some(lib) = libfault() else { return };
    let dir = tmpdir("fork-eagain");
    let run = cowcheck(&[
        "run",
        "--time",
        "10",
        "--seed",
        "1",
        "--out",
        dir.to_str().unwrap(),
        "--under",
        &under_libfault(&lib, "fork-eagain"),
    ]);
    // The environment report is on stdout already; the error is the last line of stderr.
    run.expect_code(2);
    let err = run.stderr.lines().last().unwrap_or_default();
    assert!(err.contains("RLIMIT_NPROC"), "{err}");
    assert!(err.contains("not a kernel finding"), "{err}");
    assert!(!run.stdout.contains("DIVERGENCE"), "{}", run.dump());
    // No finding is saved; the program that met the limit is kept (as the environment's, not
    // a divergence) and the error names it.
    let saved: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        saved
            .iter()
            .all(|n| n.starts_with("cowcheck-environment-1-") && n.ends_with(".trace")),
        "only the environment's program is kept: {saved:?}"
    );
    assert!(
        saved.iter().any(|n| err.contains(n.as_str())),
        "the error names the kept program: {err}"
    );
}

/// Limits a run cannot live with are refused before it starts, with the limit and the value to
/// raise it to; the same limits raised enough let it run.
#[test]
fn a_run_refuses_to_start_under_tight_limits() {
    if !on_path("sh") {
        return;
    }
    let sh = |limits: &str| {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{limits}; exec \"$0\" run --cases 20 --seed 1",))
            .arg(BIN);
        run_command(cmd, DEFAULT_DEADLINE)
    };
    let run = sh("ulimit -n 20");
    let err = run.expect_usage_error();
    assert!(
        err.contains("RLIMIT_NOFILE") && err.contains("ulimit -n 128"),
        "{err}"
    );
    let run = sh("ulimit -v 20000");
    let err = run.expect_usage_error();
    assert!(err.contains("RLIMIT_AS"), "{err}");
    // A limit that suffices: the run goes on.
    sh("ulimit -n 256").expect_code(0);
}

/// A divergence that shows once and never again (here a libc that misbehaves on the first
/// private mapping of the run only) is still a finding, reported as nondeterministic with its
/// count, never dropped and never mixed up with an event of the environment.
#[test]
fn a_divergence_that_does_not_recur_is_reported_as_nondeterministic() {
    let Some(lib) = libfault() else { return };
    let dir = tmpdir("once");
    let state = dir.join("fault-state");
    let under = format!(
        "env COWCHECK_FAULT=private-shared-once COWCHECK_FAULT_FILE={} LD_PRELOAD={}",
        state.display(),
        lib.display()
    );
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    let run = cowcheck(&[
        "run",
        "--cases",
        "50",
        "--seed",
        // A seed whose first program observes its first private map (with seed 1 that
        // program now dies before it looks, since the allocator ops joined the generator).
        "2",
        "--jobs",
        "1",
        "--json",
        "--out",
        out.to_str().unwrap(),
        "--under",
        &under,
    ]);
    run.expect_code(1);
    let d = &run.json()["divergence"];
    assert_eq!(d["seen"], 1, "{}", run.dump());
    assert_eq!(d["runs"], 5, "{}", run.dump());
    assert_eq!(d["nondeterministic"], true, "{}", run.dump());
    let saved = d["saved_to"].as_str().expect("saved");
    let text = std::fs::read_to_string(saved).unwrap();
    assert!(
        text.contains("seen in 1 of 5 runs of the original program (nondeterministic)"),
        "{text}"
    );
}

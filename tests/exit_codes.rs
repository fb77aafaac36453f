//! Every exit status of the CLI: 0 (no divergence), 1 (divergence), 2 (usage, input or
//! environment error, with one clear error line and no panic).

mod common;

use std::time::Duration;

use common::*;

const AGREEING: &str = "cowcheck-trace 1\n\
p0 map m0 shared 1\n\
p0 write m0 0[0..4] fill 0x01\n\
p0 fork p1\n\
p1 write m0 0[0..4] fill 0x02\n\
p0 read m0 0[0..4]\n\
p1 exit\n\
p0 unmap m0 0\n\
p0 read m0 0\n";

#[test]
fn exit_0_when_kernel_and_model_agree() {
    let dir = tmpdir("exit0");
    let trace = write_file(&dir, "agree.trace", AGREEING);
    let run = cowcheck(&["replay", trace.to_str().unwrap()]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("kernel and model agree on all 8 ops"),
        "{}",
        run.dump()
    );

    let run = cowcheck(&["model", trace.to_str().unwrap()]);
    run.expect_code(0);

    let run = cowcheck(&[
        "run",
        "--cases",
        "20",
        "--seed",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    run.expect_code(0);
    assert!(!run.stdout.contains("DIVERGENCE"), "{}", run.dump());
    // The seed is printed, in the header line and in the summary.
    assert!(
        run.stderr.contains("seed 1"),
        "the run should print its seed\n{}",
        run.dump()
    );
    let programs = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("programs "))
        .unwrap_or_else(|| panic!("no programs line in the summary\n{}", run.dump()));
    assert!(
        programs.split_whitespace().nth(1) == Some("20"),
        "--cases 20 runs 20 programs: {programs:?}"
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().count() == 1,
        "a run without a divergence saves no trace"
    );
}

#[test]
fn exit_1_on_injected_divergence() {
    let dir = tmpdir("exit1-inject");
    let out = dir.to_str().unwrap();
    let run = cowcheck(&[
        "run",
        "--cases",
        "20",
        "--seed",
        "1",
        "--out",
        out,
        "--inject",
        "private-as-shared",
    ]);
    run.expect_code(1);
    assert!(run.stdout.contains("DIVERGENCE"), "{}", run.dump());
    assert!(
        run.stdout.contains("replay with: cowcheck replay"),
        "{}",
        run.dump()
    );

    let trace = write_file(&dir, "private.trace", PRIVATE);
    let run = cowcheck(&[
        "replay",
        trace.to_str().unwrap(),
        "--inject",
        "private-as-shared",
    ]);
    run.expect_code(1);
    assert!(run.stdout.contains("DIVERGENCE"), "{}", run.dump());
    let run = cowcheck(&[
        "replay",
        trace.to_str().unwrap(),
        "--inject",
        "drop-child-write",
        "--json",
    ]);
    run.expect_code(1);
    assert!(!run.json()["divergence"].is_null(), "{}", run.dump());
}

/// A worker that hangs inside an op (as an emulator can) is killed after the op deadline and
/// named at the op it hung in: the ops of its batch that finished keep their own outcomes
/// (read back from its slot), the rest of its ops are skipped, and the other processes go on
/// (the coordinator passes the turn the hung worker owed).
#[test]
fn a_hung_worker_is_named_at_the_op_it_hung_in() {
    let dir = tmpdir("hang");
    let trace = write_file(
        &dir,
        "hang.trace",
        "cowcheck-trace 1\n\
         p0 map m0 private 1\n\
         p0 write m0 0 fill 0x11\n\
         p0 fork p1\n\
         p1 write m0 0 fill 0x22\n\
         p1 pipe-read\n\
         p1 read m0 0\n\
         p0 read m0 0\n",
    );
    let extra: Vec<String> = ["--inject", "hang-pipe-read", "--op-deadline", "1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (code, report, run) = replay_json(&trace, &extra);
    assert_eq!(code, 1, "{}", run.dump());
    assert_eq!(
        report["divergence"]["signature"],
        "pipe-read: expected errno 11 got hang",
        "{}",
        run.dump()
    );
    assert_eq!(report["divergence"]["op_index"], 4, "{}", run.dump());
    let ops = kernel_outcomes(&report);
    assert_eq!(ops[3], "ok", "the write before the hang: {ops:?}");
    assert!(ops[4].contains("hung"), "{ops:?}");
    assert!(ops[5].starts_with("skipped"), "{ops:?}");
    assert!(ops[6].starts_with("read 1 page"), "p0 goes on: {ops:?}");
}

#[test]
fn exit_1_on_libfault_divergence() {
    let Some(lib) = libfault() else { return };
    let dir = tmpdir("exit1-libfault");
    let under = under_libfault(&lib, "private-shared");
    let run = cowcheck(&[
        "run",
        "--cases",
        "20",
        "--seed",
        "1",
        "--out",
        dir.to_str().unwrap(),
        "--under",
        &under,
    ]);
    run.expect_code(1);
    assert!(run.stdout.contains("DIVERGENCE"), "{}", run.dump());

    let trace = write_file(&dir, "private.trace", PRIVATE);
    let run = cowcheck(&["replay", trace.to_str().unwrap(), "--under", &under]);
    run.expect_code(1);

    // The shim without a fault selected changes nothing.
    let clean = under_libfault(&lib, "none");
    let run = cowcheck(&[
        "run",
        "--cases",
        "20",
        "--seed",
        "1",
        "--out",
        dir.to_str().unwrap(),
        "--under",
        &clean,
    ]);
    run.expect_code(0);
}

#[test]
fn exit_2_on_usage_errors() {
    let dir = tmpdir("exit2");
    let d = dir.to_str().unwrap().to_string();
    let file = write_file(&dir, "not-a-dir", "x").display().to_string();
    let trace = write_file(&dir, "ok.trace", AGREEING).display().to_string();
    let missing = dir.join("missing.trace").display().to_string();
    // (arguments, a fragment the error line must contain)
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "--no-such-flag"], "--no-such-flag"),
        (vec!["replay", &trace, "--frobnicate"], "--frobnicate"),
        (vec!["frobnicate"], "frobnicate"),
        (vec!["replay"], ""),
        (vec!["run", "--cases", "0", "--out", &d], "--cases"),
        (vec!["run", "--cases", "abc", "--out", &d], "abc"),
        (vec!["run", "--cases", "-3", "--out", &d], "-3"),
        (vec!["run", "--max-ops", "0", "--out", &d], "--max-ops"),
        (vec!["run", "--max-ops", "100000", "--out", &d], "--max-ops"),
        (vec!["run", "--time", "-1", "--out", &d], "-1"),
        (vec!["run", "--time=-1", "--out", &d], "--time"),
        (vec!["run", "--time", "0", "--out", &d], "--time"),
        (vec!["run", "--time", "nan", "--out", &d], "--time"),
        (vec!["run", "--time", "inf", "--out", &d], "--time"),
        (vec!["run", "--time", "soon", "--out", &d], "soon"),
        (vec!["replay", &missing], "missing.trace"),
        (vec!["model", &missing], "missing.trace"),
        (vec!["replay", &d], &d),
        (vec!["model", &trace, "--page-size", "1000"], "--page-size"),
        (
            vec![
                "run",
                "--cases",
                "1",
                "--out",
                &d,
                "--under",
                "/nonexistent/cowcheck-runner",
            ],
            "/nonexistent/cowcheck-runner",
        ),
        (
            vec!["replay", &trace, "--under", "no-such-command-for-cowcheck"],
            "no-such-command-for-cowcheck",
        ),
        (
            vec!["run", "--cases", "1", "--out", &d, "--under", "false"],
            "false",
        ),
        (
            vec!["run", "--cases", "1", "--out", &d, "--under", ""],
            "--under",
        ),
        (vec!["run", "--cases", "1", "--out", &file], "--out"),
        (
            vec!["run", "--cases", "1", "--out", "/nonexistent/cowcheck-out"],
            "--out",
        ),
        (
            vec!["run", "--cases", "1", "--out", &d, "--inject", "nonsense"],
            "nonsense",
        ),
    ];
    for (args, fragment) in cases {
        let run = cowcheck_with(&args, Duration::from_secs(60));
        let error = run.expect_usage_error();
        assert!(
            error.contains(fragment),
            "`cowcheck {}`: the error should mention {fragment:?}: {error:?}",
            args.join(" ")
        );
    }
    // Without a subcommand: the usage, on stderr, with status 2.
    let run = cowcheck::<&str>(&[]);
    run.expect_code(2);
    assert!(
        run.stdout.is_empty() && run.stderr.contains("Usage:"),
        "{}",
        run.dump()
    );
    // Only the files made above; no stray divergence traces.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
}

#[test]
fn help_and_version_exit_0() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["run", "--help"],
        &["replay", "--help"],
    ] {
        let run = cowcheck(args);
        run.expect_code(0);
        assert!(!run.stdout.trim().is_empty(), "{}", run.dump());
    }
}

/// An `--under` command that never speaks the protocol but keeps writing (here `yes`) must end
/// in exit status 2, not a hang.
#[test]
fn under_command_that_floods_garbage_exits_2() {
    let run = cowcheck_with(
        &["run", "--cases", "1", "--under", "yes"],
        Duration::from_secs(30),
    );
    run.expect_usage_error();
}

/// `replay` holds the trace's inline expectations against both sides, as `corpus` does: a
/// trace whose claim fails on kernel and model alike agrees as a comparison, and still exits 1
/// naming the line; the same trace with a true claim exits 0.
#[test]
fn replay_checks_inline_expectations() {
    let dir = tmpdir("replay-expect");
    let wrong = write_file(
        &dir,
        "wrong.trace",
        "cowcheck-trace 1\n\
         # the claim is wrong on both sides\n\
         p0 map m0 shared 1\n\
         p0 write m0 0 fill 0x01\n\
         p0 read m0 0 => 0x02\n",
    );
    let run = cowcheck(&["replay", wrong.to_str().unwrap()]);
    run.expect_code(1);
    assert!(
        run.stdout.contains("kernel and model agree"),
        "{}",
        run.dump()
    );
    for side in ["model", "kernel"] {
        assert!(
            run.stdout
                .contains(&format!("line 5 (op 3, p0 read m0 0 => 0x02): {side}: ")),
            "{}",
            run.dump()
        );
    }
    let run = cowcheck(&["replay", wrong.to_str().unwrap(), "--json"]);
    run.expect_code(1);
    assert_eq!(
        run.json()["expectations_missed"].as_array().map(Vec::len),
        Some(2),
        "{}",
        run.dump()
    );
    let right = write_file(
        &dir,
        "right.trace",
        "cowcheck-trace 1\n\
         p0 map m0 shared 1\n\
         p0 write m0 0 fill 0x01\n\
         p0 read m0 0 => 0x01\n",
    );
    let run = cowcheck(&["replay", right.to_str().unwrap()]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("all 1 inline expectations met"),
        "{}",
        run.dump()
    );
}

/// `model` counts every mapped page of a live process, whatever its protection.
#[test]
fn model_counts_every_mapped_page() {
    let dir = tmpdir("model-pages");
    let trace = write_file(
        &dir,
        "none.trace",
        "cowcheck-trace 1\n\
         p0 map m0 private 4\n\
         p0 protect m0 1..3 none\n\
         p0 fork p1\n",
    );
    let run = cowcheck(&["model", trace.to_str().unwrap()]);
    run.expect_code(0);
    for p in ["p0", "p1"] {
        assert!(
            run.stdout
                .contains(&format!("{p} lives, maps 4 page(s) in 3 region(s)")),
            "{}",
            run.dump()
        );
    }
}

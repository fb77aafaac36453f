//! The `--json` summary of `cowcheck run`: it parses, has the documented fields with sensible
//! values, and the same seed gives the same campaign.

mod common;

use common::*;

fn run_json(seed: &str, cases: &str, dir: &std::path::Path) -> serde_json::Value {
    let run = cowcheck(&[
        "run",
        "--cases",
        cases,
        "--seed",
        seed,
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    run.expect_code(0);
    run.json()
}

fn count(report: &serde_json::Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} should be a non-negative integer: {report}"))
}

#[test]
fn run_json_has_the_documented_fields() {
    let dir = tmpdir("json");
    let report = run_json("1", "20", &dir);
    assert_eq!(count(&report, "programs"), 20, "{report}");
    let ops = count(&report, "ops");
    let forks = count(&report, "forks");
    let pages = count(&report, "pages_compared");
    assert!(ops >= 20, "at least one op per program: {report}");
    assert!(forks >= 1 && forks < ops, "{report}");
    assert!(pages >= 1, "{report}");
    assert_eq!(count(&report, "seed"), 1, "{report}");
    assert_eq!(count(&report, "page_size"), host_page_size(), "{report}");
    let release = report["kernel"]["release"]
        .as_str()
        .unwrap_or_else(|| panic!("kernel.release: {report}"));
    let ours = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    if !ours.is_empty() {
        assert_eq!(release, ours.trim(), "kernel.release is uname -r");
    }
    assert!(report["divergence"].is_null(), "{report}");
}

/// Determinism: the same seed and case count give the same campaign, down to the counts and,
/// if the campaign finds a divergence, the same shrunk trace; another seed gives another one.
#[test]
fn same_seed_same_campaign() {
    let dir = tmpdir("json-seed");
    let campaign = |seed: &str| {
        let run = cowcheck(&[
            "run",
            "--cases",
            "30",
            "--seed",
            seed,
            "--json",
            "--out",
            dir.to_str().unwrap(),
        ]);
        let code = run.code();
        run.no_panic();
        assert!(code == 0 || code == 1, "{}", run.dump());
        let report = run.json();
        assert_eq!(code == 1, report["divergence"].is_object(), "{report}");
        (code, report)
    };
    let (code_a, a) = campaign("42");
    let (code_b, b) = campaign("42");
    let (_, c) = campaign("43");
    assert_eq!(
        code_a, code_b,
        "two runs of seed 42 end differently:\n{a}\n{b}"
    );
    for field in [
        "programs",
        "ops",
        "forks",
        "snapshots",
        "pages_compared",
        "programs_with",
    ] {
        // An unmap thread's page is mapped or a hole at each view as the interleaving went
        // (docs/SEMANTICS.md T12), so the pages the views hold are the run's.
        if field == "pages_compared" && a["races"]["unmap"] != 0 {
            continue;
        }
        assert_eq!(
            a[field], b[field],
            "{field} differs between two runs of seed 42:\n{a}\n{b}"
        );
    }
    assert_eq!(
        a["divergence"]["trace"], b["divergence"]["trace"],
        "seed 42 shrank to different traces:\n{a}\n{b}"
    );
    assert!(
        ["ops", "forks", "pages_compared"]
            .iter()
            .any(|f| a[*f] != c[*f]),
        "seeds 42 and 43 should give different campaigns:\n{a}\n{c}"
    );
}

#[test]
fn max_ops_bounds_the_programs() {
    let dir = tmpdir("json-max-ops");
    let run = cowcheck(&[
        "run",
        "--cases",
        "25",
        "--seed",
        "3",
        "--max-ops",
        "3",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let code = run.code();
    run.no_panic();
    assert!(code == 0 || code == 1, "{}", run.dump());
    let report = run.json();
    let programs = count(&report, "programs");
    assert!(programs == 25 || (code == 1 && programs <= 25), "{report}");
    if let Some(trace) = report["divergence"]["trace"].as_str() {
        assert!(
            op_lines(trace).len() <= 3,
            "a shrunk program is no longer than the original: {trace}"
        );
    }
    assert!(
        count(&report, "ops") <= programs * 3,
        "--max-ops 3 over 25 programs: {report}"
    );
}

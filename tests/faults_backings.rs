//! Proof that the huge-page rules can fail (docs/SEMANTICS.md L1, L3): each mode of the
//! misbehaving libc shim tests/faults/libbackings.c is caught, by the scenario written for its
//! rule and by a seeded campaign that shrinks it to a few ops; without a fault both agree.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// tests/faults/libbackings.c built once per test binary; `None` without a C compiler.
fn libbackings() -> Option<PathBuf> {
    shim("libbackings")
}

fn under(lib: &Path, mode: &str) -> Vec<String> {
    vec![
        "--under".into(),
        format!(
            "env COWCHECK_BACKINGS_FAULT={mode} LD_PRELOAD={}",
            lib.display()
        ),
    ]
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("scenarios/huge/{name}.trace"))
}

/// Whether the executor's probe `probe` found the feature (a kernel before 6.7 neither aligns
/// nor collapses): every run prints the probes in its environment report.
fn kernel_has(probe: &str) -> bool {
    let run = cowcheck(&["run", "--cases", "1", "--seed", "1"]);
    run.no_panic();
    format!("{}{}", run.stdout, run.stderr).lines().any(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some("feature")
            && words.next() == Some(probe)
            && words.next() == Some("yes")
    })
}

/// The scenario of the rule diverges under the fault (exit 1) and agrees without it (exit 0).
fn scenario_catches(mode: &str, name: &str) {
    let Some(lib) = libbackings() else { return };
    let path = scenario(name);
    let (code, report, run) = replay_json(&path, &under(&lib, mode));
    assert_eq!(code, 1, "{mode}: {name} must diverge\n{}", run.dump());
    assert!(report["divergence"].is_object(), "{mode}: {report}");
    let (code, _, run) = replay_json(&path, &under(&lib, "none"));
    assert_eq!(
        code,
        0,
        "{mode}: {name} must agree without the fault\n{}",
        run.dump()
    );
}

/// A seeded campaign finds the fault and shrinks it to at most 8 ops.
fn campaign_catches(mode: &str) {
    let Some(lib) = libbackings() else { return };
    let dir = tmpdir(&format!("backings-{mode}"));
    let mut args: Vec<String> = ["run", "--seed", "1", "--cases", "3000", "--json", "--out"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(dir.display().to_string());
    args.extend(under(&lib, mode));
    let run = cowcheck(&args);
    run.expect_code(1);
    let report = run.json();
    let trace = report["divergence"]["trace"]
        .as_str()
        .unwrap_or_else(|| panic!("{mode}: no trace: {report}"));
    let ops = op_lines(trace);
    assert!(
        !ops.is_empty() && ops.len() <= 8,
        "{mode}: shrunk to {} ops:\n{trace}",
        ops.len()
    );
}

#[test]
fn thp_misalign_is_caught() {
    if !kernel_has("THP_ALIGN") {
        eprintln!("note: the kernel does not align PMD-sized mappings (THP_ALIGN); skipped");
        return;
    }
    scenario_catches("thp-misalign", "pmd-multiple-is-pmd-aligned");
    campaign_catches("thp-misalign");
}

#[test]
fn collapse_that_drops_data_is_caught() {
    if !kernel_has("MADV_COLLAPSE") {
        eprintln!("note: no MADV_COLLAPSE; skipped");
        return;
    }
    scenario_catches("collapse-drops", "collapse-keeps-contents");
    campaign_catches("collapse-drops");
}

#[test]
fn collapse_of_a_nohugepage_range_is_caught() {
    if !kernel_has("MADV_COLLAPSE") {
        eprintln!("note: no MADV_COLLAPSE; skipped");
        return;
    }
    scenario_catches("collapse-nohuge", "collapse-nohugepage-einval");
}

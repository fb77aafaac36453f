//! Proof that the physical channel's predictions of ranges where a transparent huge page may be
//! (docs/SEMANTICS.md I20 to I23) can fail: tests/faults/libthp.c makes a fork child copy, at
//! once, every page it shares with its parent in each whole PMD the program advised
//! MADV_HUGEPAGE, and nothing else; values never change. `cowcheck run --seed 1 --cases 20000`
//! finds a divergence that the physical channel caught, shrinks it to at most 4 ops, and the
//! saved trace replays to a divergence under the fault, agrees without it, and agrees under the
//! fault with `--no-physical`. Before I20, every advised page was left open and the same run
//! was clean (measured: 20000 programs, 2 minutes).
//!
//! Skipped (with a note) where the channel or its PFNs do not run here (not root).

mod common;

use common::*;

const MAX_SHRUNK_OPS: usize = 4;

#[test]
fn libthp_fork_copy_huge() {
    let Some((div, _)) = thp_fault_caught("fork-copy-huge", MAX_SHRUNK_OPS, "hugepage") else {
        return;
    };
    assert_eq!(
        div["signature"].as_str(),
        Some("physical: pfn shared"),
        "{div}"
    );
}

/// The `fork-copy-collapsed` mode: a fork child copies, at once, the pages it shares in each
/// whole PMD a successful MADV_COLLAPSE covered. Before I25 every page of a collapsed PMD was
/// left open and the scenario `huge/collapse-in-child-copies-its-pages` agreed under this
/// fault; measured now: caught at program 98 of seed 1 (2 s), shrunk to 5 ops (`map 512`, a
/// `malloc` that keeps the placement, `read`, `advise collapse`, `fork`).
#[test]
fn libthp_fork_copy_collapsed() {
    let Some((_, under)) = thp_fault_caught("fork-copy-collapsed", MAX_SHRUNK_OPS + 2, "collapse")
    else {
        return;
    };
    let scenario = format!(
        "{}/scenarios/huge/collapse-in-child-copies-its-pages.trace",
        env!("CARGO_MANIFEST_DIR")
    );
    cowcheck(&["replay", &scenario, "--under", &under]).expect_code(1);
    cowcheck(&["replay", &scenario]).expect_code(0);
}

/// Runs `cowcheck run` under libthp's `mode` (tests/common `caught_and_shrunk`): the finding is
/// the pfn channel's, its shrunk trace (at most `max_ops` long) names `op`, and it agrees under
/// the fault with `--no-physical`. The divergence and the `--under` command; `None` (after a
/// note) where the shim or PFNs are not there.
fn thp_fault_caught(mode: &str, max_ops: usize, op: &str) -> Option<(serde_json::Value, String)> {
    let lib = shim("libthp")?;
    if !pfns_run("thp-probe") {
        return None;
    }
    let under = format!("env COWCHECK_THP_FAULT={mode} LD_PRELOAD={}", lib.display());
    let Caught {
        divergence: div,
        saved,
        trace,
        ..
    } = caught_and_shrunk(mode, &under, max_ops);
    assert_eq!(div["channel"].as_str(), Some("pfn"), "{div}");
    assert!(trace.contains(op), "{trace}");
    let saved = saved.to_str().expect("utf-8 path");
    cowcheck(&["replay", saved, "--no-physical", "--under", &under]).expect_code(0);
    Some((div, under))
}

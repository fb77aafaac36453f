//! Proof that the physical channel's predictions of hugetlb pages (docs/SEMANTICS.md I15, I16)
//! can fail: tests/faults/libhugephys.c makes a fork child copy, at once, every present huge
//! page of its private writable hugetlb mappings; values never change. `cowcheck run --hugetlb
//! --seed 1 --cases 20000` finds a divergence that the physical channel's PFNs caught, shrinks
//! it to at most 4 ops, and the saved trace replays to a divergence under the fault, agrees
//! without it, and agrees under the fault with `--no-physical`. Before I15, every hugetlb page
//! was left open (L12) and the fault went unseen (measured: caught in 1 s, 3 ops).
//!
//! The same file holds the fault of the untouched pieces of a transparent huge page (I24),
//! `libthp_fork_copy_zeroes`.
//!
//! Skipped (with a note) where the executor cannot make hugetlb maps (not root and no pool) or
//! the channel's PFNs are not read (not root). Every run is a `cowcheck` whose executor takes
//! its share of the pool and gives it back (L7), so nothing stays reserved.

mod common;

use common::*;

const MAX_SHRUNK_OPS: usize = 4;

/// Whether the executor can make hugetlb maps and the channel reads PFNs here.
fn runs_here() -> bool {
    let json = one_program_summary("hugephys-probe");
    let hugetlb = json["environment"]["probes"].as_array().is_some_and(|ps| {
        ps.iter()
            .any(|p| p["name"] == "HUGETLB" && p["available"].as_bool() == Some(true))
    });
    if !channels_ran(&json, &["pagemap", "pfn"]) {
        eprintln!("note: the physical channel's PFNs are not read here (not root); skipping");
        return false;
    }
    if !hugetlb {
        eprintln!("note: the executor cannot make hugetlb maps here (no pool); skipping");
        return false;
    }
    true
}

#[test]
fn libhugephys_fork_copy_hugetlb() {
    let Some(lib) = shim("libhugephys") else {
        return;
    };
    if !runs_here() {
        return;
    }
    let mode = "fork-copy-hugetlb";
    let under = format!(
        "env COWCHECK_HUGEPHYS_FAULT={mode} LD_PRELOAD={}",
        lib.display()
    );
    let Caught {
        divergence: div,
        saved,
        trace,
        ..
    } = caught_and_shrunk_with(mode, &under, MAX_SHRUNK_OPS, &["--hugetlb"]);
    assert_eq!(div["channel"].as_str(), Some("pfn"), "{div}");
    assert_eq!(
        div["signature"].as_str(),
        Some("physical: pfn shared"),
        "{div}"
    );
    assert!(trace.contains("hugetlb"), "{trace}");
    assert!(trace.contains("fork"), "{trace}");
    let saved = saved.to_str().expect("utf-8 path");
    cowcheck(&["replay", saved, "--no-physical", "--under", &under]).expect_code(0);
}

/// The untouched pieces of a transparent huge page (I24): tests/faults/libthp.c's
/// `fork-copy-zeroes` mode makes a fork child copy, at once, only the shared pages whose bytes
/// are all zero in each advised PMD, the pieces I21 left open; `cowcheck run --seed 1 --cases
/// 20000` catches it by the PFNs and shrinks it, and the trace agrees without the fault and with
/// `--no-physical`.
#[test]
fn libthp_fork_copy_zeroes() {
    let Some(lib) = shim("libthp") else { return };
    if !pfns_run("hugephys-thp-probe") {
        return;
    }
    let mode = "fork-copy-zeroes";
    let under = format!("env COWCHECK_THP_FAULT={mode} LD_PRELOAD={}", lib.display());
    let Caught {
        divergence: div,
        saved,
        trace,
        ..
    } = caught_and_shrunk(mode, &under, 5);
    assert_eq!(div["channel"].as_str(), Some("pfn"), "{div}");
    assert_eq!(
        div["signature"].as_str(),
        Some("physical: pfn shared"),
        "{div}"
    );
    assert!(trace.contains("hugepage"), "{trace}");
    let saved = saved.to_str().expect("utf-8 path");
    cowcheck(&["replay", saved, "--no-physical", "--under", &under]).expect_code(0);
}

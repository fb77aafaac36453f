//! Proof that the hugetlb rules can fail (docs/SEMANTICS.md L6, L8): the mode of the
//! misbehaving libc shim tests/faults/libhugetlb.c (MAP_HUGETLB dropped, so base pages are
//! given) is caught by the scenario of a one-page hugetlb map and by a seeded campaign that
//! shrinks it to a few ops; without the fault both agree. Skipped where the executor cannot
//! make hugetlb maps (not root and no pool).

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn under(lib: &Path, mode: &str) -> String {
    format!(
        "env COWCHECK_HUGETLB_FAULT={mode} LD_PRELOAD={}",
        lib.display()
    )
}

/// Whether the executor probed HUGETLB (its environment report says).
fn hugetlb_here() -> bool {
    let run = cowcheck(&["run", "--cases", "1", "--seed", "1"]);
    run.no_panic();
    format!("{}{}", run.stdout, run.stderr).lines().any(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some("feature")
            && words.next() == Some("HUGETLB")
            && words.next() == Some("yes")
    })
}

#[test]
fn dropped_map_hugetlb_is_caught() {
    let Some(lib) = shim("libhugetlb") else {
        return;
    };
    if !hugetlb_here() {
        eprintln!("note: the executor cannot make hugetlb maps here (not root, no pool); skipped");
        return;
    }
    let under = under(&lib, "drop-hugetlb");
    let scenario: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios/huge/hugetlb-one-page-maps-a-huge-page.trace");
    let (code, report, run) = replay_json(&scenario, &["--under".to_string(), under.clone()]);
    assert_eq!(code, 1, "the scenario must diverge\n{}", run.dump());
    assert!(report["divergence"].is_object(), "{report}");
    let caught = caught_and_shrunk_with("drop-hugetlb", &under, 6, &["--hugetlb"]);
    assert!(
        caught.trace.contains("hugetlb"),
        "the shrunk trace keeps a hugetlb map:\n{}",
        caught.trace
    );
}

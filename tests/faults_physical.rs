//! Proof that the physical channel (docs/SEMANTICS.md part 11) can fail, and that only it can:
//! each mode of the interposed libc tests/faults/libphys.c changes which page backs what and
//! never a value. For each, `cowcheck run --seed 1 --time 60` finds a divergence that the
//! physical channel caught, shrinks it to at most 4 ops, and the saved trace replays to a
//! divergence under the fault, agrees without it, and agrees under the fault with
//! `--no-physical` (values alone cannot see it).
//!
//! Skipped (with a note) where the channel does not run here (no readable pagemap).

mod common;

use std::path::{Path, PathBuf};

use common::*;

const MAX_SHRUNK_OPS: usize = 4;

/// tests/faults/libphys.c, built once into the test's temporary directory.
fn libphys() -> Option<PathBuf> {
    shim("libphys")
}

/// Whether the channel's pagemap part runs on this machine (the summary of a one-program run).
fn channel_runs() -> bool {
    let dir = tmpdir("phys-probe");
    let run = cowcheck(&[
        "run",
        "--seed",
        "1",
        "--cases",
        "1",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    run.expect_code(0);
    let ran = run.json()["channels"]["pagemap"]["ran"].as_bool() == Some(true);
    if !ran {
        eprintln!("note: the physical channel does not run here; skipping");
    }
    ran
}

fn assert_caught_physically(mode: &str) {
    let Some(lib) = libphys() else { return };
    if !channel_runs() {
        return;
    }
    let under = format!(
        "env COWCHECK_PHYS_FAULT={mode} LD_PRELOAD={}",
        lib.display()
    );
    let fault = ["--under".to_string(), under];
    let dir = tmpdir(mode);
    let mut args: Vec<String> = ["run", "--seed", "1", "--time", "60", "--json", "--out"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(dir.display().to_string());
    args.extend(fault.iter().cloned());
    let run = cowcheck(&args);
    run.expect_code(1);
    let report = run.json();
    let div = &report["divergence"];
    assert!(div.is_object(), "{mode}: no divergence: {report}");
    let channel = div["channel"].as_str().unwrap_or("");
    assert!(
        ["pagemap", "pagemap-scan", "pfn", "mincore"].contains(&channel),
        "{mode}: caught by {channel:?}, not the physical channel: {div}"
    );
    assert!(
        div["signature"]
            .as_str()
            .is_some_and(|s| s.starts_with("physical: ")),
        "{mode}: {div}"
    );
    let trace = div["trace"].as_str().expect("trace");
    let ops = op_lines(trace);
    assert!(
        !ops.is_empty() && ops.len() <= MAX_SHRUNK_OPS,
        "{mode}: the shrunk trace has {} ops, want 1 to {MAX_SHRUNK_OPS}:\n{trace}",
        ops.len()
    );
    let saved = Path::new(div["saved_to"].as_str().expect("saved"));
    let saved_s = saved.to_str().unwrap().to_string();
    // Under the fault it diverges again; without it, it agrees; and values alone (the channel
    // off) cannot tell the fault from the kernel.
    let (code, _, rerun) = replay_json(saved, &fault);
    assert_eq!(
        code,
        1,
        "{mode}: must replay to a divergence\n{}",
        rerun.dump()
    );
    cowcheck(&["replay", &saved_s]).expect_code(0);
    cowcheck(
        &[
            &["replay".to_string(), saved_s, "--no-physical".into()][..],
            &fault,
        ]
        .concat(),
    )
    .expect_code(0);
}

#[test]
fn libphys_fork_copy() {
    assert_caught_physically("fork-copy");
}

#[test]
fn libphys_madvise_zero() {
    assert_caught_physically("madvise-zero");
}

#[test]
fn libphys_mmap_prefault() {
    assert_caught_physically("mmap-prefault");
}

#[test]
fn libphys_mincore_all() {
    assert_caught_physically("mincore-all");
}

#[test]
fn libphys_mincore_pte() {
    assert_caught_physically("mincore-pte");
}

//! Proof that the physical channel (docs/SEMANTICS.md part 11) can fail, and that only it can:
//! each mode of the interposed libc tests/faults/libphys.c changes which page backs what and
//! never a value. For each, `cowcheck run --seed 1 --cases 20000` finds a divergence that the
//! physical channel caught, shrinks it to at most 4 ops, and the saved trace replays to a
//! divergence under the fault, agrees without it, and agrees under the fault with
//! `--no-physical` (values alone cannot see it).
//!
//! Skipped (with a note) where the channel does not run here (no readable pagemap).

mod common;

use std::path::PathBuf;

use common::*;

const MAX_SHRUNK_OPS: usize = 4;

/// tests/faults/libphys.c, built once into the test's temporary directory.
fn libphys() -> Option<PathBuf> {
    shim("libphys")
}

/// Whether the channel's pagemap part runs on this machine (the summary of a one-program run).
fn channel_runs() -> bool {
    let ran = channels_ran(&one_program_summary("phys-probe"), &["pagemap"]);
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
    let Caught {
        divergence: div,
        saved,
        ..
    } = caught_and_shrunk(mode, &under, MAX_SHRUNK_OPS);
    let channel = div["channel"].as_str().unwrap_or("");
    assert!(
        ["pagemap", "pagemap-scan", "pfn", "mincore", "smaps"].contains(&channel),
        "{mode}: caught by {channel:?}, not the physical channel: {div}"
    );
    assert!(
        div["signature"]
            .as_str()
            .is_some_and(|s| s.starts_with("physical: ")),
        "{mode}: {div}"
    );
    // Values alone (the channel off) cannot tell the fault from the kernel.
    let saved = saved.to_str().expect("utf-8 path");
    cowcheck(&["replay", saved, "--no-physical", "--under", &under]).expect_code(0);
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

/// A shared object kept alive after its last mapper in the program unmapped it (a hidden holder
/// maps its pages): the survivor's pages are not exclusive (I8) and its Pss is not its Rss
/// (I12, I14).
#[test]
fn libphys_munmap_alive() {
    assert_caught_physically("munmap-alive");
}

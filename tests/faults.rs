//! Proof that cowcheck can fail: for each deliberate fault (the executor's hidden `--inject`
//! faults, and every mode of the misbehaving libc shim tests/faults/libfault.c), a seeded
//! campaign finds a divergence, shrinks it to at most 6 ops, saves it, and the saved trace
//! replays to the same verdict under the same fault (and agrees without it). The core faults
//! (map, write, fork, unmap) must shrink to at most 6 ops; the faults of the wider operation
//! set (mprotect, madvise, mremap) to at most 8.

mod common;

use std::path::Path;

use common::*;

/// Most ops a shrunk divergence may keep: core faults, and faults of the wider op set.
const MAX_SHRUNK_OPS: usize = 6;
const MAX_SHRUNK_OPS_WIDE: usize = 8;

/// Runs `cowcheck run --seed 1 --cases 20000 --json --out DIR FAULT_ARGS` and checks everything
/// about the divergence it must find (a case count, not a time: see `common::caught_and_shrunk`).
fn assert_caught(name: &str, fault_args: &[String]) {
    assert_caught_within(name, fault_args, MAX_SHRUNK_OPS)
}

fn assert_caught_within(name: &str, fault_args: &[String], max_ops: usize) {
    let dir = tmpdir(name);
    let mut args: Vec<String> = ["run", "--seed", "1", "--cases", "20000", "--json", "--out"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(dir.display().to_string());
    args.extend(fault_args.iter().cloned());
    let run = cowcheck(&args);
    run.expect_code(1);
    let report = run.json();
    assert_eq!(report["seed"], 1, "{name}: {report}");
    let programs = report["programs"].as_u64().expect("programs");
    assert!(programs >= 1, "{name}: {report}");
    let div = &report["divergence"];
    assert!(
        div.is_object(),
        "{name}: exit 1 but no divergence object: {report}"
    );
    assert!(
        div["signature"].as_str().is_some_and(|s| !s.is_empty()),
        "{name}: the divergence needs a signature: {div}"
    );
    assert!(
        div["report"].as_str().is_some_and(|s| !s.is_empty()),
        "{name}: the divergence needs a report: {div}"
    );

    // The shrunk trace: a valid trace of 1 to 6 ops.
    let trace = div["trace"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: no trace: {div}"));
    assert!(trace.starts_with("cowcheck-trace 1\n"), "{name}: {trace:?}");
    let ops = op_lines(trace);
    assert!(
        !ops.is_empty() && ops.len() <= max_ops,
        "{name}: the shrunk trace has {} ops, want 1 to {max_ops}:\n{trace}",
        ops.len()
    );
    let op_index = div["op_index"].as_u64().expect("op_index") as usize;
    assert!(
        op_index < ops.len(),
        "{name}: first seen at op {op_index} of {}",
        ops.len()
    );
    if let Some(original) = div["original_ops"].as_u64() {
        assert!(
            original as usize >= ops.len(),
            "{name}: shrinking made it longer: {div}"
        );
    }

    // The saved file: in --out, the same ops.
    let saved = div["saved_to"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: not saved: {div}"));
    let saved = Path::new(saved);
    assert_eq!(
        saved.parent(),
        Some(dir.as_path()),
        "{name}: saved outside --out: {}",
        saved.display()
    );
    let text = std::fs::read_to_string(saved).unwrap_or_else(|e| {
        panic!(
            "{name}: cannot read the saved trace {}: {e}",
            saved.display()
        )
    });
    assert_eq!(
        op_lines(&text),
        ops,
        "{name}: the saved trace differs from the reported one"
    );
    assert!(
        text.contains("cowcheck run --seed 1"),
        "{name}: the saved trace should say how it was found:\n{text}"
    );

    // Replays to a divergence under the same fault...
    let (code, replayed, rerun) = replay_json(saved, fault_args);
    assert_eq!(
        code,
        1,
        "{name}: the saved trace must replay to a divergence\n{}",
        rerun.dump()
    );
    assert!(replayed["divergence"].is_object(), "{name}: {replayed}");
    let rerun = cowcheck(
        &[
            &["replay".to_string(), saved.display().to_string()][..],
            fault_args,
        ]
        .concat(),
    );
    rerun.expect_code(1);
    assert!(rerun.stdout.contains("DIVERGENCE"), "{}", rerun.dump());
    // ...and agrees without it: the divergence is the fault's, not the kernel's or the model's.
    let clean = cowcheck(&["replay", saved.to_str().unwrap()]);
    clean.expect_code(0);
    // The model reads it too.
    cowcheck(&["model", saved.to_str().unwrap()]).expect_code(0);
}

fn inject(fault: &str) -> Vec<String> {
    vec!["--inject".into(), fault.into()]
}

fn libfault_mode(name: &str, mode: &str) {
    let Some(lib) = libfault() else { return };
    assert_caught(name, &["--under".into(), under_libfault(&lib, mode)]);
}

fn libfault_mode_wide(name: &str, mode: &str) {
    let Some(lib) = libfault() else { return };
    assert_caught_within(
        name,
        &["--under".into(), under_libfault(&lib, mode)],
        MAX_SHRUNK_OPS_WIDE,
    );
}

#[test]
fn libfault_mprotect_noop() {
    libfault_mode_wide("libfault-mprotect-noop", "mprotect-noop");
}

#[test]
fn libfault_dontneed_ignored() {
    libfault_mode_wide("libfault-dontneed-ignored", "dontneed-ignored");
}

#[test]
fn libfault_wipeonfork_ignored() {
    libfault_mode_wide("libfault-wipeonfork-ignored", "wipeonfork-ignored");
}

#[test]
fn libfault_dontfork_ignored() {
    libfault_mode_wide("libfault-dontfork-ignored", "dontfork-ignored");
}

#[test]
fn libfault_mremap_dirty_tail() {
    libfault_mode_wide("libfault-mremap-dirty-tail", "mremap-dirty-tail");
}

#[test]
fn inject_drop_child_write() {
    assert_caught("inject-drop-child-write", &inject("drop-child-write"));
}

#[test]
fn inject_private_as_shared() {
    assert_caught("inject-private-as-shared", &inject("private-as-shared"));
}

#[test]
fn libfault_private_shared() {
    libfault_mode("libfault-private-shared", "private-shared");
}

#[test]
fn libfault_shared_private() {
    libfault_mode("libfault-shared-private", "shared-private");
}

#[test]
fn libfault_fork_zero() {
    libfault_mode("libfault-fork-zero", "fork-zero");
}

#[test]
fn libfault_dirty_mmap() {
    libfault_mode("libfault-dirty-mmap", "dirty-mmap");
}

#[test]
fn libfault_munmap_less() {
    libfault_mode("libfault-munmap-less", "munmap-less");
}

#[test]
fn libfault_mmap_more() {
    libfault_mode("libfault-mmap-more", "mmap-more");
}

/// The counter-test of the counter-tests: the shim loaded without a fault selected, and the
/// executor without injections, find nothing on the same seed.
#[test]
fn no_fault_no_divergence() {
    let dir = tmpdir("no-fault");
    let mut args: Vec<String> = ["run", "--seed", "1", "--cases", "200", "--json", "--out"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(dir.display().to_string());
    let run = cowcheck(&args);
    run.expect_code(0);
    assert!(run.json()["divergence"].is_null());
    if let Some(lib) = libfault() {
        args.extend(["--under".into(), under_libfault(&lib, "none")]);
        let run = cowcheck(&args);
        run.expect_code(0);
        assert!(run.json()["divergence"].is_null());
    }
}

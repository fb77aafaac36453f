//! The executor under an emulator: `--under qemu-x86_64` runs the process tree in user-mode
//! qemu while the model and checker stay native. Skipped, with a note, where qemu is missing.

mod common;

use common::*;

const QEMU: &str = "qemu-x86_64";

fn have_qemu() -> bool {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("note: not an x86_64 build; skipping the {QEMU} tests");
        return false;
    }
    if !on_path(QEMU) {
        eprintln!("note: {QEMU} is not on PATH; skipping the {QEMU} tests");
        return false;
    }
    true
}

#[test]
fn run_under_qemu() {
    if !have_qemu() {
        return;
    }
    let dir = tmpdir("qemu-run");
    let run = cowcheck(&[
        "run",
        "--under",
        QEMU,
        "--cases",
        "30",
        "--seed",
        "1",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let code = run.code();
    run.no_panic();
    assert!(code == 0 || code == 1, "exit status {code}\n{}", run.dump());
    let report = run.json();
    let programs = report["programs"]
        .as_u64()
        .unwrap_or_else(|| panic!("no programs: {report}"));
    assert!(programs >= 1, "{report}");
    assert!(programs <= 30, "--cases 30: {report}");
    let release = report["kernel"]["release"]
        .as_str()
        .unwrap_or_else(|| panic!("no kernel release: {report}"));
    assert!(!release.is_empty(), "{report}");
    assert_eq!(report["seed"], 1, "{report}");
    assert_eq!(
        code == 1,
        report["divergence"].is_object(),
        "exit 1 exactly when a divergence is reported: {report}"
    );
}

/// Under qemu too, a process that touches an unmapped page dies of SIGSEGV at that page, and
/// the child's write to shared memory reaches the parent: the replay agrees with the model.
#[test]
fn replay_under_qemu() {
    if !have_qemu() {
        return;
    }
    let dir = tmpdir("qemu-replay");
    let trace = write_file(
        &dir,
        "t.trace",
        "cowcheck-trace 1\n\
         p0 map m0 shared 2\n\
         p0 map m1 private 2\n\
         p0 write m1 0[0..4] fill 0x01\n\
         p0 fork p1\n\
         p1 write m0 0[0..4] fill 0x02\n\
         p1 write m1 0[0..4] fill 0x03\n\
         p1 exit\n\
         p0 read m0 0[0..4]\n\
         p0 read m1 0[0..4]\n\
         p0 unmap m0 1\n\
         p0 read m0 1\n",
    );
    let run = cowcheck(&["replay", trace.to_str().unwrap(), "--under", QEMU]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("kernel and model agree on all 11 ops"),
        "{}",
        run.dump()
    );
    assert!(run.stdout.contains("killed by SIGSEGV"), "{}", run.dump());
    // A fault is still caught under the emulator.
    let run = cowcheck(&[
        "replay",
        trace.to_str().unwrap(),
        "--under",
        QEMU,
        "--inject",
        "drop-child-write",
    ]);
    run.expect_code(1);
}

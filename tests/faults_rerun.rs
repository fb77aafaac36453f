//! Proof that the campaign's environment rule (src/campaign.rs, `confirm`) does not hide a
//! finding: a process that vanished without a report in a program's first run is a kill from
//! outside only if the program then runs clean. tests/faults/librerun.c SIGKILLs the first
//! process that calls `madvise(MADV_DONTNEED)` and makes every later MADV_DONTNEED fail with
//! EINVAL, so the first run loses a process and every rerun diverges at an op. Before the
//! rule looked at the reruns' other divergences, `cowcheck run --seed 1` refused the program
//! as a kill from outside and ended with exit 2 (as a qemu-user campaign did at its program
//! 6159); now the reruns' divergence is the finding, exit 1.

mod common;

use common::*;

#[test]
fn a_vanished_process_whose_reruns_diverge_is_a_finding() {
    let Some(lib) = shim("librerun") else {
        return;
    };
    let dir = tmpdir("rerun-finding");
    let flag = dir.join("first-dontneed-done");
    let under = format!(
        "env COWCHECK_RERUN_FAULT=vanish-then-fail COWCHECK_RERUN_FILE={} LD_PRELOAD={}",
        flag.display(),
        lib.display()
    );
    let out = dir.join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let run = cowcheck(&[
        "run",
        "--seed",
        "1",
        "--cases",
        "300",
        // One executor: the fault's "first call" is one file, which two jobs would share.
        "--jobs",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--under",
        &under,
    ]);
    run.no_panic();
    assert!(flag.exists(), "the fault fired:\n{}", run.dump());
    assert!(
        !run.stderr.contains("killed from outside"),
        "refused as the environment's:\n{}",
        run.dump()
    );
    run.expect_code(1);
    let trace = std::fs::read_dir(&out)
        .expect("the output directory")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "trace"))
        .expect("a saved finding");
    let text = std::fs::read_to_string(&trace).expect("read the finding");
    assert!(
        text.contains("errno 22") && text.contains("dontneed"),
        "the reruns' divergence (MADV_DONTNEED failing with EINVAL) is the finding:\n{text}"
    );
    assert!(
        text.contains("seen in 4 of 4 runs"),
        "counted over the reruns:\n{text}"
    );
}

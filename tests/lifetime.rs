//! Nothing outlives a run: when `cowcheck run` is SIGKILLed mid-campaign, or its executor is,
//! or the run simply ends, no process of its tree (the executor, the workers of the program in
//! flight) survives for more than a few seconds.
//!
//! Every process the test starts carries `COWCHECK_TEST_TAG=<unique>` in its environment, which
//! `fork` and `exec` pass down the whole tree, so the test finds exactly its own descendants in
//! /proc (and never touches processes of other tests running at the same time). Whatever is
//! still found at the end is SIGKILLed by pid, so a failing test cleans up after itself too.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tree::*;
use common::*;

#[test]
fn sigkill_of_cowcheck_leaves_no_process() {
    let mut tree = start_campaign("kill-front", &[]);
    kill_front_and_check(&mut tree, true);
}

/// The same with the executor under qemu-x86_64 (when installed): the emulated tree dies too.
#[test]
fn sigkill_of_cowcheck_under_qemu_leaves_no_process() {
    if !on_path("qemu-x86_64") || !cfg!(target_arch = "x86_64") {
        eprintln!("note: qemu-x86_64 is not on PATH; skipping");
        return;
    }
    // --keep-going: under qemu-user a campaign finds divergences within seconds (its vfork is
    // a fork, ...), and without it the run could end by itself before the kill.
    let mut tree = start_campaign(
        "kill-front-qemu",
        &["--under", "qemu-x86_64", "--keep-going"],
    );
    kill_front_and_check(&mut tree, false);
}

fn kill_front_and_check(tree: &mut Tree, native: bool) {
    // The tag finds the tree: cowcheck itself, its executor (and the workers of the program in
    // flight, when the snapshot catches one); natively, all of them run the cowcheck binary.
    let before = tagged(&tree.tag);
    assert!(before.iter().any(|p| p.pid == tree.pid()), "{before:#?}");
    if native {
        let bin = std::fs::canonicalize(BIN).expect("canonical path of the binary");
        // A process caught while it exits has released its memory: no exe, no cmdline (seen
        // once in a few dozen runs); it runs nothing else.
        for p in before
            .iter()
            .filter(|p| !(p.exe.is_empty() && p.cmdline.is_empty()))
        {
            assert!(
                Some(p.exe.trim_end_matches(" (deleted)")) == bin.to_str(),
                "a process of the tree runs something else than {}: {p:#?}",
                bin.display()
            );
        }
    }
    tree.child.kill().expect("SIGKILL cowcheck");
    let status = tree
        .wait(Duration::from_secs(5))
        .expect("cowcheck ends after SIGKILL");
    assert!(status.code().is_none(), "killed, not exited: {status}");
    tree.assert_all_gone("after SIGKILL of cowcheck");
}

#[test]
fn sigkill_of_executor_ends_run_with_status_2_and_no_process() {
    let mut tree = start_campaign("kill-executor", &[]);
    let executor = tagged(&tree.tag)
        .into_iter()
        .find(|p| p.ppid == tree.pid() && p.cmdline.contains("__executor"))
        .expect("the executor");
    // SAFETY: kill(2) on the executor this test started.
    assert_eq!(unsafe { libc::kill(executor.pid, libc::SIGKILL) }, 0);
    let status = tree
        .wait(Duration::from_secs(20))
        .expect("cowcheck must notice its executor's death and end");
    let stderr = tree.stderr();
    assert_eq!(
        status.code(),
        Some(2),
        "a dead executor is an environment error: {stderr}"
    );
    assert!(
        stderr.contains("executor"),
        "the error should say the executor died: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    tree.assert_all_gone("after SIGKILL of the executor");
}

#[test]
fn a_finished_run_leaves_no_process() {
    let dir = tmpdir("finished");
    let mut tree = Tree::start(
        "finished",
        &[
            "run",
            "--time",
            "1",
            "--seed",
            "5",
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    let status = tree.wait(Duration::from_secs(60)).expect("a 1 s run ends");
    assert!(status.code().is_some(), "{status}");
    tree.assert_all_gone("after a run ended by itself");
}

/// The counter-test: the /proc scan does see a survivor. A shell started with the tag leaves an
/// orphaned `sleep` behind; the scan must find it (and the test then kills it by pid).
#[test]
fn the_scan_finds_an_orphan_left_behind() {
    if !on_path("sh") || !on_path("sleep") {
        eprintln!("note: no sh or sleep on PATH; skipping");
        return;
    }
    let mut tree = Tree {
        tag: format!("orphan-{}", std::process::id()),
        child: Command::new("sh")
            .args(["-c", "sleep 30 >/dev/null 2>&1 &"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env(TAG_VAR, format!("orphan-{}", std::process::id()))
            .spawn()
            .expect("start sh"),
    };
    let status = tree.wait(Duration::from_secs(10)).expect("sh ends at once");
    assert!(status.success());
    let left = wait_until_gone(&tree.tag, Duration::from_millis(500));
    assert!(
        left.iter().any(|p| p.cmdline.contains("sleep 30")),
        "the orphaned sleep should be found: {left:#?}"
    );
    // Drop kills it.
}

/// Sends `signal` to `target` of a campaign in flight, then lets the run end (by itself, or
/// by the signal), and counts what is left: no process of the tree may outlive it, and the
/// run may end with 0 (nothing found) or 2 (it says what went wrong), or by the signal it got,
/// never with 1 (a divergence: nothing here is the kernel's doing).
fn signal_and_count(name: &str, target: Target, signal: i32) {
    let mut tree = start_campaign_for(name, "4", &[]);
    let Some((front, executor, helpers, workers)) = roles(&tree) else {
        panic!("no executor in {:#?}", tagged(&tree.tag));
    };
    let pid = match target {
        Target::Front => front,
        Target::FrontGroup => -front,
        Target::Executor => executor,
        Target::ExecutorChild(i) => match helpers.get(i) {
            Some(p) => *p,
            None => panic!("the executor has no child {i}: {helpers:?}"),
        },
        Target::Worker => {
            // Workers come and go with each program: catch one.
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut ws = workers;
            while ws.is_empty() && Instant::now() < deadline {
                ws = roles(&tree).map(|r| r.3).unwrap_or_default();
            }
            match ws.first() {
                Some(p) => *p,
                None => {
                    eprintln!("note: no worker caught in 2 s; skipping");
                    return;
                }
            }
        }
    };
    // SAFETY: kill(2) on a process (or the group) of the tree this test started.
    assert_eq!(
        unsafe { libc::kill(pid, signal) },
        0,
        "kill({pid}, {signal})"
    );
    let status = tree
        .wait(Duration::from_secs(40))
        .unwrap_or_else(|| panic!("{target:?} got signal {signal}: the run did not end"));
    let stderr = tree.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(
        status.code(),
        Some(1),
        "{target:?} got signal {signal}: reported as a divergence: {stderr}"
    );
    tree.assert_all_gone(&format!("after signal {signal} to {target:?} ({status})"));
}

#[test]
fn no_signal_to_any_process_of_the_tree_leaves_anything_behind() {
    for (i, (target, signal)) in [
        (Target::FrontGroup, libc::SIGINT),
        (Target::FrontGroup, libc::SIGTERM),
        (Target::Front, libc::SIGINT),
        (Target::Front, libc::SIGTERM),
        (Target::Front, libc::SIGHUP),
        (Target::Executor, libc::SIGTERM),
        (Target::Executor, libc::SIGINT),
        (Target::ExecutorChild(0), libc::SIGKILL),
        (Target::ExecutorChild(1), libc::SIGKILL),
        (Target::ExecutorChild(0), libc::SIGTERM),
        (Target::Worker, libc::SIGKILL),
        (Target::Worker, libc::SIGTERM),
    ]
    .into_iter()
    .enumerate()
    {
        signal_and_count(&format!("matrix-{i}"), target, signal);
    }
}

/// `--under` owns everything it starts: a wrapper script that leaves a child of its own behind
/// and never says hello is stopped after --start-deadline, whole (its child too), and the
/// error says it never became ready (not that it "exited", which it did not do by itself).
#[test]
fn a_silent_under_command_is_stopped_whole() {
    if !on_path("sh") || !on_path("sleep") {
        eprintln!("note: no sh or sleep on PATH; skipping");
        return;
    }
    let dir = tmpdir("silent-under");
    let script = write_file(&dir, "silent.sh", "sleep 300 &\nexec sleep 301\n");
    let under = format!("sh {}", script.display());
    let mut tree = Tree::start(
        "silent-under",
        &[
            "run",
            "--cases",
            "1",
            "--start-deadline",
            "2",
            "--under",
            &under,
        ],
    );
    let status = tree
        .wait(Duration::from_secs(30))
        .expect("cowcheck gives up on a silent --under command");
    let stderr = tree.stderr();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("never became ready") && stderr.contains("was stopped"),
        "{stderr}"
    );
    tree.assert_all_gone("after a silent --under command was stopped");
}

//! The hugetlb pool share (docs/SEMANTICS.md L7): as root, every executor adds its share to
//! `vm.nr_hugepages` and the value is back to what it was after a run that ends normally, after
//! one whose front is SIGKILLed (the executor dies with it) and after one whose executor alone
//! is SIGKILLed (its guardian gives the share back), and after one whose front, executor and
//! guardian are all SIGKILLed (the next executor's start gives it back, from the ledger of live
//! shares). One test, so that no other executor of this binary changes the pool meanwhile.
//! Skipped (and says so) without root.
//!
//! The waits below are for a condition, bounded by a deadline against a hang: the executor
//! raises the pool as it starts, and the guardian gives it back a moment after the executor's
//! death.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NR: &str = "/proc/sys/vm/nr_hugepages";

fn nr() -> i64 {
    std::fs::read_to_string(NR)
        .expect("read nr_hugepages")
        .trim()
        .parse()
        .expect("a number")
}

/// Waits until `cond` holds, at most `secs` seconds; returns whether it did.
fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// A long campaign with one executor, started in the background.
fn long_run() -> Child {
    Command::new(common::BIN)
        .args([
            "run",
            "--cases",
            "10000000",
            "--seed",
            "1",
            "--jobs",
            "1",
            "--hugetlb",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cowcheck run")
}

/// The executor: the child of `front` (one job).
fn executor_of(front: u32) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{front}/task/{front}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

fn sigkill(pid: i32) {
    // SAFETY: kill of a process this test started (or its executor child).
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

#[test]
fn the_pool_is_always_given_back() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || std::fs::metadata(NR).is_err() {
        eprintln!("skipped: not root, or no {NR}: the executor does not touch the pool");
        return;
    }
    let original = nr();

    // A run that ends by itself.
    let out = common::cowcheck(&["run", "--cases", "300", "--seed", "1", "--hugetlb"]);
    assert!(out.status.success(), "the run failed:\n{}", out.dump());
    assert_eq!(nr(), original, "a finished run left nr_hugepages changed");

    // The front SIGKILLed: its executor dies with it (PR_SET_PDEATHSIG), the guardian gives
    // the share back.
    let mut front = long_run();
    assert!(
        wait_for(60, || nr() > original),
        "the executor never raised the pool"
    );
    sigkill(front.id() as i32);
    front.wait().expect("reap the front");
    assert!(
        wait_for(60, || nr() == original),
        "after the front was SIGKILLed nr_hugepages stayed {} (was {original})",
        nr()
    );

    // The executor alone SIGKILLed.
    let mut front = long_run();
    assert!(
        wait_for(60, || nr() > original),
        "the executor never raised the pool"
    );
    let executor = executor_of(front.id()).expect("the front's executor");
    sigkill(executor);
    assert!(
        wait_for(60, || nr() == original),
        "after the executor was SIGKILLed nr_hugepages stayed {} (was {original})",
        nr()
    );
    sigkill(front.id() as i32);
    front.wait().expect("reap the front");
    assert_eq!(nr(), original);

    // Everything SIGKILLed at once, the guardian first (what a test harness that kills every
    // process of a run does): the executor, stopped, cannot notice its guardian's death, and
    // nobody is left to give the share back. The ledger names it, and the next executor's
    // start gives it back (before the ledger, these 8 pages stayed until reboot).
    let mut front = long_run();
    assert!(
        wait_for(60, || nr() > original),
        "the executor never raised the pool"
    );
    let executor = executor_of(front.id()).expect("the front's executor");
    // Every child of the executor, its guardian among them (not always the first listed: a
    // probe's child may still be there), so that nobody is left to give the share back.
    let children = children_of(executor);
    assert!(!children.is_empty(), "the executor has a guardian");
    assert!(
        ledger_pids().contains(&executor),
        "the ledger names the executor {executor}: {:?}",
        ledger_pids()
    );
    // SAFETY: kill of processes this test started.
    unsafe { libc::kill(executor, libc::SIGSTOP) };
    for &child in &children {
        sigkill(child);
    }
    // The front before the executor: a front that saw its executor die would stop it and
    // sweep the ledger (`Executor::stop`), giving the share back itself.
    sigkill(front.id() as i32);
    sigkill(executor);
    front.wait().expect("reap the front");
    assert!(
        wait_for(10, || !alive(executor)
            && children.iter().all(|&c| !alive(c))),
        "the executor and its guardian are gone"
    );
    let raised = nr();
    assert!(
        raised > original,
        "nobody was left to give the share back, yet the pool is {raised} (was {original})"
    );
    let out = common::cowcheck(&["run", "--cases", "10", "--seed", "1", "--jobs", "1"]);
    assert!(out.status.success(), "the run failed:\n{}", out.dump());
    assert_eq!(
        nr(),
        original,
        "the next executor's start gave back the dead executor's share"
    );
    assert!(
        !ledger_pids().contains(&executor),
        "the dead executor's line is gone from the ledger: {:?}",
        ledger_pids()
    );
}

/// The ledger of live pool shares (`src/kernel/hugetlb_pool/ledger.rs`): the pids it names.
fn ledger_pids() -> Vec<i32> {
    std::fs::read_to_string("/run/cowcheck/hugetlb-pool")
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The children of `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

/// Whether `pid` is a process that has not exited (a zombie has).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .and_then(|r| r.trim_start().chars().next()),
            Some('Z') | Some('X')
        ),
        Err(_) => false,
    }
}

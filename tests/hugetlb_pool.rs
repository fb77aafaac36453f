//! The hugetlb pool share (docs/SEMANTICS.md L7): as root, every executor adds its share to
//! `vm.nr_hugepages` and the value is back to what it was after a run that ends normally, after
//! one whose front is SIGKILLed (the executor dies with it) and after one whose executor alone
//! is SIGKILLed (its guardian gives the share back). One test, so that no other executor of
//! this binary changes the pool meanwhile. Skipped (and says so) without root.
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
}

//! Nothing outlives a run: when `cowcheck run` is SIGKILLed mid-campaign, or its executor is,
//! or the run simply ends, no process of its tree (the executor, the workers of the program in
//! flight) survives for more than a few seconds.
//!
//! Every process the test starts carries `COWCHECK_TEST_TAG=<unique>` in its environment, which
//! `fork` and `exec` pass down the whole tree, so the test finds exactly its own descendants in
//! /proc (and never touches processes of other tests running at the same time). Whatever is
//! still found at the end is SIGKILLed by pid, so a failing test cleans up after itself too.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const TAG_VAR: &str = "COWCHECK_TEST_TAG";

/// A live process of the test's tree.
#[derive(Debug)]
struct Proc {
    pid: i32,
    ppid: i32,
    state: char,
    cmdline: String,
    exe: String,
}

fn read_proc(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: read after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Some(Proc {
        pid,
        ppid,
        state,
        cmdline,
        exe,
    })
}

/// The processes that carry `tag` in their environment, zombies aside (a zombie has ended; its
/// environment reads empty).
fn tagged(tag: &str) -> Vec<Proc> {
    let needle = format!("{TAG_VAR}={tag}");
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        panic!("cannot read /proc");
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
        })
        .filter_map(read_proc)
        .filter(|p| p.state != 'Z')
        .collect()
}

/// Polls until no tagged process is left, for up to `limit`; returns the survivors.
fn wait_until_gone(tag: &str, limit: Duration) -> Vec<Proc> {
    let start = Instant::now();
    loop {
        let left = tagged(tag);
        if left.is_empty() || start.elapsed() > limit {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Owns the started `cowcheck` and, on drop, kills it and any tagged process left, by pid.
struct Tree {
    tag: String,
    child: Child,
}

impl Tree {
    fn start(name: &str, args: &[&str]) -> Tree {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tag = format!("{name}-{}-{nanos}", std::process::id());
        // Its own process group, as a shell gives a foreground job: the test signals the group
        // the way Ctrl-C does.
        let child = Command::new(BIN)
            .args(args)
            .env(TAG_VAR, &tag)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cowcheck");
        Tree { tag, child }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the cowcheck process to end, at most `limit`.
    fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Fails the test if any process of the tree is still there after ~5 s.
    fn assert_all_gone(&self, after: &str) {
        let left = wait_until_gone(&self.tag, Duration::from_secs(5));
        assert!(
            left.is_empty(),
            "{after}, these processes of its tree were still alive 5 s later:\n{left:#?}"
        );
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in tagged(&self.tag) {
            // SAFETY: kill(2) on a pid this test started (it carries the test's tag).
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
    }
}

/// Starts `cowcheck run --time 30 --seed S` and lets it run for 1.5 s. A campaign that ends
/// early (it found a divergence, and shrinking it was quick) is retried with the next seed, so
/// that the kill lands mid-campaign. If every seed ends early, the test falls back to
/// `cowcheck bench`, which starts its executor the same way and runs on through divergences:
/// this test is about process lifetime, not about what the campaigns find.
fn start_campaign(name: &str, extra: &[&str]) -> Tree {
    start_campaign_for(name, "30", extra)
}

fn start_campaign_for(name: &str, time: &str, extra: &[&str]) -> Tree {
    let dir = tmpdir(name);
    let out = dir.display().to_string();
    let attempts: [&[&str]; 4] = [
        &["run", "--time", time, "--seed", "5", "--out", &out],
        &["run", "--time", time, "--seed", "6", "--out", &out],
        &["run", "--time", time, "--seed", "7", "--out", &out],
        &["bench", "--programs", "1000000000", "--seed", "5"],
    ];
    for args in attempts {
        let args = [args, extra].concat();
        let mut tree = Tree::start(name, &args);
        std::thread::sleep(Duration::from_millis(1500));
        match tree.child.try_wait() {
            Ok(None) => {
                let procs = tagged(&tree.tag);
                assert!(
                    procs
                        .iter()
                        .any(|p| p.ppid == tree.pid() && p.cmdline.contains("__executor")),
                    "the running campaign should have an executor child: {procs:#?}"
                );
                return tree;
            }
            Ok(Some(status)) => {
                eprintln!(
                    "note: `cowcheck {}` ended before the kill ({status}): {}; trying the next",
                    args.join(" "),
                    tree.stderr().trim()
                );
            }
            Err(e) => panic!("try_wait: {e}"),
        }
    }
    panic!("every campaign ended within 1.5 s; cannot test killing one");
}

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
    let mut tree = start_campaign("kill-front-qemu", &["--under", "qemu-x86_64"]);
    kill_front_and_check(&mut tree, false);
}

fn kill_front_and_check(tree: &mut Tree, native: bool) {
    // The tag finds the tree: cowcheck itself, its executor (and the workers of the program in
    // flight, when the snapshot catches one); natively, all of them run the cowcheck binary.
    let before = tagged(&tree.tag);
    assert!(before.iter().any(|p| p.pid == tree.pid()), "{before:#?}");
    if native {
        let bin = std::fs::canonicalize(BIN).expect("canonical path of the binary");
        for p in &before {
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

/// Who gets the signal in the matrix below.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// cowcheck itself.
    Front,
    /// Every process of the front's process group: what Ctrl-C in a terminal does.
    FrontGroup,
    Executor,
    /// A child of the executor that is not running a program: its guardian or its zygote.
    ExecutorChild(usize),
    /// A worker of the program in flight (or of one being torn down).
    Worker,
}

/// The processes of the tree in their roles: (front, executor, the executor's other children
/// sorted by pid, workers).
fn roles(tree: &Tree) -> Option<(i32, i32, Vec<i32>, Vec<i32>)> {
    let procs = tagged(&tree.tag);
    let front = tree.pid();
    let executor = procs
        .iter()
        .find(|p| p.ppid == front && p.cmdline.contains("__executor"))?
        .pid;
    // The guardian and the zygote are the executor's first two children; workers descend from
    // the zygote (and come back to the executor, its subreaper, when orphaned).
    let mut children: Vec<i32> = procs
        .iter()
        .filter(|p| p.ppid == executor)
        .map(|p| p.pid)
        .collect();
    children.sort();
    let helpers: Vec<i32> = children.iter().take(2).copied().collect();
    let workers = procs
        .iter()
        .map(|p| p.pid)
        .filter(|pid| *pid != front && *pid != executor && !helpers.contains(pid))
        .collect();
    Some((front, executor, helpers, workers))
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

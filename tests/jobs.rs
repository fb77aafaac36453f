//! `--jobs N`: with two jobs or more, each job's executor, and every process it forks (the
//! zygote, the guardian, the program trees), runs on the CPU its configuration names, and so
//! does the job's thread in the front.

mod common;

use std::path::PathBuf;

use common::*;
use cowcheck::kernel::{Executor, ExecutorConfig};

/// The pids whose parent is `parent` and whose command line contains `word`.
fn children_of(parent: u32, word: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == Some(parent) && String::from_utf8_lossy(&cmdline).contains(word) {
            out.push(pid);
        }
    }
    out
}

fn allowed(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn each_job_runs_on_its_cpu() {
    let config = ExecutorConfig::new(PathBuf::from(BIN));
    let pinned = config.for_job(1, 2);
    let cpu = pinned.cpu.expect("two jobs are pinned");
    let mut executor = Executor::start(&pinned).expect("start the executor");
    // It runs programs as before.
    let program = cowcheck::program::trace::parse(PRIVATE.as_bytes()).unwrap();
    let (verdict, _) = cowcheck::trial::run(&mut executor, &program, None).unwrap();
    assert!(matches!(verdict, cowcheck::check::Verdict::Agreed(_)));
    let ours = children_of(std::process::id(), &format!("--cpu={cpu}"));
    assert_eq!(
        ours.len(),
        1,
        "the pinned executor among our children: {ours:?}"
    );
    assert_eq!(allowed(ours[0]), cpu.to_string());
    // The guardian and the zygote inherit it.
    let forked = children_of(ours[0], "__executor");
    assert!(forked.len() >= 2, "{forked:?}");
    for pid in forked {
        assert_eq!(allowed(pid), cpu.to_string(), "process {pid}");
    }
    // A job's thread in the front (its model and checker) is kept on its executor's CPU;
    // beside an executor that is not pinned (one job), it stays where it was. (Here, not in
    // a test of its own: a second pinned executor at once would be counted above.)
    let free = Executor::start(&config.for_job(0, 1)).expect("start the executor");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let before = thread_allowed();
            free.keep_caller_beside();
            assert_eq!(thread_allowed(), before, "one job's front is left free");
            executor.keep_caller_beside();
            assert_eq!(thread_allowed(), cpu.to_string());
        });
    });
}

/// The CPUs the calling thread may run on.
fn thread_allowed() -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

//! The resource limits a run needs, checked before it starts, and the names of the limits a
//! failure points at. A fork, mmap or socket that fails for lack of processes, memory or
//! descriptors is the environment's doing, never the kernel's semantics: a run refuses to start
//! under limits it cannot live with, and a failure past the start is reported as an
//! environment error naming the limit (see `campaign::environment_cause`).
//!
//! Reads only `getrlimit` and /proc; never changes a limit.

use nix::sys::resource::{Resource, getrlimit};

use crate::program::caps;

/// Processes a run may have at once: the front, the executor, its zygote and guardian, a
/// spare root, the live processes of the program being run, and the trees of finished
/// programs still being torn down (the executor lets at most four die at once).
pub const PROCESSES_NEEDED: u64 = 8 + 5 * caps::MAX_LIVE as u64;

/// File descriptors the executor may hold at once: its own (stdio, the slots, the zygote's
/// socket, /proc files) and a socket per process handle of the program, with the next
/// program's root and its child sockets made in advance.
pub const DESCRIPTORS_NEEDED: u64 = 32 + 3 * caps::MAX_PROCS as u64;

/// Address space each process of a run may need: the executor's own (VmPeak ~12 MiB measured
/// with `cowcheck run` on x86-64 and glibc: binary, libraries, heap, shared slots; with less
/// than ~16 MiB it fails an allocation) and the largest program's mappings (`MAX_MAPS` of
/// `CLASSIC_MAP_PAGES` pages, and `MAX_BIG_PAGES` in the longer ones), twice over for mremap
/// growth.
pub fn address_space_needed(page_size: u64) -> u64 {
    let pages = caps::MAX_MAPS as u64 * caps::CLASSIC_MAP_PAGES as u64 + caps::MAX_BIG_PAGES as u64;
    (16 << 20) + 2 * (pages * page_size)
}

/// What is wrong with the limits this process would hand its executors (`jobs` of them, each
/// with its own process tree), if anything: one message naming the limit, its value, what a run
/// needs and how to raise it.
pub fn check_for_run(page_size: u64, jobs: u64) -> Result<(), String> {
    let processes = PROCESSES_NEEDED * jobs.max(1);
    let soft = |r: Resource| getrlimit(r).map(|(soft, _)| soft).ok();
    let infinite = nix::sys::resource::RLIM_INFINITY;
    if let Some(n) = soft(Resource::RLIMIT_NPROC)
        && n != infinite
        && !privileged()
    {
        // RLIMIT_NPROC counts every process of the user, not only this run's.
        let running = user_processes().unwrap_or(0);
        if n < running + processes {
            return Err(format!(
                "the process limit (RLIMIT_NPROC, `ulimit -u`) is {n}, and this user already runs {running} processes; a run of {jobs} job(s) needs up to {processes} more (raise it with `ulimit -u {}`, or run fewer --jobs)",
                running + processes
            ));
        }
    }
    if let Some(n) = soft(Resource::RLIMIT_NOFILE)
        && n != infinite
        && n < DESCRIPTORS_NEEDED
    {
        return Err(format!(
            "the descriptor limit (RLIMIT_NOFILE, `ulimit -n`) is {n}; a run needs up to {DESCRIPTORS_NEEDED} (raise it with `ulimit -n {DESCRIPTORS_NEEDED}`)"
        ));
    }
    let need = address_space_needed(page_size);
    if let Some(n) = soft(Resource::RLIMIT_AS)
        && n != infinite
        && n < need
    {
        return Err(format!(
            "the address-space limit (RLIMIT_AS, `ulimit -v`) is {} KiB; a run needs up to {} KiB per process (raise it with `ulimit -v {}`)",
            n >> 10,
            need >> 10,
            need >> 10
        ));
    }
    Ok(())
}

/// Which limit an errno of a fork, mmap or socket points at, as a clause of a message.
pub fn named_by(errno: i32) -> String {
    let soft = |r: Resource| match getrlimit(r) {
        Ok((n, _)) if n == nix::sys::resource::RLIM_INFINITY => "unlimited".to_string(),
        Ok((n, _)) => n.to_string(),
        Err(_) => "unknown".to_string(),
    };
    match errno {
        libc::EAGAIN => format!(
            "the process limit: RLIMIT_NPROC (`ulimit -u`) is {}, kernel.pid_max is {}, and the cgroup's pids.max may be lower",
            soft(Resource::RLIMIT_NPROC),
            first_line("/proc/sys/kernel/pid_max")
        ),
        libc::ENOMEM => format!(
            "memory: RLIMIT_AS (`ulimit -v`) is {}, vm.max_map_count is {}, vm.overcommit_memory is {}",
            soft(Resource::RLIMIT_AS),
            first_line("/proc/sys/vm/max_map_count"),
            first_line("/proc/sys/vm/overcommit_memory")
        ),
        libc::EMFILE | libc::ENFILE => format!(
            "descriptors: RLIMIT_NOFILE (`ulimit -n`) is {}",
            soft(Resource::RLIMIT_NOFILE)
        ),
        _ => format!("errno {errno}"),
    }
}

/// Root (with CAP_SYS_RESOURCE or CAP_SYS_ADMIN) is not held to RLIMIT_NPROC (kernel/fork.c:
/// copy_process).
fn privileged() -> bool {
    own_uids().is_some_and(|(_, effective)| effective == 0)
}

/// This process's real and effective user ids, from /proc/self/status.
fn own_uids() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let mut ids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .map(|v| v.parse::<u32>().ok());
    Some((ids.next()??, ids.next()??))
}

/// Processes (threads included: RLIMIT_NPROC counts tasks) of this real user.
fn user_processes() -> Option<u64> {
    let (uid, _) = own_uids()?;
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
        };
        if field("Uid:").and_then(|u| u.parse::<u32>().ok()) == Some(uid) {
            n += field("Threads:")
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(1);
        }
    }
    Some(n)
}

fn first_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

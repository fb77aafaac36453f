//! Where the executor's processes and threads run (docs/KERNELS.md, "Jobs and cores").
//!
//! A job has a CPU set: the CPUs its executor was given (`--cpus`, else the CPU mask it was
//! started with: `taskset` and cpusets are obeyed). A job may also have a home CPU in that
//! set (`--cpu`, one CPU a job when jobs run at once): the executor and every process it forks
//! run there. A racing thread or an op thread runs on another CPU of the set than its worker,
//! so that it races truly (T1); with a set of one CPU it shares its worker's. Nothing leaves
//! the set: before, a racer picked "the next online CPU", so a job kept on one CPU by
//! `taskset -c 0` still ran racers, and every process a racing op thread forked, on CPU 1.

use std::sync::OnceLock;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

#[derive(Debug)]
struct Placement {
    /// The job's CPU set, ascending.
    set: Vec<usize>,
    /// The mask a forked process goes back to: the home CPU if the job has one, else the set
    /// (made once, at `place`: a forked worker allocates nothing).
    home: Option<CpuSet>,
}

static PLACEMENT: OnceLock<Placement> = OnceLock::new();

fn mask(cpus: &[usize]) -> Option<CpuSet> {
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c).ok()?;
    }
    Some(set)
}

/// The CPUs the calling thread may run on, ascending.
pub fn allowed() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// At the executor's start: `set` (if not empty) becomes the process's CPU set, what it may
/// then use is recorded as the job's set, and with `home` the executor (and so everything it
/// forks) runs on that CPU only. A set or home that cannot be had leaves the mask as it was.
pub fn place(home: Option<usize>, set: &[usize]) {
    if !set.is_empty()
        && let Some(m) = mask(set)
    {
        let _ = sched_setaffinity(Pid::from_raw(0), &m);
    }
    let set = allowed();
    let home = home.filter(|h| set.is_empty() || set.contains(h));
    if let Some(m) = home.and_then(|h| mask(&[h])) {
        let _ = sched_setaffinity(Pid::from_raw(0), &m);
    }
    let home = match home {
        Some(h) => mask(&[h]),
        None if !set.is_empty() => mask(&set),
        None => None,
    };
    let _ = PLACEMENT.set(Placement { set, home });
}

/// The CPU the `index`th thread beside a worker runs on: `index` 0 on the CPU after the
/// worker's in the job's set, 1 on the worker's own, and so on round the set; -1 (no pinning:
/// wherever the worker's mask allows) with fewer than two CPUs in the set, or before `place`.
pub fn beside(index: usize) -> i32 {
    let Some(p) = PLACEMENT.get() else {
        return -1;
    };
    // SAFETY: sched_getcpu only reads.
    let me = unsafe { libc::sched_getcpu() };
    pick(&p.set, me, index)
}

/// `beside`'s choice in `set` for a worker on CPU `me`.
fn pick(set: &[usize], me: i32, index: usize) -> i32 {
    let n = set.len();
    if n < 2 {
        return -1;
    }
    let at = set.iter().position(|&c| c as i32 == me).unwrap_or(0);
    set[(at + 1 + n - index % n) % n] as i32
}

/// In a process just forked: back on the job's home CPU (or its whole set), whatever CPU the
/// forking thread was kept on (an op thread runs beside its worker, and a fork it makes
/// inherits its mask).
pub fn rehome() {
    if let Some(m) = PLACEMENT.get().and_then(|p| p.home.as_ref()) {
        let _ = sched_setaffinity(Pid::from_raw(0), m);
    }
}

/// Pins the calling thread to `cpu` (a `beside` choice); -1 leaves it as it is.
pub fn pin_thread(cpu: i32) {
    if cpu < 0 {
        return;
    }
    if let Some(m) = mask(&[cpu as usize]) {
        // pid 0 is the calling thread.
        let _ = sched_setaffinity(Pid::from_raw(0), &m);
    }
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn threads_beside_a_worker_stay_in_the_set() {
        // One CPU: no pinning, the thread shares its worker's.
        assert_eq!(pick(&[3], 3, 0), -1);
        assert_eq!(pick(&[], 0, 0), -1);
        // Two: the first thread on the other, the second on the worker's own.
        assert_eq!(pick(&[0, 1], 0, 0), 1);
        assert_eq!(pick(&[0, 1], 0, 1), 0);
        assert_eq!(pick(&[0, 1], 1, 0), 0);
        // A set that is not 0..n: never a CPU outside it.
        assert_eq!(pick(&[2, 5, 7], 5, 0), 7);
        assert_eq!(pick(&[2, 5, 7], 7, 0), 2);
        assert_eq!(pick(&[2, 5, 7], 7, 1), 7);
        assert_eq!(pick(&[2, 5, 7], 7, 2), 5);
        // A worker found off the set (not yet moved): as if on its first CPU.
        assert_eq!(pick(&[4, 6], 0, 0), 6);
        for me in 0..10 {
            for i in 0..4 {
                assert!([2, 5, 7].contains(&(pick(&[2, 5, 7], me, i) as usize)));
            }
        }
    }
}

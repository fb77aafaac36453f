//! One view at a time per address space (docs/SEMANTICS.md T31). The processes of a snapshot
//! read their views at the same moment, and a view loads every readable page (its digest):
//! a load of an untouched private page maps the zero page, of an untouched shared page
//! allocates it. In an address space of its own that changes nothing another process reads.
//! But a `clone(CLONE_VM)` child and its parent share one page table, so one's digest could
//! map a page between the other's pagemap read and its mincore or smaps read of the same
//! page, and the two reads of one view would disagree (seen in CI: "mincore says resident
//! (pagemap: not present)", and "smaps says Rss 28 kB; ... pagemap say 0 kB", each in a
//! program with a clone). That is the harness looking, not the kernel: so the users of one
//! address space take their views one after the other.
//!
//! The lock is a static word, so it is shared exactly by the processes that share this
//! address space (a clone child shares every static with its parent; a fork child gets its
//! own copy, unlocked, since forks run in batches, never during a view). It holds the pid of
//! the process viewing. A holder that died in its view (killed from outside, or by the
//! coordinator as hung) is passed over once it has exited: a waiter checks the holder every
//! `CHECK_MS` and takes the lock from a process that is gone or a zombie. Nothing here
//! allocates.

use std::sync::atomic::{AtomicU32, Ordering};

/// The pid of the process viewing, or 0.
static VIEWING: AtomicU32 = AtomicU32::new(0);

/// How often a waiter checks that the holder still lives.
const CHECK_MS: libc::c_long = 2;

/// Held while this process takes its view; released on drop.
pub(super) struct ViewLock(u32);

impl ViewLock {
    /// Waits until no other process of this address space is taking its view.
    pub(super) fn take() -> ViewLock {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() } as u32;
        loop {
            match VIEWING.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return ViewLock(me),
                // Our own stale hold (cannot happen: a view never nests) is ours again.
                Err(holder) if holder == me => return ViewLock(me),
                Err(holder) => {
                    if !futex_wait(&VIEWING, holder) && gone(holder) {
                        let _ = VIEWING.compare_exchange(
                            holder,
                            0,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                }
            }
        }
    }
}

impl Drop for ViewLock {
    fn drop(&mut self) {
        if VIEWING
            .compare_exchange(self.0, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            futex_wake(&VIEWING);
        }
    }
}

/// Waits while `word` holds `seen`, for at most `CHECK_MS`; `false` on the timeout.
fn futex_wait(word: &AtomicU32, seen: u32) -> bool {
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: CHECK_MS * 1_000_000,
    };
    super::futex::wait(word, seen, timeout)
}

/// Wakes every waiter (one takes the lock, the others wait again).
fn futex_wake(word: &AtomicU32) {
    super::futex::wake(word, i32::MAX);
}

/// Whether process `pid` has exited (a zombie counts: it will never release the lock).
/// Through a pidfd, which polls readable once the process has exited; where pidfds are
/// missing (old kernels, some emulators), `kill(pid, 0)`, which only sees a reaped process.
fn gone(pid: u32) -> bool {
    // SAFETY: pidfd_open of a pid number; the descriptor, if any, is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return match nix::errno::Errno::last() {
            nix::errno::Errno::ESRCH => true,
            // SAFETY: signal 0 only checks that the process exists.
            _ => (unsafe { libc::kill(pid as libc::pid_t, 0) }) != 0,
        };
    }
    let mut p = libc::pollfd {
        fd: fd as i32,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll of one descriptor we own, without waiting; then its close.
    unsafe {
        let n = libc::poll(&mut p, 1, 0);
        libc::close(fd as i32);
        n == 1 && p.revents & libc::POLLIN != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hold by a process that is gone is passed over; a live holder is waited for.
    #[test]
    fn a_dead_holders_lock_is_taken_over() {
        // A child that exits at once: a zombie until reaped, then gone.
        let mut child = std::process::Command::new("true").spawn().expect("spawns");
        let pid = child.id();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(gone(pid), "an exited child (a zombie) is gone");
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() } as u32;
        assert!(!gone(me), "this process lives");
        VIEWING.store(pid, Ordering::Relaxed);
        let lock = ViewLock::take();
        assert_eq!(VIEWING.load(Ordering::Relaxed), me);
        drop(lock);
        assert_eq!(VIEWING.load(Ordering::Relaxed), 0);
        child.wait().expect("reaped");
        assert!(gone(pid), "a reaped child is gone");
    }
}

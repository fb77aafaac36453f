//! The guardian: a tiny process beside the tree whose only job is to kill the current
//! program's process group if the executor dies. It owns that process and the shared page
//! through which the executor names the current group; it never touches a program's memory.
//!
//! It also gives back the executor's share of the hugetlb pool (`hugetlb_pool`, docs/SEMANTICS.md
//! L7) if the executor dies before it could: the share is recorded in the same shared page.
//!
//! It lives in a process group of its own and ignores the signals a terminal or `timeout`
//! sends (SIGINT, SIGTERM, SIGHUP, SIGQUIT), so that a signal to the front's group, which takes
//! the executor, does not take it before it has done its job. If it dies anyway (SIGKILL), the
//! executor notices (`Coordinator::reap`) and stops: the run could no longer promise to clean
//! up after itself.

use nix::unistd::Pid;

/// A tiny process beside the tree whose only job is to kill the current program's process
/// group if the executor dies (PR_SET_PDEATHSIG): workers see end of file on their sockets
/// and exit by themselves, but one stuck inside an op (an emulator spinning on a fault) would
/// not. The executor tells it the current group through a shared page.
pub(super) struct Guardian {
    pgid: *mut i32,
    /// The guardian process; `None` when it could not be started.
    pub(super) pid: Option<Pid>,
}

impl Guardian {
    pub(super) fn start() -> Guardian {
        // SAFETY: a fresh shared anonymous page for the group and the pool's slot, kept for the
        // executor's life.
        // A raw system call, not libc's mmap: a libc under test (`--under LD_PRELOAD=...`)
        // that made it private would leave the guardian blind to the group and to the hugetlb
        // pool share (found by tests/faults.rs, shared-private: 8 pages left each run).
        let page = unsafe {
            libc::syscall(
                libc::SYS_mmap,
                std::ptr::null_mut::<libc::c_void>(),
                4096usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1i32,
                0i64,
            ) as *mut libc::c_void
        };
        if page == libc::MAP_FAILED {
            return Guardian {
                pgid: std::ptr::null_mut(),
                pid: None,
            };
        }
        let pgid = page as *mut i32;
        // SAFETY: getpid has no preconditions.
        let executor = unsafe { libc::getpid() };
        // SAFETY: the executor is single-threaded; the child only makes async-signal-safe
        // calls (prctl, setpgid, sigaction, sigwait, kill, _exit) and reads the shared page.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                // SAFETY: in the child: closing its copies of the executor's pipes, its own
                // process group, signal mask and disposition calls on this process, a volatile
                // read of the shared page (alive for the process's life), and _exit.
                unsafe {
                    libc::close(0);
                    libc::close(1);
                    libc::setpgid(0, 0);
                    let mut ign: libc::sigaction = std::mem::zeroed();
                    ign.sa_sigaction = libc::SIG_IGN;
                    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                        libc::sigaction(sig, &ign, std::ptr::null_mut());
                    }
                    let mut mask: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut mask);
                    libc::sigaddset(&mut mask, libc::SIGUSR1);
                    libc::sigprocmask(libc::SIG_BLOCK, &mask, std::ptr::null_mut());
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGUSR1);
                    // The executor may have died before the prctl: then this process was
                    // handed to a subreaper (not always init), and no signal will come.
                    if libc::getppid() == executor {
                        let mut sig = 0;
                        libc::sigwait(&mask, &mut sig);
                    }
                    let g = std::ptr::read_volatile(pgid);
                    if g > 0 {
                        libc::kill(-g, libc::SIGKILL);
                    }
                    crate::kernel::hugetlb_pool::give_back(pool_slot(pgid));
                    libc::_exit(0);
                }
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => Guardian {
                pgid,
                pid: Some(child),
            },
            Err(_) => Guardian { pgid, pid: None },
        }
    }

    /// The part of the shared page that names the executor's share of the hugetlb pool, which
    /// the guardian gives back if the executor dies first; null without a guardian.
    pub(super) fn pool_slot(&self) -> *mut crate::kernel::hugetlb_pool::Slot {
        if self.pgid.is_null() || self.pid.is_none() {
            return std::ptr::null_mut();
        }
        pool_slot(self.pgid)
    }

    /// Names the group to kill if the executor dies.
    pub(super) fn watch(&self, pgid: Pid) {
        if !self.pgid.is_null() {
            // SAFETY: the shared page lives as long as the executor.
            unsafe { std::ptr::write_volatile(self.pgid, pgid.as_raw()) };
        }
    }
}

/// The pool's slot in the shared page that starts at `page`: 8 bytes in, past the group.
fn pool_slot(page: *mut i32) -> *mut crate::kernel::hugetlb_pool::Slot {
    (page as usize + 8) as *mut crate::kernel::hugetlb_pool::Slot
}

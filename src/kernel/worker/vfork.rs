//! The VFORK request (docs/SEMANTICS.md T5, T6): the worker vforks through libc's `vfork` (so
//! an interposed libc stays in the path) a child that shares its memory, runs one pre-decoded
//! store and `_exit`s; the worker, suspended meanwhile, then reports how the child ended. The
//! child never talks to the coordinator (one socket per process stays the worker's): what it
//! must tell, its death, it leaves in statics, which are the parent's memory too. Nothing here
//! allocates, in the parent or in the child.
//!
//! Calling `vfork` from Rust is safe only in a narrow shape (rust-lang/libc#1596: the compiler
//! does not know the call returns twice): `spawn` has nothing but its argument, and the child
//! goes straight into `child`, which never returns and only reads the job and its own locals,
//! deeper on the stack than anything the parent still needs.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use super::calls::write;
use crate::kernel::protocol::ByteRange;
use crate::program::Pattern;

/// The child's one op: a store of `pattern` into `bytes` of `pages` pages from `addr` (a ramp
/// counts from `origin`).
pub(super) struct Job {
    pub addr: u64,
    pub pages: usize,
    pub bytes: ByteRange,
    pub pattern: Pattern,
    pub origin: u64,
    pub page_size: usize,
}

/// How the child died (0: it did not), written by its fault handler into memory it shares
/// with the parent.
static DEATH_SIGNAL: AtomicI32 = AtomicI32::new(0);
static DEATH_CODE: AtomicI32 = AtomicI32::new(0);
static DEATH_ADDR: AtomicU64 = AtomicU64::new(0);

/// How a vfork child ended.
pub(super) enum Ended {
    /// It `_exit`ed.
    Exited,
    /// It died of this signal, si_code and faulting address.
    Killed { signal: i32, code: i32, addr: u64 },
    /// vfork failed with this errno, or waiting for the child did.
    Failed(i32),
}

/// The child's SIGSEGV/SIGBUS handler: notes the death where the parent will read it, then
/// lets the signal kill the child (only async-signal-safe calls).
extern "C" fn on_child_fault(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: `info` is the kernel's siginfo for this signal.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as u64) };
    DEATH_CODE.store(code, Ordering::Relaxed);
    DEATH_ADDR.store(addr, Ordering::Relaxed);
    DEATH_SIGNAL.store(sig, Ordering::Release);
    // SAFETY: back to the default action, in the child's own signal table (vfork copies the
    // handlers: it does not pass CLONE_SIGHAND); returning re-executes the access, which kills.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
    }
}

/// The child: its own fault handlers (the worker's would report on the parent's socket), the
/// store, `_exit`.
#[inline(never)]
fn child(job: &Job) -> ! {
    for sig in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: a plain SA_SIGINFO handler in the child's own copy of the signal table.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_child_fault as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    write(
        job.addr,
        job.pages,
        job.bytes,
        job.pattern,
        job.origin,
        job.page_size,
    );
    // SAFETY: _exit, as a vfork child must (exit would run the parent's atexit handlers).
    unsafe { libc::_exit(0) }
}

/// vfork; the child runs `job` and never returns here.
#[inline(never)]
fn spawn(job: &Job) -> libc::pid_t {
    // SAFETY: the shape the module header describes: the child only enters `child`.
    #[allow(deprecated)]
    let pid = unsafe { libc::vfork() };
    if pid == 0 {
        child(job);
    }
    pid
}

/// Runs `job` in a vfork child and says how the child ended.
pub(super) fn vfork(job: &Job) -> Ended {
    DEATH_SIGNAL.store(0, Ordering::Relaxed);
    let pid = spawn(job);
    if pid < 0 {
        return Ended::Failed(nix::errno::Errno::last() as i32);
    }
    let mut status = 0;
    // SAFETY: waiting for this process's own child.
    let r = loop {
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if !(r < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR) {
            break r;
        }
    };
    if r < 0 {
        return Ended::Failed(nix::errno::Errno::last() as i32);
    }
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        // The handler's note, if it ran (it did for a fault); else the signal alone.
        if DEATH_SIGNAL.load(Ordering::Acquire) == signal {
            return Ended::Killed {
                signal,
                code: DEATH_CODE.load(Ordering::Relaxed),
                addr: DEATH_ADDR.load(Ordering::Relaxed),
            };
        }
        return Ended::Killed {
            signal,
            code: 0,
            addr: 0,
        };
    }
    Ended::Exited
}

//! The fault handler: a fatal SIGSEGV or SIGBUS in a worker is reported by the worker itself
//! (the replies built so far, then `Reply::Fault` with what the op in progress had produced),
//! the turn its message would have passed is passed, and then the signal is delivered for
//! real. This file owns the handler and the statics it reads (it cannot be given arguments);
//! the handler only makes async-signal-safe calls and allocates nothing. The statics but the
//! turn's are per process (`PerProc`): a clone child shares them with its parent (T30).

use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use super::per_proc::PerProc;
use super::turn::Turn;
use crate::kernel::protocol::{REPLY_HEAD, Reply};

/// The socket and reply buffer the fault handler reports through.
pub(super) static FAULT_FD: PerProc<AtomicI32> = PerProc([const { AtomicI32::new(-1) }; _]);
pub(super) static FAULT_REPLY: PerProc<AtomicPtr<u64>> =
    PerProc([const { AtomicPtr::new(std::ptr::null_mut()) }; _]);
/// Payload words produced so far by the op in progress.
pub(super) static PARTIAL: PerProc<AtomicUsize> = PerProc([const { AtomicUsize::new(0) }; _]);
/// The turn this process's current message passes at its end (0: none): if the process dies
/// first, the fault handler passes it, so that the batches after it still run.
pub(super) static PENDING_PASS: PerProc<AtomicU32> = PerProc([const { AtomicU32::new(0) }; _]);
/// The tree's turn word (`Turn`), for the fault handler.
pub(super) static TURN: AtomicPtr<AtomicU32> = AtomicPtr::new(std::ptr::null_mut());
/// Where in the reply area the op in progress builds its reply (earlier ops' replies of the
/// same message come before it).
pub(super) static FAULT_AT: PerProc<AtomicUsize> = PerProc([const { AtomicUsize::new(0) }; _]);

/// SIGSEGV/SIGBUS handler: report, then let the signal kill the process. Only async-signal-safe
/// calls (send, sigaction).
extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut c_void) {
    let area = FAULT_REPLY.load(Ordering::Relaxed);
    let fd = FAULT_FD.load(Ordering::Relaxed);
    let partial = PARTIAL.load(Ordering::Relaxed);
    let at = FAULT_AT.load(Ordering::Relaxed);
    let pending = PENDING_PASS.swap(0, Ordering::Relaxed);
    // While the physical channel runs the coordinator passes it, once this process is gone
    // (its pages unmapped), as for an exit (`serve`).
    if pending != 0 && !super::physical::pagemap_on() {
        Turn(TURN.load(Ordering::Relaxed)).pass(pending);
    }
    // SAFETY: `info` is the kernel's siginfo for this signal; `area` points at the reply area
    // of REPLY_AREA words, and `at + REPLY_HEAD + partial` never exceeds it (`serve` makes
    // room for an op's largest reply before it starts the op).
    unsafe {
        let head = Reply::Fault {
            signal: sig,
            code: (*info).si_code,
            addr: (*info).si_addr() as u64,
            partial,
        }
        .encode();
        std::ptr::copy_nonoverlapping(head.as_ptr(), area.add(at), REPLY_HEAD);
        // Retried: a lost report would turn this death into "vanished without a report".
        for _ in 0..100 {
            let n = libc::send(
                fd,
                area as *const c_void,
                (at + REPLY_HEAD + partial) * 8,
                libc::MSG_NOSIGNAL,
            );
            let e = *libc::__errno_location();
            if n >= 0 || !(e == libc::EINTR || e == libc::EAGAIN || e == libc::ENOBUFS) {
                break;
            }
        }
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
    }
    // Returning re-executes the faulting access, which now kills the process with `sig`.
}

/// Installs `on_fault` for SIGSEGV and SIGBUS.
pub(super) fn install_fault_handler() {
    for sig in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: a plain SA_SIGINFO handler that only calls async-signal-safe functions.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_fault as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

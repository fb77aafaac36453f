//! Whether `clone(CLONE_VM | SIGCHLD)` is accepted (docs/SEMANTICS.md T30, T34), probed once
//! at start by trying: a child on a stack of its own stores a word and exits. Linux always
//! accepts it; an emulator may refuse the flags (qemu-user runs CLONE_VM only as a thread, with
//! CLONE_THREAD and the rest: EINVAL), and then no program uses `clone`. Whether the child's
//! store was seen is not asked: a target that accepts the flags and copies the memory anyway
//! is a finding for the campaign to report, not a feature to turn off (tests/faults/libclonevm.c
//! is such a libc).

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};

/// The word the probe's child stores (it shares this process's memory, statics included).
static SEEN: AtomicU64 = AtomicU64::new(0);

extern "C" fn probe_child(_: *mut c_void) -> libc::c_int {
    SEEN.store(0x5a, Ordering::SeqCst);
    0
}

/// Whether a CLONE_VM child is made, and exits as a process.
pub fn clone_vm_works() -> bool {
    const STACK: usize = 64 << 10;
    SEEN.store(0, Ordering::SeqCst);
    // SAFETY: a fresh private anonymous mapping for the child's stack, unmapped below once
    // the child is gone.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return false;
    }
    let top = (stack as usize + STACK) & !15;
    // SAFETY: the child runs `probe_child` on the stack above, stores one static and
    // returns (libc's wrapper then `_exit`s with its value); nothing else runs in it.
    let pid = unsafe {
        libc::clone(
            probe_child,
            top as *mut c_void,
            libc::CLONE_VM | libc::SIGCHLD,
            std::ptr::null_mut(),
        )
    };
    let mut ok = false;
    if pid > 0 {
        let mut status = 0;
        let r = loop {
            // SAFETY: waiting for this process's own child.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if !(r < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR) {
                break r;
            }
        };
        ok = r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    }
    if pid <= 0 || ok {
        // SAFETY: the stack mapped above; the child is gone (or was never made).
        unsafe { libc::munmap(stack, STACK) };
    }
    ok
}

//! The worker's two futex calls, on words of its own address space (FUTEX_PRIVATE_FLAG: the
//! key is the address space and the address, so a `clone(CLONE_VM)` child, which shares the
//! address space, waits and wakes on the same words as its parent; a fork child's copy is a
//! word of its own), and the back-off of a wait on a word that nobody wakes. No allocation.

use std::sync::atomic::AtomicU32;

/// Waits while `word` holds `seen`, for at most `timeout`; `false` on the timeout.
pub(super) fn wait(word: &AtomicU32, seen: u32, timeout: libc::timespec) -> bool {
    // SAFETY: FUTEX_WAIT on a word we hold a reference to, while it still holds `seen`, for
    // at most the timeout on our stack.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const AtomicU32,
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            seen,
            &timeout as *const libc::timespec,
        )
    };
    r == 0 || nix::errno::Errno::last() != nix::errno::Errno::ETIMEDOUT
}

/// One look's pause in a wait on a word that nobody wakes (a racing thread's first store, the
/// views a late viewer waits for): the first `SPINS` looks yield, to catch what comes at
/// once; later ones sleep 20 µs, leaving the CPU to others (another job's tree, the front)
/// instead of yielding in a loop. `looks` counts the pauses so far.
pub(super) fn back_off(looks: &mut u32) {
    const SPINS: u32 = 64;
    if *looks < SPINS {
        *looks += 1;
        std::hint::spin_loop();
        // SAFETY: sched_yield only yields.
        unsafe { libc::sched_yield() };
    } else {
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 20_000,
        };
        // SAFETY: nanosleep reads `pause` and writes nothing (no remainder asked).
        unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
    }
}

/// Wakes up to `waiters` waiters on `word`.
pub(super) fn wake(word: &AtomicU32, waiters: i32) {
    // SAFETY: FUTEX_WAKE on a word we hold a reference to.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const AtomicU32,
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            waiters,
        );
    }
}

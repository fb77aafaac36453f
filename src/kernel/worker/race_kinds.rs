//! The rounds of the race kinds that are not stores or advice (docs/SEMANTICS.md T10...): a
//! `read` thread loads the page's last word again and again and keeps what it saw, the first
//! and the last value and how many loads were smaller than the one before, for its `stop` to
//! report; a `protect` thread `mprotect`s its page read-only and read-write in turn, the last
//! round read-write (T11); an `unmap` thread `munmap`s its page and maps a fresh private
//! anonymous one there in turn, the last round mapping it (T12); a `remap` thread moves its
//! page to the next page's address and back, the last round leaving it home (T13); a
//! `vmsplice` thread splices its page into a pipe of its own and drains it (T14). Called from `thread.rs`'s round; like it, nothing here allocates or
//! takes a lock (mprotect takes the mmap lock, which the kernel releases before returning).

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

/// What a reader saw, in its thread's control block (zeroed by mmap, reset at each start).
#[repr(C)]
#[derive(Default)]
pub(super) struct Seen {
    first: AtomicU64,
    last: AtomicU64,
    drops: AtomicU64,
    /// A `vmsplice` thread's digest of the first page it drained, but its last word (T14).
    body: AtomicU64,
}

impl Seen {
    /// Forgets what an earlier thread of the slot saw.
    pub(super) fn reset(&self) {
        for w in [&self.first, &self.last, &self.drops, &self.body] {
            w.store(0, Ordering::Relaxed);
        }
    }

    /// The first value, the last one and the drops (read once the thread is joined).
    pub(super) fn report(&self) -> [u64; 3] {
        [
            self.first.load(Ordering::Acquire),
            self.last.load(Ordering::Acquire),
            self.drops.load(Ordering::Acquire),
        ]
    }
}

/// Round `n` (1, 2, ...) of a reader of the word at `addr` (T10).
pub(super) fn read(seen: &Seen, addr: u64, n: u64) {
    // SAFETY: a load of the program's word that the race names (the validator keeps its
    // process from unmapping or protecting any page while the thread runs); a fault here is
    // the process's death, as a worker's own load's would be.
    let v = unsafe { std::ptr::read_volatile(addr as *const u64) };
    if n == 1 {
        seen.first.store(v, Ordering::Relaxed);
    } else if v < seen.last.load(Ordering::Relaxed) {
        seen.drops.fetch_add(1, Ordering::Relaxed);
    }
    seen.last.store(v, Ordering::Release);
}

/// Round `n` (1, 2, ...) of a `protect` thread on the page at `addr` (T11): read-only on odd
/// rounds, read-write on even ones and on the `last` (the one that starts after `stop` was
/// asked). `Err(errno)` if mprotect failed (the page is not mapped).
pub(super) fn protect(addr: u64, page_size: usize, n: u64, last: bool) -> Result<(), i32> {
    let prot = if last || n.is_multiple_of(2) {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    // SAFETY: mprotect of one page of the program's; the kernel checks the range, and the
    // validator keeps the process from storing anywhere while the thread runs.
    let r = unsafe { libc::mprotect(addr as *mut std::ffi::c_void, page_size, prot) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

/// The worker's hold on a thread that changes the layout, for the time it views itself: the
/// thread waits between two rounds while held (in its control block, zeroed by mmap).
#[repr(C)]
#[derive(Default)]
pub(super) struct Hold {
    /// Set by the worker: wait before the next round.
    held: AtomicU32,
    /// Set by the thread while it waits.
    waiting: AtomicU32,
}

impl Hold {
    /// Holds the thread and waits until it waits (or has ended: `failed` set).
    pub(super) fn hold(&self, failed: &AtomicI32) {
        self.held.store(1, Ordering::Release);
        while self.waiting.load(Ordering::Acquire) == 0 && failed.load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
            // SAFETY: sched_yield only yields.
            unsafe { libc::sched_yield() };
        }
    }

    /// Lets the thread go on, and waits until it has left its wait (so that a next `hold`
    /// does not take a stale `waiting` for a fresh one).
    pub(super) fn release(&self, failed: &AtomicI32) {
        self.held.store(0, Ordering::Release);
        while self.waiting.load(Ordering::Acquire) != 0 && failed.load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
            // SAFETY: sched_yield only yields.
            unsafe { libc::sched_yield() };
        }
    }

    /// In a fork's child, which has no thread: nothing is held nor waits (a fork made by an op
    /// thread while the worker held the racing one copies both words set).
    pub(super) fn forget(&self) {
        self.held.store(0, Ordering::Relaxed);
        self.waiting.store(0, Ordering::Relaxed);
    }

    /// In the thread, between rounds: waits while held.
    pub(super) fn wait_if_held(&self) {
        if self.held.load(Ordering::Acquire) == 0 {
            return;
        }
        self.waiting.store(1, Ordering::Release);
        while self.held.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
            // SAFETY: sched_yield only yields.
            unsafe { libc::sched_yield() };
        }
        self.waiting.store(0, Ordering::Release);
    }
}

/// Round `n` (1, 2, ...) of an `unmap` thread on the page at `addr` (T12): odd rounds
/// `munmap` it, even ones and the `last` map a fresh private anonymous read-write page there
/// (`MAP_FIXED`: zero-filled). `Err(errno)` if a call failed.
pub(super) fn unmap(addr: u64, page_size: usize, n: u64, last: bool) -> Result<(), i32> {
    let at = addr as *mut std::ffi::c_void;
    let ok = if last || n.is_multiple_of(2) {
        // SAFETY: a fixed mapping over the program's page that the race names (its process
        // maps and loads nothing meanwhile, and the page lies outside the harness's memory).
        let p = unsafe {
            libc::mmap(
                at,
                page_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        p == at
    } else {
        // SAFETY: unmapping the program's page that the race names (as above).
        unsafe { libc::munmap(at, page_size) == 0 }
    };
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

/// Round `n` (1, 2, ...) of a `remap` thread on the page at `addr` (T13): odd rounds move it
/// to the next page's address, even ones move it back (`mremap(MREMAP_MAYMOVE |
/// MREMAP_FIXED)`, which takes the page, its contents and its page-table entry along); the
/// `last` round, after an even one, leaves it where it is, at `addr`. `Err(errno)` if a call
/// failed.
pub(super) fn remap(addr: u64, page_size: usize, n: u64, last: bool) -> Result<(), i32> {
    let spare = addr + page_size as u64;
    let (from, to) = match (n.is_multiple_of(2), last) {
        (true, _) => (spare, addr),
        (false, false) => (addr, spare),
        (false, true) => return Ok(()),
    };
    // SAFETY: moving the program's page that the race names to its spare page, the next one of
    // the same mapping handle (the validator holds it in the handle's range), or back; its
    // process maps, loads and stores nothing meanwhile, and neither page lies in the harness's
    // memory.
    let p = unsafe {
        libc::mremap(
            from as *mut std::ffi::c_void,
            page_size,
            page_size,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            to as *mut std::ffi::c_void,
        )
    };
    if p == to as *mut std::ffi::c_void {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

/// Round `n` (1, 2, ...) of a `vmsplice` thread on the page at `addr` (T14): `vmsplice` of
/// the page into the thread's own (empty) pipe, then a read of it all back, in small pieces
/// into the thread's stack. The last word read is kept as a reader's load (first, last, a
/// drop when it went down); a page whose other bytes differ from the first one drained counts
/// as a drop too. `Err(errno)` if a call failed.
pub(super) fn vmsplice(
    seen: &Seen,
    addr: u64,
    page_size: usize,
    n: u64,
    pipe: [i32; 2],
) -> Result<(), i32> {
    let errno = || {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    let iov = libc::iovec {
        iov_base: addr as *mut std::ffi::c_void,
        iov_len: page_size,
    };
    // SAFETY: the pipe takes a reference to the program's page that the race names (the
    // kernel checks the range: EFAULT where it cannot read it); the iovec lives on our stack.
    let put = unsafe { libc::vmsplice(pipe[1], &iov, 1, 0) };
    if put < 0 {
        return Err(errno());
    }
    if put as usize != page_size {
        return Err(libc::EIO);
    }
    let body = page_size - crate::program::RACE_WORD;
    let mut buf = [0u8; 512];
    let mut word = [0u8; crate::program::RACE_WORD];
    let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
    let mut got = 0;
    while got < page_size {
        let want = buf.len().min(page_size - got);
        // SAFETY: reading into our own stack buffer, at most its length.
        let r = unsafe { libc::read(pipe[0], buf.as_mut_ptr() as *mut std::ffi::c_void, want) };
        if r <= 0 {
            return Err(if r < 0 { errno() } else { libc::EIO });
        }
        for (i, b) in buf[..r as usize].iter().enumerate() {
            let at = got + i;
            if at < body {
                digest = (digest ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            } else {
                word[at - body] = *b;
            }
        }
        got += r as usize;
    }
    let v = u64::from_le_bytes(word);
    if n == 1 {
        seen.first.store(v, Ordering::Relaxed);
        seen.body.store(digest, Ordering::Relaxed);
    } else if v < seen.last.load(Ordering::Relaxed) || digest != seen.body.load(Ordering::Relaxed) {
        seen.drops.fetch_add(1, Ordering::Relaxed);
    }
    seen.last.store(v, Ordering::Release);
    Ok(())
}

//! The rounds of the race kinds that are not stores or advice (docs/SEMANTICS.md T10...): a
//! `read` thread loads the page's last word again and again and keeps what it saw, the first
//! and the last value and how many loads were smaller than the one before, for its `stop` to
//! report. Called from `thread.rs`'s round; like it, nothing here allocates or takes a lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a reader saw, in its thread's control block (zeroed by mmap, reset at each start).
#[repr(C)]
#[derive(Default)]
pub(super) struct Seen {
    first: AtomicU64,
    last: AtomicU64,
    drops: AtomicU64,
}

impl Seen {
    /// Forgets what an earlier thread of the slot saw.
    pub(super) fn reset(&self) {
        for w in [&self.first, &self.last, &self.drops] {
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

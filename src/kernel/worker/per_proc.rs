//! Statics kept per process (docs/SEMANTICS.md T30): a `clone(CLONE_VM)` child shares every
//! static with its parent, so what must be a process's own (the fault handler's statics) is
//! held once per stack a process may run on: the ordinary one (the root's, a fork child's),
//! and each clone kit's (`clone_vm.rs`). A process finds its copy by where its stack pointer
//! is: async-signal-safe, no syscall, and a load and a branch until a kit is first taken.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::program::caps;

/// Clone kits: at most one per process handle.
pub(super) const KITS_MAX: usize = caps::MAX_PROCS;
/// Copies a `PerProc` holds: the ordinary stack's, then one per kit.
const COPIES: usize = KITS_MAX + 1;

/// A value with one copy per process that may share this address space.
pub(super) struct PerProc<T>(pub(super) [T; COPIES]);

/// Each kit's stack, `[lo, hi)` (0, 0 until made).
static STACK_LO: [AtomicU64; KITS_MAX] = [const { AtomicU64::new(0) }; KITS_MAX];
static STACK_HI: [AtomicU64; KITS_MAX] = [const { AtomicU64::new(0) }; KITS_MAX];
/// Whether a kit was taken in this address space.
static ANY_TAKEN: AtomicBool = AtomicBool::new(false);

/// Notes kit `k`'s stack.
pub(super) fn set_stack(k: usize, lo: u64, hi: u64) {
    STACK_LO[k].store(lo, Ordering::Relaxed);
    STACK_HI[k].store(hi, Ordering::Relaxed);
}

/// The top of kit `k`'s stack.
pub(super) fn stack_top(k: usize) -> u64 {
    STACK_HI[k].load(Ordering::Relaxed)
}

/// Notes that a kit was taken: from now on processes pick their copy by stack.
pub(super) fn taken() {
    ANY_TAKEN.store(true, Ordering::Release);
}

/// Which copy the calling process uses: 0 on an ordinary stack, `k + 1` on kit `k`'s.
/// Async-signal-safe.
#[inline]
fn me() -> usize {
    if !ANY_TAKEN.load(Ordering::Relaxed) {
        return 0;
    }
    let probe = 0u8;
    let sp = std::ptr::addr_of!(probe) as u64;
    for k in 0..KITS_MAX {
        if sp >= STACK_LO[k].load(Ordering::Relaxed) && sp < STACK_HI[k].load(Ordering::Relaxed) {
            return k + 1;
        }
    }
    0
}

impl<T> std::ops::Deref for PerProc<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0[me()]
    }
}

//! Op threads (docs/SEMANTICS.md T20 to T24): a process starts a thread that waits for ops, an
//! op is run by that thread, the thread ends. All threads of a process share one address space
//! (`man pthreads(7)`, `clone(2)` CLONE_VM), so an op run by a thread is the process's op: the
//! model applies it to the process's space as it applies the process's own, and nothing here
//! changes that. What differs is only what these three ops do to memory, which is nothing:
//!
//! - [T20] `pN thread tK` starts a thread (its stack is the harness's, outside the program's
//!   mappings) and `tK end` ends it: neither maps, unmaps nor stores anything of the program;
//! - [T21] `pN by tK` hands the next op to the thread: the op's effect is the process's, whatever
//!   CPU the thread runs on (the kernel flushes every CPU's TLB that may hold a stale entry
//!   before munmap or mprotect returns);
//! - [T22] a `fork` run by a thread copies the process's whole address space at the moment of
//!   the fork, exactly as the main thread's fork does (`fork.rs`), and gives the child only the
//!   calling thread: the parent's other threads, racing ones (T2) and op threads alike, do not
//!   run in the child, whose later ops are its own (`thread_ops.rs` in `program/op` drops the
//!   parent's threads from the child);
//! - [T23] copy-on-write holds across CPUs: after a thread's fork, the main thread's stores (on
//!   another CPU, where it may hold a writable TLB entry of the page from before the fork) land
//!   in the parent's copy only; the child keeps the bytes of the fork's moment;
//! - [T24] a fatal signal in an op run by a thread ends the whole process, as in the main thread
//!   (T4): the model's death of a process is the same.

use super::Model;
use crate::program::Op;
use crate::program::outcome::Outcome;

impl Model {
    /// `thread`, `by` and `end`: they change no memory of the program (T20, T21).
    pub(super) fn thread_op(&mut self, op: &Op) -> Outcome {
        debug_assert!(matches!(
            op,
            Op::Thread { .. } | Op::By { .. } | Op::End { .. }
        ));
        Outcome::Done
    }
}

//! vfork (docs/SEMANTICS.md T5, T6): the child shares its parent's address space (kernel/fork.c
//! `copy_mm()` with CLONE_VM takes a reference to the parent's mm, it copies nothing), so its
//! stores are the parent's own stores, on private pages as on shared ones, with no
//! copy-on-write between the two; the parent is suspended until the child `_exit`s. The child
//! has no handle: it lives only inside its `vfork` op, and its exit (or death) releases none of
//! the memory, which is still the parent's.

use super::Model;
use crate::program::outcome::Outcome;
use crate::program::{Pattern, ProcId, Span};

impl Model {
    /// `proc` vforks a child that stores `pattern` into `span` at `base` and `_exit`s. The
    /// stores land in `proc`'s own space, as `proc`'s own write would (T5): a private page is
    /// not copied for the child, and one that `proc` shares copy-on-write with a fork relative
    /// is broken for `proc`, as `proc`'s own store would. If the child faults it dies there,
    /// after the pages before the faulting one; the outcome is its death, and `proc` (and the
    /// memory) lives on (T6).
    pub(super) fn vfork(
        &mut self,
        proc: ProcId,
        base: u64,
        span: Span,
        pattern: Pattern,
    ) -> Outcome {
        // [T5] the same space, not a copy: `write()` on the parent's pages.
        // [T6] a death in `write()` is the child's: the caller does not end `proc`.
        self.write(proc, base, span, pattern)
    }
}

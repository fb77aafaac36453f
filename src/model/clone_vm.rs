//! `clone(CLONE_VM)` children (docs/SEMANTICS.md T30 to T34): a process of its own (its own
//! pid, its own exit, its own signals: no CLONE_THREAD) that runs in its parent's address
//! space. kernel/fork.c `copy_mm()` with CLONE_VM takes a reference to the parent's `mm`
//! (`mmget()`) instead of copying it (`dup_mm()`), so the model gives the child its parent's
//! `Process::mm`, not a copy: every map, unmap, protect, advice, remap and store by either is
//! the other's too, with no copy-on-write between them [T30, T31]. A fork by either copies the
//! shared space into one of the child's own (`fork.rs`) [T32]. Exit or death of one user
//! releases nothing; the last user's tears the space down (`end()` in `fork.rs`,
//! `mmput()`) [T33].

use super::{Life, Model};
use crate::program::ProcId;
use crate::program::outcome::Outcome;

impl Model {
    /// `proc` starts `child` in its own address space [T30].
    pub(super) fn clone_vm(&mut self, proc: ProcId, child: ProcId) -> Outcome {
        let mm = self.procs[proc.0 as usize].mm;
        let c = &mut self.procs[child.0 as usize];
        c.life = Life::Alive;
        c.parent = Some(proc);
        c.mm = mm;
        Outcome::Done
    }

    /// How many live processes run in `proc`'s address space (`proc` included if alive):
    /// `mm_users` [T33].
    pub(super) fn mm_users(&self, proc: ProcId) -> usize {
        let mm = self.procs[proc.0 as usize].mm;
        self.procs
            .iter()
            .filter(|p| p.mm == mm && p.life == Life::Alive)
            .count()
    }

    /// Whether another live process runs in `proc`'s address space [T31]: the users of one
    /// space take their views one after the other, so a shared page one of them saw present
    /// may have been faulted in by the other's view after a third process read its words.
    pub fn shares_mm(&self, proc: ProcId) -> bool {
        self.mm_users(proc) > 1
    }

    /// Whether `proc` is the first live user of its address space: the one the physical
    /// channel's predictions stand for [T31] (pagemap and smaps read the mm, not the process).
    pub(super) fn mm_first_user(&self, proc: ProcId) -> bool {
        let mm = self.procs[proc.0 as usize].mm;
        self.procs
            .iter()
            .position(|p| p.mm == mm && p.life == Life::Alive)
            == Some(proc.0 as usize)
    }
}

#[cfg(test)]
#[path = "clone_vm_tests.rs"]
mod tests;

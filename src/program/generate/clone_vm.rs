//! The `clone(CLONE_VM)` decoder (docs/SEMANTICS.md T30 to T34), reached from the threads
//! family (`threads.rs`): a raw op may start a process in the address space of a live one
//! (where the target runs CLONE_VM children, `Features::clone_vm`). The child then takes
//! part in the classic ops that follow like any process (the newest processes are picked
//! most, `Builder::pick_proc`): its writes, maps, unmaps, protections, advice, remaps, forks
//! and exit are its parent's address space's. A program that used the malloc family, races or
//! the pipe is refused a `clone` by the validator (T34): then nothing is pushed here.

use super::{Builder, RawOp};
use crate::program::{Op, ProcId, caps};

impl Builder {
    /// Starts a clone child of a live process; false if the target has no CLONE_VM children,
    /// the caps are reached, or the validator refuses it.
    pub(super) fn add_clone_vm(&mut self, r: &RawOp) -> bool {
        if !self.config.features.clone_vm
            || self.live.len() >= caps::MAX_LIVE
            || self.next_proc as usize >= caps::MAX_PROCS
        {
            return false;
        }
        let p = self.pick_proc(r.who);
        let child = ProcId(self.next_proc);
        if !self.push(Op::CloneVm { proc: p, child }) {
            return false;
        }
        self.next_proc += 1;
        self.live.push(child);
        // The same mappings, not copies: what either holds the other reaches too.
        self.holds[child.0 as usize] = self.holds[p.0 as usize];
        true
    }
}

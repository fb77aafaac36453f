//! fork and exit: the child's copy of the address space (kernel/fork.c `dup_mmap`, mm/memory.c
//! `copy_page_range`) and the end of one (mm/mmap.c `exit_mmap`). Never writes a frame: a
//! copy is made by the first write after fork, in `memory.rs`.

use super::frame::FrameId;
use super::space::{AddressSpace, Alts, PageBacking, flag};
use super::{Life, Model, Process};
use crate::program::ProcId;
use crate::program::outcome::Outcome;

impl Model {
    /// fork: `child` is born with a copy of `proc`'s address space (`dup_mmap`).
    pub(super) fn fork(&mut self, proc: ProcId, child: ProcId) -> Outcome {
        let space = self.dup_mmap(proc);
        // A space of its own, even if `proc` shares one with a clone child (T32).
        let mm = child.0 as usize;
        self.spaces[mm] = space;
        self.procs[child.0 as usize] = Process {
            life: Life::Alive,
            parent: Some(proc),
            mm,
        };
        self.hugetlb_fork(child);
        Outcome::Done
    }

    /// The child's pages: the parent's, sharing each private frame copy-on-write (B2, B3),
    /// except DONTFORK ones (F4); WIPEONFORK pages arrive as fresh zero pages without guards
    /// (B4, F5, F8), the flag kept; other guards are inherited (F8).
    fn dup_mmap(&mut self, proc: ProcId) -> AddressSpace {
        // After fork no private page is anyone's own: both sides copy on their next write.
        for pte in self.space_mut(proc).ptes.values_mut() {
            pte.flags &= !flag::EXCLUSIVE;
        }
        let parent = self.space(proc).clone();
        let mut space = AddressSpace::default();
        for (vpn, pte) in parent.ptes {
            if pte.flags & flag::DONTFORK != 0 {
                continue;
            }
            let mut pte = pte;
            if pte.flags & flag::WIPEONFORK != 0 {
                pte.backing = PageBacking::Private(FrameId::ZERO);
                pte.alts = Alts::default();
                pte.flags &= !(flag::GUARD | flag::LAZY);
            }
            self.take(&pte);
            space.ptes.insert(vpn, pte);
        }
        space
    }

    /// Exit or death: the address space goes as if unmapped (B6), as `exit_mmap` does; children
    /// live on.
    pub(super) fn end(&mut self, proc: ProcId, life: Life) {
        // Only the address space's last user tears it down (T33, `mmput()`).
        if self.mm_users(proc) == 1 {
            let space = std::mem::take(self.space_mut(proc));
            for pte in space.ptes.values() {
                self.release(pte);
            }
        }
        self.procs[proc.0 as usize].life = life;
        // The pipe goes with the last process that holds it (every process does).
        if self.procs.iter().all(|p| p.life != Life::Alive) {
            for page in std::mem::take(&mut self.pipe) {
                for f in page.frames {
                    self.frames.release(f);
                }
            }
        }
    }
}

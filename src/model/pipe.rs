//! The program's pipe, and writes that go through the kernel rather than through a mapping:
//! vmsplice of a page into the pipe and reading it back, K3 (fs/splice.c, fs/pipe.c); pokes,
//! writes forced through /proc/self/mem (fs/proc/base.c `mem_rw`, FOLL_FORCE) or made by
//! process_vm_writev (mm/process_vm_access.c), E6 and K1. Never raises a signal: where a load
//! or store would fault, these calls return an errno.

use super::errno::*;
use super::frame::FrameId;
use super::space::{PageBacking, flag};
use super::{Model, observed_errno};
use crate::program::outcome::{Outcome, PROT_R, PROT_W};
use crate::program::{Pattern, ProcId, Span, Via};

/// Buffers in a pipe of the default size (PIPE_DEF_BUFFERS): one vmspliced page each.
const PIPE_BUFFERS: usize = 16;

/// One vmspliced page in the pipe.
#[derive(Clone, Debug)]
pub(super) struct PipePage {
    /// The frames it may show (more than one where the page's contents were open).
    pub frames: Vec<FrameId>,
    /// Who spliced it, and where: that process's own later writes may show through the pipe.
    pub owner: (ProcId, u64),
}

impl Model {
    /// vmsplice of one page into the pipe (CVE-2020-29374 class, K3): the pipe takes a
    /// reference to the page as it is. A later write by a fork relative goes to a copy and is
    /// never seen through the pipe; a later write by the process itself to a page it owns
    /// (EXCLUSIVE) goes in place and is. Reads the page as get_user_pages does: EFAULT where a
    /// load would fault; a full pipe is EAGAIN (the pipe is non-blocking).
    pub(super) fn vmsplice(
        &mut self,
        proc: ProcId,
        base: u64,
        page: u16,
        observed: Option<&Outcome>,
    ) -> Outcome {
        let vpn = self.vpn(base) + page as u64;
        if self.fault(proc, vpn, PROT_R).is_some() {
            return Outcome::Failed { errno: EFAULT };
        }
        // A write-only page (x86) is read by get_user_pages only if its page-table entry is
        // already there; faulting it in for a read is refused (no VM_READ): EFAULT. Whether it
        // is there depends on earlier loads and forks, which the model does not track, so both
        // outcomes are allowed (measured: both happen on 6.18).
        let write_only = self
            .space(proc)
            .get(vpn)
            .is_some_and(|p| p.prot & PROT_R == 0);
        if write_only && observed_errno(observed) == Some(EFAULT) {
            return Outcome::Failed { errno: EFAULT };
        }
        if self.pipe.len() >= PIPE_BUFFERS {
            return Outcome::Failed { errno: EAGAIN };
        }
        let pte = *self.space(proc).get(vpn).expect("checked");
        let mut candidates = Vec::new();
        match pte.backing {
            PageBacking::Private(f) => {
                candidates.push(f);
                candidates.extend(pte.alts.iter());
                if pte.flags & flag::LAZY != 0 {
                    candidates.push(FrameId::ZERO);
                }
            }
            // A read fault on shmem allocates the page in the object: later writes by any
            // mapper land in that very page, so the pipe sees them.
            PageBacking::Object { obj, index } => candidates.push(self.shmem_fault(obj, index)),
        }
        for f in &candidates {
            self.frames.take(*f);
        }
        self.pipe.push_back(PipePage {
            frames: candidates,
            owner: (proc, vpn),
        });
        Outcome::Done
    }

    /// `proc`'s page at `from` moved to `to` (mremap): pipe pages it spliced from there are
    /// now its page at `to`.
    pub(super) fn pipe_page_moved(&mut self, proc: ProcId, from: u64, to: u64) {
        for page in self.pipe.iter_mut() {
            if page.owner == (proc, from) {
                page.owner = (proc, to);
            }
        }
    }

    /// Reads the oldest page out of the pipe: EAGAIN when it is empty. Any of the page's
    /// allowed views may show: the frames it referred to, and the splicing process's own
    /// later copies of the page (whether its write went in place depends on whether the kernel
    /// had made the page its own: a read-only pin, such as the snapshot's process_vm_readv,
    /// unshares a copy-on-write page, FAULT_FLAG_UNSHARE since 5.19; measured). A fork
    /// relative's write is never one of them (K3).
    pub(super) fn pipe_read(&mut self, observed: Option<&Outcome>) -> Outcome {
        let Some(page) = self.pipe.pop_front() else {
            return Outcome::Failed { errno: EAGAIN };
        };
        let full = 0..self.page_size as usize;
        let seen = match observed {
            Some(Outcome::Read { digests }) => digests.first().copied(),
            _ => None,
        };
        let digests: Vec<u64> = page
            .frames
            .iter()
            .map(|f| self.digest_of(*f, full.clone()))
            .collect();
        let d = match seen {
            Some(s) if digests.contains(&s) => s,
            _ => digests[0],
        };
        for f in page.frames {
            self.frames.release(f);
        }
        Outcome::Read { digests: vec![d] }
    }

    /// A write through the kernel, page by page; the first page it cannot write ends it with
    /// an errno, the pages before it written. /proc/self/mem (`mem`) forces the write: where
    /// the mapping is not writable, a private page is copied and written for this process only,
    /// a shared one is refused, EIO (E6, K1: it must never reach another process or the zero
    /// page); process_vm_writev (`vm`) writes only where the mapping allows, else EFAULT.
    /// Neither raises a signal: unmapped, guard and past-the-end pages are errors.
    pub(super) fn poke(
        &mut self,
        proc: ProcId,
        base: u64,
        span: Span,
        pattern: Pattern,
        via: Via,
    ) -> Outcome {
        let errno = match via {
            Via::Mem => EIO,
            Via::Vm => EFAULT,
        };
        let base_vpn = self.vpn(base);
        for page in span.page_range().pages() {
            let vpn = base_vpn + page as u64;
            let Some(pte) = self.space(proc).get(vpn).copied() else {
                return Outcome::Failed { errno };
            };
            let writable = pte.prot & PROT_W != 0
                || (via == Via::Mem && self.features.force_write && !pte.kind.is_shared());
            if !writable || pte.flags & flag::GUARD != 0 || self.past_end(&pte) {
                return Outcome::Failed { errno };
            }
            self.store(proc, vpn, page, span, pattern);
        }
        Outcome::Done
    }
}

//! Huge-page backings of anonymous memory, as in mm/huge_memory.c and mm/khugepaged.c:
//! where the kernel puts a PMD-sized anonymous mapping (L1), what a transparent huge page
//! changes in what processes see (nothing: L2), MADV_COLLAPSE (L3), and which pages a huge
//! page may back (`huge_possible`, for the physical channel, L4).
//!
//! THP never changes contents: a huge page is allocated zeroed or copied, split into base
//! pages when a range boundary cuts it, and copied a base page at a time when a write breaks
//! copy-on-write after fork (docs/SEMANTICS.md L2). So the base-page rules of `memory.rs`,
//! `fork.rs`, `mprotect.rs`, `mremap.rs` and `madvise.rs` are exact for THP-backed memory too,
//! and this file adds only what is THP's own: placement, collapse, and where a huge page may
//! be. hugetlb is not modelled (docs/SEMANTICS.md L5).

use super::errno::*;
use super::space::flag;
use super::{Model, ModelError, observed_errno};
use crate::program::outcome::Outcome;
use crate::program::{MapId, PageRange, ProcId};

impl Model {
    /// Pages in one PMD: what one page-table page maps, `page_size / 8` entries (512 on a
    /// 4 KiB kernel: 2 MiB).
    pub fn pmd_pages(&self) -> u64 {
        self.page_size / 8
    }

    /// [L1] A private anonymous mapping placed by the kernel (no address, or an mremap move it
    /// chose the place of) whose length is a whole number of PMDs starts on a PMD boundary,
    /// where the kernel aligns such mappings (`Features::thp_align`, probed): mm/mmap.c
    /// `__get_unmapped_area()` calls `thp_get_unmapped_area_vmflags()` for file-less mappings
    /// (efa7df3e3bb5, 6.7; limited to PMD multiples by d4148aeab412, 6.12). The callers pass
    /// only private anonymous memory here: shared memory is aligned by shmem only where shmem
    /// THP is enabled, and private /dev/zero on 6.18 but not on Debian's 6.12.118 (found by
    /// tests/vm.rs). Measured on 6.18: 50 of 50 for private mappings and mremap moves growing
    /// to 2 MiB; lengths of 511, 513, 600 and 1023 pages never.
    pub(super) fn check_thp_placement(
        &self,
        map: MapId,
        addr: u64,
        pages: u64,
    ) -> Result<(), ModelError> {
        let pmd = self.pmd_pages();
        if !self.features.thp_align || pages == 0 || !pages.is_multiple_of(pmd) {
            return Ok(());
        }
        if self.vpn(addr).is_multiple_of(pmd) && addr.is_multiple_of(self.page_size) {
            return Ok(());
        }
        Err(ModelError::Placement {
            map,
            addr,
            reason: format!(
                "is not on a PMD boundary ({} KiB), though its length is a whole number of PMDs and the kernel chose the place (docs/SEMANTICS.md L1)",
                pmd * self.page_size / 1024
            ),
        })
    }

    /// [L3] MADV_COLLAPSE on `pages` of the mapping at `base`: contents never change, and
    /// neither do the VMA's flags (mm/khugepaged.c `madvise_collapse()`, 7d8faaf15545, 6.1).
    /// Whether a PMD is collapsed, and so the result, depends on what the kernel has at that
    /// moment (page tables not yet allocated, a page with an unexpected reference: EAGAIN since
    /// ae63c898f400, no memory for a huge page: ENOMEM), so any of 0, EINVAL, EAGAIN and ENOMEM
    /// is allowed and learnt from the observation; a VMA with MADV_NOHUGEPAGE is never
    /// collapsed (`thp_vma_allowable_order()` refuses it: EINVAL, measured on 6.18 for a whole
    /// PMD and for one page of it). Run alone, the model says 0, or EINVAL where a page is
    /// NOHUGEPAGE.
    pub(super) fn madvise_collapse(
        &mut self,
        proc: ProcId,
        base: u64,
        pages: PageRange,
        observed: Option<&Outcome>,
    ) -> Outcome {
        let start = self.vpn(base) + pages.start as u64;
        let refused = (start..start + pages.len() as u64).any(|vpn| {
            self.space(proc)
                .get(vpn)
                .is_some_and(|p| p.flags & flag::NOHUGEPAGE != 0)
        });
        // Every PMD the range touches may now be (or have been) one huge page, whatever the
        // result: a range of several PMDs may fail after collapsing the first (I9).
        let pmd = self.pmd_pages();
        let first = start - start % pmd;
        let end = (start + pages.len() as u64).next_multiple_of(pmd);
        for vpn in first..end {
            if let Some(p) = self.space_mut(proc).get_mut(vpn)
                && p.flags & flag::NOHUGEPAGE == 0
            {
                p.flags |= flag::HUGE_RESIDUE;
            }
        }
        match observed_errno(observed) {
            Some(e @ (EINVAL | EAGAIN | ENOMEM)) => Outcome::Failed { errno: e },
            _ if refused => Outcome::Failed { errno: EINVAL },
            _ => {
                // Which pages the collapse copied: learnt from the view after it (I25).
                self.note_collapse(proc, start, start + pages.len() as u64);
                Outcome::Done
            }
        }
    }

    /// [L4] Whether page `vpn` of `proc` may be backed by a PMD-sized transparent huge page
    /// now or after a later fault or collapse: the whole naturally aligned PMD around it is
    /// mapped by one VMA of one kind and protection, with no guard and no MADV_NOHUGEPAGE, and
    /// (`advised`) with MADV_HUGEPAGE where THP is `enabled=madvise`. For the physical channel:
    /// where this is false, every page of the PMD is a base page or absent; where true, either.
    pub fn huge_possible(&self, proc: ProcId, vpn: u64, advised: bool) -> bool {
        let pmd = self.pmd_pages();
        let first = vpn - vpn % pmd;
        let space = self.space(proc);
        let Some(head) = space.get(first) else {
            return false;
        };
        // Every page of the PMD mapped (as many entries as pages in the range), and each like
        // the first.
        let mut mapped = 0;
        for p in space.ptes.range(first..first + pmd).map(|(_, p)| p) {
            let like = p.vma == head.vma
                && p.kind == head.kind
                && p.prot == head.prot
                && p.flags & (flag::GUARD | flag::NOHUGEPAGE) == 0
                && (!advised || p.flags & flag::HUGEPAGE != 0);
            if !like {
                return false;
            }
            mapped += 1;
        }
        mapped == pmd
    }
}

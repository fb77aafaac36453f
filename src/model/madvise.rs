//! madvise, as in mm/madvise.c: the walk over the range (F0), each advice's rules (F1-F9), and
//! the errnos of bad arguments. Never maps or unmaps a page.

use super::errno::*;
use super::frame::FrameId;
use super::space::{Alts, PageBacking, Pte, flag};
use super::{Model, observed_errno};
use crate::program::outcome::{Outcome, PROT_R, PROT_W};
use crate::program::{Advice, BadArg, MapKind, PageRange, ProcId};

impl Model {
    /// madvise, page by page in address order (F0): a hole is skipped and reported as ENOMEM
    /// at the end; an advice a VMA rejects stops the walk there with its errno, the pages
    /// before it advised (madvise_walk_vmas). POPULATE stops at a hole (ENOMEM) too.
    pub(super) fn madvise(
        &mut self,
        proc: ProcId,
        base: u64,
        pages: PageRange,
        advice: Advice,
        observed: Option<&Outcome>,
    ) -> Outcome {
        // A length of 0 names nothing: success before any VMA is looked at, whatever the
        // advice and whatever is mapped there (madvise_should_skip(); F14).
        if pages.is_empty() {
            return Outcome::Done;
        }
        // Hugetlb VMAs take their own rules (L10): `hugetlb.rs`.
        if let Some(outcome) = self.madvise_hugetlb(proc, base, pages, advice, observed) {
            return outcome;
        }
        if advice == Advice::Collapse {
            return self.madvise_collapse(proc, base, pages, observed);
        }
        let start = self.vpn(base) + pages.start as u64;
        let mut renamed = Vec::new();
        let mut hole = false;
        for vpn in start..start + pages.len() as u64 {
            let Some(pte) = self.space(proc).get(vpn).copied() else {
                if matches!(advice, Advice::PopulateRead | Advice::PopulateWrite) {
                    return Outcome::Failed { errno: ENOMEM };
                }
                hole = true;
                continue;
            };
            if let Err(errno) = self.madvise_vma_behavior(proc, vpn, &pte, advice, observed) {
                return Outcome::Failed { errno };
            }
            // A VMA flag splits the range off (see `split_vma`).
            if matches!(
                advice,
                Advice::DontFork
                    | Advice::DoFork
                    | Advice::WipeOnFork
                    | Advice::KeepOnFork
                    | Advice::HugePage
                    | Advice::NoHugePage
            ) {
                let vma = self.split_vma(&mut renamed, pte.vma);
                if let Some(p) = self.space_mut(proc).get_mut(vpn) {
                    p.vma = vma;
                }
            }
        }
        if hole {
            Outcome::Failed { errno: ENOMEM }
        } else {
            Outcome::Done
        }
    }

    /// One advice on one mapped page `vpn` of `proc` (as it was before: `pte`), as
    /// madvise_vma_behavior applies it to a VMA; an errno stops the walk.
    pub(super) fn madvise_vma_behavior(
        &mut self,
        proc: ProcId,
        vpn: u64,
        pte: &Pte,
        advice: Advice,
        observed: Option<&Outcome>,
    ) -> Result<(), i32> {
        let shared = pte.kind.is_shared();
        match advice {
            // Private: zero on next touch, in this process only; shared: the PTE goes, the
            // object keeps the data (F1). Guards stay (F8).
            Advice::DontNeed => {
                if !shared {
                    self.drop_private(proc, vpn);
                }
            }
            // Private only, /dev/zero private included (F2, C1).
            Advice::Free => {
                if shared {
                    return Err(EINVAL);
                }
                let untouched =
                    pte.backing == PageBacking::Private(FrameId::ZERO) && pte.alts.is_empty();
                if !untouched {
                    self.set_flag(proc, vpn, flag::LAZY, true);
                }
            }
            // Shared only: punches a hole in the object, every mapper reads zero (F3).
            // On a read-only mapping, old kernels say EACCES and 6.18 succeeds: both allowed.
            // A private /dev/zero mapping has a file, so it passes the "no file" test and
            // fails the "shared and may write" one: EACCES (madvise_remove(); measured).
            Advice::Remove => {
                if pte.kind == MapKind::PrivateZero {
                    return Err(EACCES);
                }
                if !shared {
                    return Err(EINVAL);
                }
                if pte.prot & PROT_W == 0 && observed_errno(observed) == Some(EACCES) {
                    return Err(EACCES);
                }
                if let PageBacking::Object { obj, index } = pte.backing
                    && let Some(&f) = self.object(obj).frames.get(index as usize)
                {
                    self.frames.release(f);
                    self.object_mut(obj).frames[index as usize] = FrameId::ZERO;
                }
            }
            // (F4)
            Advice::DontFork => self.set_flag(proc, vpn, flag::DONTFORK, true),
            Advice::DoFork => self.set_flag(proc, vpn, flag::DONTFORK, false),
            // Private anonymous only: EINVAL on shared and on any file-backed VMA, private
            // /dev/zero included (F5, C1).
            Advice::WipeOnFork => {
                if pte.kind != MapKind::Private {
                    return Err(EINVAL);
                }
                self.set_flag(proc, vpn, flag::WIPEONFORK, true);
            }
            Advice::KeepOnFork => self.set_flag(proc, vpn, flag::WIPEONFORK, false),
            // Content never changes; permission EINVAL, guard or SIGBUS EFAULT (F6).
            Advice::PopulateRead | Advice::PopulateWrite => {
                let need = if advice == Advice::PopulateRead {
                    pte.prot & PROT_R != 0
                } else {
                    pte.prot & PROT_W != 0
                };
                if !need {
                    return Err(EINVAL);
                }
                if pte.flags & flag::GUARD != 0 || self.past_end(pte) {
                    return Err(EFAULT);
                }
                // Contents unchanged, but a write fault's copy-on-write break (I6).
                if advice == Advice::PopulateWrite && !shared {
                    self.populate_write(proc, vpn);
                }
            }
            // Content unchanged (F7).
            Advice::Cold => {}
            // No effect on contents; VMA flags, so they split VMAs, which mremap sees (F9;
            // measured).
            // `flag::HUGEPAGE` alone marks where a huge page may be (I20); HUGE_RESIDUE is for
            // what a collapse may have taken (I22).
            Advice::HugePage => {
                self.set_flag(proc, vpn, flag::NOHUGEPAGE, false);
                self.set_flag(proc, vpn, flag::HUGEPAGE, true);
            }
            // MADV_NOHUGEPAGE splits nothing: a huge page, or the huge zero page a read fault
            // mapped, stays where the range could have one until now, and a later write fault
            // on the huge zero page may still allocate a whole huge page. So such a page keeps
            // the physical channel open, as after a collapse (L4, I9). Measured on 6.18 (C
            // probe: a 2 MiB-aligned MADV_HUGEPAGE range read once, then MADV_NOHUGEPAGE):
            // pages 0 and 7 still "present, file, pfn 0x1f8400 / 0x1f8407" (the huge zero
            // page, which pagemap marks as a file page), and after a store to page 3, page 4
            // "present, exclusive, pfn 0x133204" (found by `cowcheck run --time 120 --seed 4`:
            // `map 512; advise hugepage; remap 1024 maymove; fork; advise nohugepage`).
            Advice::NoHugePage => {
                if pte.flags & flag::HUGEPAGE != 0 || self.huge_possible(proc, vpn, false) {
                    let pmd = self.pmd_pages();
                    let first = vpn - vpn % pmd;
                    for v in first..first + pmd {
                        if let Some(p) = self.space_mut(proc).get_mut(v)
                            && (v == vpn || p.flags & flag::NOHUGEPAGE == 0)
                        {
                            p.flags |= flag::HUGE_RESIDUE;
                        }
                    }
                }
                self.set_flag(proc, vpn, flag::HUGEPAGE, false);
                self.set_flag(proc, vpn, flag::NOHUGEPAGE, true);
            }
            // Content unchanged. A lazily freed page stays what it was, may-be-dropped:
            // docs/SEMANTICS.md F7 says PAGEOUT discards it, but only a folio already on the
            // LRU is reclaimed, and MADV_FREE leaves it in a per-CPU batch until that CPU drains
            // it, so PAGEOUT from another CPU skips it. Measured on 6.18 (C probe, 50 tries
            // each): free and pageout on one CPU, dropped 50/50; pageout pinned to the other
            // CPU, kept 50/50; after fork, in the child, kept 49/50 on the other CPU and
            // dropped 50/50 on the same. Found by the fuzzer (free, fork, exit, pageout).
            Advice::PageOut => {}
            // Private: the data is dropped (reads 0 after removal); shared: the object
            // keeps it (F8).
            Advice::GuardInstall => {
                if shared && !self.features.guard_shared {
                    return Err(EINVAL);
                }
                if !shared {
                    self.drop_private(proc, vpn);
                }
                self.set_flag(proc, vpn, flag::GUARD, true);
            }
            Advice::GuardRemove => self.set_flag(proc, vpn, flag::GUARD, false),
            // A range of its own (L3): `madvise_collapse`, before the walk.
            Advice::Collapse => {}
        }
        Ok(())
    }

    fn set_flag(&mut self, proc: ProcId, vpn: u64, f: u8, on: bool) {
        let p = self.space_mut(proc).get_mut(vpn).expect("mapped");
        if on {
            p.flags |= f;
        } else {
            p.flags &= !f;
        }
    }

    /// Drops a private page's contents: it reads zero next (DONTNEED, guard install; the zap
    /// of zap_page_range_single).
    pub(super) fn drop_private(&mut self, proc: ProcId, vpn: u64) {
        let pte = *self.space(proc).get(vpn).expect("mapped");
        if let PageBacking::Private(f) = pte.backing {
            for a in pte.alts.iter() {
                self.frames.release(a);
            }
            self.frames.release(f);
            let p = self.space_mut(proc).get_mut(vpn).expect("mapped");
            p.backing = PageBacking::Private(FrameId::ZERO);
            p.alts = Alts::default();
            p.flags &= !(flag::LAZY | flag::EXCLUSIVE);
        }
    }
}

/// madvise with a bad argument, measured on 6.18 with the probe that cowcheck's `invalid` op
/// mirrors (man madvise ERRORS agrees): length 0 succeeds (F0); unaligned, wrapping, unknown
/// advice: EINVAL (F0).
pub(super) fn madvise_bad_arg(bad: BadArg) -> Outcome {
    match bad {
        BadArg::ZeroLength => Outcome::Done,
        _ => Outcome::Failed { errno: EINVAL },
    }
}

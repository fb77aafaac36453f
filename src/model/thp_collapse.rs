//! A MADV_COLLAPSE in the physical channel (docs/SEMANTICS.md I25): which pages a collapse
//! copied, learnt from the view right after it.
//!
//! A collapse that returns 0 has made each whole PMD of its range one PMD-mapped huge page of
//! the calling mm (L3). Two outcomes are allowed, and only the view tells which:
//!
//! - the PMD was already one PMD-mapped huge page (a fault gave one): nothing moves, and every
//!   page keeps its frame, shared with the fork relatives that share the PMD
//!   (mm/khugepaged.c: `madvise_collapse()` counts `SCAN_PMD_MAPPED` a success);
//! - otherwise `collapse_huge_page()` copied every page into a new huge page of the caller's
//!   own: the pages it shared with relatives are copies now (the relatives keep theirs), and
//!   the untouched pages and zero-page mappings are zero-filled pieces of the new huge page,
//!   present, on its run of PFNs.
//!
//! The op's own view (a collapse is followed by a full-state snapshot, `Op::snapshot_after`)
//! shows the calling process's pages of each such PMD on one run of PFNs from a PMD-aligned
//! frame. If a relative maps one of the PMD's data frames at the PFN the caller shows, nothing
//! was copied; else the caller's pages become its own frames, its untouched ones learnt pieces
//! (I24), and the PMD is predicted from then on like any other (I20, I21). A PMD the view does
//! not show whole on a run, or one with a page the channel leaves open for another reason
//! (MADV_FREE, alternatives, a pipe, a racing thread), stays open (`flag::HUGE_RESIDUE`, I9),
//! as every collapsed PMD was before this rule.

use std::collections::BTreeMap;

use super::frame::FrameId;
use super::page_words::PageWords;
use super::space::{PageBacking, flag};
use super::{Life, Model};
use crate::program::ProcId;
use crate::program::physical::pm;

impl Model {
    /// [I25] Notes that `proc`'s MADV_COLLAPSE returned 0 over `start..end` (page numbers): the
    /// whole PMDs inside are resolved by the next view (`resolve_collapses`).
    pub(super) fn note_collapse(&mut self, proc: ProcId, start: u64, end: u64) {
        let pmd = self.pmd_pages();
        let mut first = start.next_multiple_of(pmd);
        while first + pmd <= end {
            self.collapses.push((proc, first));
            first += pmd;
        }
    }

    /// [I25] Resolves the collapses the last op made from the view right after it (`words`:
    /// each live process's pagemap words by page number). Forgets them either way.
    pub(super) fn resolve_collapses(&mut self, words: &PageWords<'_>) {
        let collapses = std::mem::take(&mut self.collapses);
        let t = &self.threads;
        let quiet = t.running.is_empty() && t.readers.is_empty() && t.spliced.is_empty();
        if !quiet || !self.racing_open_frames().is_empty() {
            return;
        }
        let pmd = self.pmd_pages();
        let owners: std::collections::BTreeSet<(ProcId, u64)> =
            self.pipe.iter().map(|p| p.owner).collect();
        for (p, first) in collapses {
            if self.life(p) != Life::Alive || !self.mm_first_user(p) {
                continue;
            }
            let pages = first..first + pmd;
            // Every page a plain private page of one VMA, none open for another reason.
            let space = self.space(p);
            let Some(head) = space.get(first).copied() else {
                continue;
            };
            let plain = pages.clone().all(|v| {
                space.get(v).is_some_and(|pte| {
                    matches!(pte.backing, PageBacking::Private(_))
                        && pte.vma == head.vma
                        && pte.tlb == 0
                        && pte.alts.is_empty()
                        && pte.flags & (flag::LAZY | flag::GUARD | flag::NOHUGEPAGE) == 0
                        && !owners.contains(&(p, v))
                })
            });
            if !plain {
                continue;
            }
            // The caller's pages, all present on one run from a PMD-aligned frame.
            let pfn = |q: ProcId, v: u64| {
                words
                    .get(&(q, v))
                    .filter(|w| *w & pm::PRESENT != 0 && *w & (pm::ZERO_PAGE | pm::FILE) == 0)
                    .map(|w| w & pm::PFN)
            };
            let Some(base) = pfn(p, first).filter(|b| *b != 0 && b.is_multiple_of(pmd)) else {
                continue;
            };
            if !pages.clone().all(|v| pfn(p, v) == Some(base + (v - first))) {
                continue;
            }
            // Nothing copied if a relative shows one of the data frames at the caller's PFN
            // (the PMD was already a huge page they share).
            let frame_of = |q: ProcId, v: u64| match self.space(q).get(v).map(|pte| pte.backing) {
                Some(PageBacking::Private(f)) if f != FrameId::ZERO => Some(f),
                _ => None,
            };
            let relatives: Vec<ProcId> = (0..self.procs.len())
                .map(|i| ProcId(i as u8))
                .filter(|&q| {
                    q != p
                        && self.life(q) == Life::Alive
                        && self.mm_first_user(q)
                        && self.procs[q.0 as usize].mm != self.procs[p.0 as usize].mm
                })
                .collect();
            let mut at: BTreeMap<FrameId, u64> = BTreeMap::new();
            for &q in &relatives {
                for (&v, pte) in &self.space(q).ptes {
                    if let PageBacking::Private(f) = pte.backing
                        && let Some(x) = pfn(q, v)
                    {
                        at.insert(f, x);
                    }
                }
            }
            let shared = pages
                .clone()
                .any(|v| frame_of(p, v).is_some_and(|f| at.get(&f) == Some(&(base + (v - first)))));
            if shared {
                continue;
            }
            // Copied: every page the caller's own, the untouched ones pieces of the huge page.
            let untouched: Vec<bool> = pages.clone().map(|v| frame_of(p, v).is_none()).collect();
            for (v, untouched) in pages.clone().zip(untouched) {
                self.populate_write(p, v);
                if untouched
                    && let Some(PageBacking::Private(f)) =
                        self.space(p).get(v).map(|pte| pte.backing)
                    && f != FrameId::ZERO
                {
                    self.thp_pieces.insert(f);
                }
            }
            for v in pages {
                if let Some(pte) = self.space_mut(p).get_mut(v) {
                    pte.flags &= !flag::HUGE_RESIDUE;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "thp_collapse_tests.rs"]
mod tests;

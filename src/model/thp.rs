//! Transparent huge pages in the physical channel (docs/SEMANTICS.md I20 to I23): which pages of
//! a PMD that may be huge the channel still predicts, and the one choice of the kernel's that
//! changes identities behind the model's back, learnt from the observation: a collapse.
//!
//! A THP changes no identity the model holds (I20): a fork shares every page of it (the child
//! maps the same PMD), a write after fork splits the writer's PMD and copies one base page, a
//! partial munmap, mprotect or MADV_DONTNEED splits it and leaves the other pages where they
//! were. So a page with a frame of the model's is predicted as a base page would be, whether it
//! is huge or not. What stays open is what a huge page adds: the untouched pages of a PMD (a
//! zero-filled piece of a THP, the huge zero page, the zero page or nothing, I21), and a page
//! whose bytes are all zero (the deferred split's shrinker may map it to the zero page, I21).
//!
//! A collapse copies every page of the PMD into a new huge page of the collapsing process's own,
//! those it shared with a fork relative included (I22). khugepaged does it in the background, in
//! a PMD advised `hugepage` where at most `max_ptes_shared` of its pages are shared: whether and
//! when is the kernel's, learnt from the view, where the process's page is on a run of PFNs from
//! a PMD-aligned frame that a fork relative's copy of the same frame does not share
//! (`learn_collapses`). A MADV_COLLAPSE is settled by the view right after it
//! (`thp_collapse.rs`, I25); a PMD that view cannot settle stays open (`flag::HUGE_RESIDUE`):
//! later, an mremap may have moved the collapsed pieces off their run.

use std::collections::BTreeMap;

use super::frame::FrameId;
use super::page_words::PageWords;
use super::space::{PageBacking, flag};
use super::{Life, Model};
use crate::program::ProcId;
use crate::program::outcome::Snapshot;
use crate::program::physical::pm;

/// khugepaged's `max_ptes_shared`: a PMD with more pages mapped by two or more page-table
/// entries is not collapsed in the background (mm/khugepaged.c: hpage_collapse_scan_pmd(),
/// SCAN_EXCEED_SHARED_PTE). The kernel's default, and this machine's setting (I22).
pub const KHUGEPAGED_MAX_PTES_SHARED: usize = 256;

impl Model {
    /// Each live process's pagemap words of a view, by page number.
    pub(super) fn words_by_page<'a>(&self, observed: &'a Snapshot) -> PageWords<'a> {
        PageWords::of(observed, self.page_size)
    }

    /// [I21] Whether a private page of a PMD that may be huge holding frame `f` is left open:
    /// the zero page (an untouched page may be a zero-filled piece of a THP, the huge zero
    /// page, the zero page or absent), or a frame whose bytes are all zero (when the deferred
    /// split's shrinker splits an underused THP it maps such pages to the zero page:
    /// mm/huge_memory.c: thp_underused(), try_to_map_unused_to_zeropage()).
    pub(super) fn huge_leaves_open(&self, f: FrameId) -> bool {
        f == FrameId::ZERO || (self.frames.is_zero(f) && !self.is_thp_piece(f))
    }

    /// [I22] Learns khugepaged's collapses from a view: in each live process, each PMD advised
    /// `hugepage` with at most `max_ptes_shared` of its pages shared in the model, a page of
    /// which holds a frame that a fork relative is seen to map with another PFN, while this
    /// page is on a huge page's run (its PFN's offset in a PMD-aligned block of frames is its
    /// offset in the PMD, and another present page of the PMD is on the same run): the
    /// process's shared pages there become copies of its own, and every process seen with the
    /// same run maps the same new huge page (a fork after the collapse). Needs PFNs; without
    /// them the checker leaves such pages' exclusive bit alone (I23).
    pub fn learn_collapses(&mut self, observed: &Snapshot) {
        let pmd = self.pmd_pages();
        // A MADV_COLLAPSE the last op made, seen right after it (L3, I25).
        let mut read = None;
        if !self.collapses.is_empty() {
            let words = self.words_by_page(observed);
            self.resolve_collapses(&words);
            read = Some(words);
        }
        // Most programs advise nothing: nothing to learn, and nothing to index.
        let advised = |p: &super::Process| {
            p.life == Life::Alive
                && (self.spaces[p.mm].ptes.values()).any(|pte| pte.flags & flag::HUGEPAGE != 0)
        };
        if !self.procs.iter().any(advised) {
            // But a piece learnt from a collapse (I25, which needs no advice) is still seen
            // split to the zero page (I24; found by `run --cases 3000 --seed 7`: `map 512;
            // advise collapse; fork; exit; advise 335 free`, the child's zero-filled pieces
            // on the zero page after the split, 5 of 5 runs).
            if !self.thp_pieces.is_empty() {
                let words = read.unwrap_or_else(|| self.words_by_page(observed));
                self.learn_thp_pieces(&words);
            }
            return;
        }
        let words = read.unwrap_or_else(|| self.words_by_page(observed));
        let pfn = |w: u64| (w & pm::PRESENT != 0).then_some(w & pm::PFN);
        if !words.any(|w| pfn(w).is_some_and(|p| p != 0)) {
            return;
        }
        // Where each model frame is seen, and with which PFNs: (frame, process, PFN), sorted.
        let live: Vec<ProcId> = (0..self.procs.len())
            .map(|i| ProcId(i as u8))
            .filter(|&p| self.procs[p.0 as usize].life == Life::Alive && self.mm_first_user(p))
            .collect();
        // A page whose frame the channel leaves open is no evidence (a PMD that MADV_COLLAPSE
        // may have taken, a lazily freed page, one with alternatives): its PFN may differ from
        // its frame's elsewhere without any collapse by the others (`run --time 600 --seed
        // 8`: p2's MADV_COLLAPSE of a THP it shared with p0 and p1 was taken for a collapse
        // by p0, whose pages still were on the original run).
        let mut seen: Vec<(FrameId, ProcId, u64)> = Vec::new();
        for &p in &live {
            for (&vpn, pte) in &self.space(p).ptes {
                if let PageBacking::Private(f) = pte.backing
                    && f != FrameId::ZERO
                    && pte.flags & (flag::HUGE_RESIDUE | flag::LAZY) == 0
                    && pte.alts.is_empty()
                    && let Some(x) = words.get(&(p, vpn)).and_then(|&w| pfn(w))
                {
                    seen.push((f, p, x));
                }
            }
        }
        seen.sort_unstable();
        let seen_as = |f: FrameId| {
            let from = seen.partition_point(|s| s.0 < f);
            let to = from + seen[from..].partition_point(|s| s.0 == f);
            &seen[from..to]
        };
        // Collapsed PMDs by (first page, first PFN): every process seen with that run maps the
        // one new huge page (a fork after the collapse shares it).
        let mut copy: BTreeMap<(u64, u64), Vec<ProcId>> = BTreeMap::new();
        for &p in &live {
            let space = self.space(p);
            let mut firsts: Vec<u64> = space
                .ptes
                .iter()
                .filter(|(_, pte)| pte.flags & (flag::HUGEPAGE | flag::HUGE_RESIDUE) != 0)
                .map(|(&v, _)| v - v % pmd)
                .collect();
            firsts.dedup();
            for first in firsts {
                let pages = first..first + pmd;
                // The PMD's mapped pages, in order (one walk of the page table, not a lookup
                // a page).
                let ptes: Vec<(u64, &super::space::Pte)> = space
                    .ptes
                    .range(pages.clone())
                    .map(|(&v, pte)| (v, pte))
                    .collect();
                if !ptes.iter().any(|(_, pte)| pte.flags & flag::HUGEPAGE != 0) {
                    continue;
                }
                let private = |pte: &super::space::Pte| match pte.backing {
                    PageBacking::Private(f) if f != FrameId::ZERO => Some(f),
                    _ => None,
                };
                let shared = ptes
                    .iter()
                    .filter(|(_, pte)| private(pte).is_some_and(|f| self.frames.refs(f) > 1))
                    .count();
                if shared > KHUGEPAGED_MAX_PTES_SHARED {
                    continue;
                }
                // The run a page is on: its PFN less its offset, where that is PMD-aligned.
                let run_of = |v: u64| {
                    let x = words.get(&(p, v)).and_then(|&w| pfn(w))?;
                    let base = x.checked_sub(v - first)?;
                    (base % pmd == 0).then_some(base)
                };
                let mut runs: BTreeMap<u64, usize> = BTreeMap::new();
                for v in pages.clone() {
                    if let Some(b) = run_of(v) {
                        *runs.entry(b).or_default() += 1;
                    }
                }
                let on_run = |v: u64| run_of(v).filter(|b| runs.get(b).is_some_and(|&n| n >= 2));
                let mut split = None;
                for &(v, pte) in &ptes {
                    let Some(f) = private(pte) else {
                        continue;
                    };
                    let Some(base) = on_run(v) else {
                        continue;
                    };
                    let here = base + (v - first);
                    if seen_as(f).iter().any(|&(_, q, x)| q != p && x != here) {
                        split = Some(base);
                        break;
                    }
                }
                if let Some(base) = split {
                    copy.entry((first, base)).or_default().push(p);
                }
            }
        }
        for ((first, _), group) in copy {
            let (leader, rest) = group.split_first().expect("a group has a process");
            for vpn in first..first + pmd {
                let Some(PageBacking::Private(f)) =
                    self.space(*leader).get(vpn).map(|pte| pte.backing)
                else {
                    continue;
                };
                if f == FrameId::ZERO || self.frames.refs(f) < 2 {
                    continue;
                }
                self.populate_write(*leader, vpn);
                let Some(PageBacking::Private(new)) =
                    self.space(*leader).get(vpn).map(|pte| pte.backing)
                else {
                    continue;
                };
                if new == f {
                    continue;
                }
                for &q in rest {
                    if let Some(pte) = self.space_mut(q).get_mut(vpn)
                        && pte.backing == PageBacking::Private(f)
                    {
                        pte.backing = PageBacking::Private(new);
                        pte.flags &= !flag::EXCLUSIVE;
                        self.frames.take(new);
                        self.frames.release(f);
                    }
                }
                if !rest.is_empty()
                    && let Some(pte) = self.space_mut(*leader).get_mut(vpn)
                {
                    pte.flags &= !flag::EXCLUSIVE;
                }
            }
        }
        // The untouched pages of the huge pages the view shows, once the collapses are
        // learnt (I24).
        self.learn_thp_pieces(&words);
    }
}

#[cfg(test)]
#[path = "thp_tests.rs"]
mod tests;

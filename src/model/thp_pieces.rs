//! The untouched pages of a transparent huge page, learnt from the view (docs/SEMANTICS.md I24).
//!
//! A write fault in a PMD that may be huge either maps a whole huge page (every base page
//! present, the untouched ones zero-filled pieces of it, on one run of PFNs) or a base page
//! (the untouched ones absent): the kernel's choice, which I21 leaves open. A view shows which:
//! where a page holding the model's data is on a run from a PMD-aligned frame and an untouched
//! page of the same PMD is on that run too, the untouched page is a piece of that huge page.
//! From then on it is a page like any other: the model gives it a frame of zero bytes
//! (`Model::thp_pieces`), shared with the fork relatives that map the same piece, so that a fork
//! shares it, a write copies it, MADV_DONTNEED drops it, and the channel predicts it (I3, I4,
//! I8). A relative that holds the same data frame in that PMD got the huge page with it, so its
//! untouched page, where present and not the zero page, is the same piece (a copy made eagerly
//! at fork shows another PFN there). A piece later seen as the zero page (the deferred split's
//! shrinker remaps zero-filled pieces where `max_ptes_none` is below 511) becomes the zero page
//! in the model.

use std::collections::BTreeMap;

use super::frame::FrameId;
use super::space::{PageBacking, flag};
use super::{Life, Model};
use crate::program::ProcId;
use crate::program::physical::pm;

impl Model {
    /// [I24] Whether frame `f` is a learnt piece of a huge page: predicted, though all zero.
    pub(super) fn is_thp_piece(&self, f: FrameId) -> bool {
        f != FrameId::ZERO && self.thp_pieces.contains(&f)
    }

    /// [I24] Learns the pieces of huge pages a view shows (`learn_collapses()` calls it, with
    /// each live process's words by page number).
    pub(super) fn learn_thp_pieces(&mut self, words: &BTreeMap<(ProcId, u64), u64>) {
        let pmd = self.pmd_pages();
        let frames = &self.frames;
        self.thp_pieces.retain(|&f| frames.refs(f) > 0);
        let live: Vec<ProcId> = (0..self.procs.len())
            .map(|i| ProcId(i as u8))
            .filter(|&p| self.procs[p.0 as usize].life == Life::Alive && self.mm_first_user(p))
            .collect();
        let seen = |p: ProcId, v: u64| {
            words
                .get(&(p, v))
                .copied()
                .filter(|w| w & pm::PRESENT != 0 && w & (pm::FILE | pm::ZERO_PAGE) == 0)
        };
        // A page whose frame the channel predicts (no pipe, no lazy free, no collapse residue).
        let piped: std::collections::BTreeSet<FrameId> = self
            .pipe
            .iter()
            .flat_map(|p| p.frames.iter().copied())
            .collect();
        let plain = |pte: &super::space::Pte| {
            pte.tlb == 0
                && pte.alts.is_empty()
                && pte.flags & (flag::LAZY | flag::HUGE_RESIDUE | flag::GUARD) == 0
                && !pte.kind.is_shared()
        };
        // A learnt piece seen as the zero page: the shrinker remapped it.
        for &p in &live {
            let zeroed: Vec<u64> = (self.space(p).ptes.iter())
                .filter(|(v, pte)| {
                    matches!(pte.backing, PageBacking::Private(f) if self.is_thp_piece(f))
                        && words
                            .get(&(p, **v))
                            .is_some_and(|w| w & pm::PRESENT != 0 && w & pm::ZERO_PAGE != 0)
                })
                .map(|(v, _)| *v)
                .collect();
            for v in zeroed {
                self.drop_private(p, v);
            }
        }
        // Per PMD (first page), the pieces seen: page -> (the piece's PFN, its frame).
        let mut found: Vec<(ProcId, u64, u64)> = Vec::new();
        let mut evidence: BTreeMap<u64, Vec<ProcId>> = BTreeMap::new();
        for &p in &live {
            let space = self.space(p);
            let firsts: std::collections::BTreeSet<u64> = (space.ptes.iter())
                .filter(|(_, pte)| pte.flags & flag::HUGEPAGE != 0)
                .map(|(&v, _)| v - v % pmd)
                .collect();
            for first in firsts {
                let pages = first..first + pmd;
                if !pages
                    .clone()
                    .all(|v| space.get(v).is_some_and(|pte| plain(pte)))
                {
                    continue;
                }
                // The run a page holding data is on.
                let head = pages.clone().find_map(|v| {
                    let PageBacking::Private(f) = space.get(v)?.backing else {
                        return None;
                    };
                    if f == FrameId::ZERO || piped.contains(&f) || self.huge_leaves_open(f) {
                        return None;
                    }
                    let x = seen(p, v)? & pm::PFN;
                    let base = x.checked_sub(v - first)?;
                    base.is_multiple_of(pmd).then_some(base)
                });
                let Some(head) = head else {
                    continue;
                };
                let mut any = false;
                for v in pages.clone() {
                    if space.get(v).map(|pte| pte.backing)
                        == Some(PageBacking::Private(FrameId::ZERO))
                        && seen(p, v).is_some_and(|w| w & pm::PFN == head + (v - first))
                    {
                        found.push((p, v, head + (v - first)));
                        any = true;
                    }
                }
                if any {
                    evidence.entry(first).or_default().push(p);
                }
            }
        }
        if found.is_empty() {
            return;
        }
        // One frame per piece (its PFN), for every process seen with it; a relative that
        // holds one of the evidence's data frames in the PMD and shows the page present (not
        // the zero page) maps the same piece, whatever PFN it shows.
        let mut piece: BTreeMap<u64, FrameId> = BTreeMap::new();
        let mut holders: Vec<(ProcId, u64, u64)> = found.clone();
        for (&first, ps) in &evidence {
            for &q in &live {
                if ps.contains(&q) {
                    continue;
                }
                let Some(&p) = ps.iter().find(|&&p| {
                    (first..first + pmd).any(|v| {
                        match (self.space(p).get(v), self.space(q).get(v)) {
                            (Some(a), Some(b)) => {
                                matches!(a.backing, PageBacking::Private(f) if f != FrameId::ZERO && !self.huge_leaves_open(f))
                                    && a.backing == b.backing
                            }
                            _ => false,
                        }
                    })
                }) else {
                    continue;
                };
                for &(fp, v, x) in &found {
                    if fp != p {
                        continue;
                    }
                    // The same page of the same VMA (an mremap in either makes a new one).
                    let theirs = self.space(p).get(v);
                    let untouched = self.space(q).get(v).is_some_and(|pte| {
                        plain(pte)
                            && pte.backing == PageBacking::Private(FrameId::ZERO)
                            && theirs.is_some_and(|t| t.vma == pte.vma && t.pgoff == pte.pgoff)
                    });
                    if untouched && seen(q, v).is_some() {
                        holders.push((q, v, x));
                    }
                }
            }
        }
        for &(_, _, x) in &holders {
            piece.entry(x).or_insert(FrameId::ZERO);
        }
        let counts: BTreeMap<u64, usize> = holders.iter().fold(BTreeMap::new(), |mut m, h| {
            *m.entry(h.2).or_default() += 1;
            m
        });
        for (p, v, x) in holders {
            let slot = piece.get_mut(&x).expect("a piece per PFN");
            if *slot == FrameId::ZERO {
                *slot = self.frames.copy_of(FrameId::ZERO);
                self.thp_pieces.insert(*slot);
            } else {
                self.frames.take(*slot);
            }
            let f = *slot;
            let pte = self.space_mut(p).get_mut(v).expect("mapped");
            pte.backing = PageBacking::Private(f);
            if counts[&x] > 1 {
                pte.flags &= !flag::EXCLUSIVE;
            }
        }
    }
}

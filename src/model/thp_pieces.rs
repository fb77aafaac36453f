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
use super::page_words::PageWords;
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
    pub(super) fn learn_thp_pieces(&mut self, words: &PageWords<'_>) {
        let pmd = self.pmd_pages();
        let frames = &self.frames;
        self.thp_pieces.retain(|&f| frames.refs(f) > 0);
        let live: Vec<ProcId> = (0..self.procs.len())
            .map(|i| ProcId(i as u8))
            .filter(|&p| self.procs[p.0 as usize].life == Life::Alive && self.mm_first_user(p))
            .collect();
        // A learnt piece seen as the zero page: the huge page was split and its zero-filled
        // pieces remapped to the zero page (the deferred split's shrinker where `max_ptes_none`
        // is below 511, or a split for reclaim: `race pageout` of another page of it, found by
        // `run --time 120 --seed 9`, 5 of 5 replays). Learnt even while a racing thread runs,
        // which may be what split it; but not on the frames a racer touches.
        let racing = self.racing_open_frames();
        for &p in &live {
            let zeroed: Vec<u64> = (self.space(p).ptes.iter())
                .filter(|(v, pte)| {
                    matches!(pte.backing, PageBacking::Private(f) if self.is_thp_piece(f) && !racing.contains(&f))
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
        // Every mapper of a piece must be seen to count its mappers (I8), and a racing thread
        // of any kind may split, zap or copy pages between two reads: learn no new piece then.
        let t = &self.threads;
        if live.iter().any(|&p| !words.has(p))
            || !(t.running.is_empty()
                && t.readers.is_empty()
                && t.open_prots.is_empty()
                && t.spliced.is_empty()
                && racing.is_empty())
        {
            return;
        }
        let seen = |p: ProcId, v: u64| {
            words
                .get(&(p, v))
                .copied()
                .filter(|w| w & pm::PRESENT != 0 && w & (pm::FILE | pm::ZERO_PAGE) == 0)
        };
        // Nothing to learn unless an untouched page of an advised PMD is seen present (not
        // the zero page): most snapshots, and every one after the pieces were learnt, stop here
        // before the predictions below are worked out.
        let candidate = live.iter().any(|&p| {
            self.space(p).ptes.iter().any(|(&v, pte)| {
                pte.flags & flag::HUGEPAGE != 0
                    && pte.backing == PageBacking::Private(FrameId::ZERO)
                    && seen(p, v).is_some()
            })
        });
        if !candidate {
            return;
        }
        // Only a page whose frame the channel predicts is evidence: not one a pipe refers to,
        // a racing thread writes (T2), or that is left open for any other reason (found by
        // `run --cases 20000 --seed 1`: a page a racing poke wrote, on the huge page's run in
        // the fork child only, was taken for evidence there).
        let predicted: std::collections::BTreeSet<(ProcId, u64)> = self
            .physical()
            .into_iter()
            .flat_map(|(p, preds)| {
                preds
                    .into_iter()
                    .filter(|pr| !pr.open)
                    .map(move |pr| (p, pr.addr))
            })
            .collect();
        let ps = self.page_size;
        let known = |p: ProcId, v: u64| predicted.contains(&(p, v * ps));
        let plain = |pte: &super::space::Pte| {
            pte.tlb == 0
                && pte.alts.is_empty()
                && pte.flags & (flag::LAZY | flag::HUGE_RESIDUE | flag::GUARD) == 0
                && !pte.kind.is_shared()
        };
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
                if !pages.clone().all(|v| space.get(v).is_some_and(&plain)) {
                    continue;
                }
                // The run a page holding data is on.
                let head = pages.clone().find_map(|v| {
                    let PageBacking::Private(f) = space.get(v)?.backing else {
                        return None;
                    };
                    if f == FrameId::ZERO || !known(p, v) || self.huge_leaves_open(f) {
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
                                    && known(p, v)
                                    && known(q, v)
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
        // Every other page seen at a piece's PFN maps it too: each must be an untouched page
        // the model can give it, or the piece is not learnt (its mappers could not be counted).
        let pfns: std::collections::BTreeSet<u64> = holders.iter().map(|h| h.2).collect();
        let mut spoilt: std::collections::BTreeSet<u64> = Default::default();
        for ((q, v), w) in words.iter() {
            let x = w & pm::PFN;
            if w & pm::PRESENT == 0 || !pfns.contains(&x) || holders.contains(&(q, v, x)) {
                continue;
            }
            let fits = self.space(q).get(v).is_some_and(|pte| {
                plain(pte)
                    && pte.backing == PageBacking::Private(FrameId::ZERO)
                    && w & (pm::FILE | pm::ZERO_PAGE) == 0
            });
            if fits && live.contains(&q) {
                holders.push((q, v, x));
            } else {
                spoilt.insert(x);
            }
        }
        holders.sort();
        holders.dedup();
        // A page given two pieces (seen at one, a relative of the other's): neither is learnt.
        for w in holders.windows(2) {
            if (w[0].0, w[0].1) == (w[1].0, w[1].1) {
                spoilt.insert(w[0].2);
                spoilt.insert(w[1].2);
            }
        }
        holders.retain(|h| !spoilt.contains(&h.2));
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

//! Predictions of the physical channel from the model's frames (docs/SEMANTICS.md part 11):
//! for every mapped page of every live process, which frame backs it (an identity that two
//! pages share exactly when the kernel must give them one page frame, I4), whether it must,
//! may or cannot be present in the page table (I3, I5, I6), and whether pagemap must call it
//! a file/shared page (I7). The exclusive bit (I8) follows from the identities and from what
//! is observed present, so the checker works it out (`check::physical`). Where the model does
//! not know the kernel's frame (a page whose contents are still open after MADV_FREE, a page a
//! pipe refers to, an untouched or all-zero page of a PMD that may be huge, a page a racing
//! thread writes and the copies a fork made of it) the page is left unconstrained: a set of
//! outcomes too large to be worth a constraint, never a guess. A page of a PMD that may be huge
//! and holds data is predicted as a base page would be, with khugepaged's collapses learnt from
//! the views (`thp.rs`, I20 to I23); one a MADV_COLLAPSE touched stays open (I22). A hugetlb
//! page is predicted by `hugetlb_phys.rs` (I15 to I17).
//!
//! The same predictions bound what each process's smaps says of each region (`check::smaps`):
//! resident pages that are not the zero page [I11], each shared among the entries that map
//! its frame [I12], lazily freed or huge only where left open [I13], and a shared object's
//! pages the survivor's alone once its other mappers are gone [I14].
//!
//! Also the one physical effect of an op that never changes contents: MADV_POPULATE_WRITE
//! breaks copy-on-write (I6).

use std::collections::BTreeSet;

use super::frame::FrameId;
use super::space::{PageBacking, flag};
use super::{Life, Model};
use crate::program::ProcId;

/// Which frame backs a page, as far as the channel can tell frames apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// The shared zero page (I5).
    Zero,
    /// A frame of the model's (a private page's own or a shared object's written page).
    Frame(u32),
    /// A page of a shared object the model has not allocated (never written): the kernel
    /// allocates it at the first fault, read or write, one page for every mapper (I4).
    ObjPage(u32, u32),
    /// Base page `.1` of a private hugetlb huge page whose head holds model frame `.0` (0: no
    /// page yet): two processes map one huge page exactly when they hold one head (I16).
    TlbPrivate(u32, u32),
    /// Page `.1` of shared hugetlb object `.0` (I16).
    TlbShared(u32, u32),
}

/// Whether the page-table entry must be there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Present (or swapped out): a private page with a frame of its own or shared
    /// copy-on-write (I3).
    Must,
    /// Either: an untouched or zero-page private page, any shared page (I3, I5).
    May,
    /// Never: a guard marker, a page past its object's end (I3).
    Never,
}

/// The prediction for one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prediction {
    pub addr: u64,
    /// The frame the model holds for the page (`None` past a shared object's end).
    pub identity: Option<Identity>,
    /// The kernel's frame for it is open (the module header says when): no prediction of the
    /// page, and no count of its frame's mappers (I9).
    pub open: bool,
    pub presence: Presence,
    /// A shared mapping's page: pagemap's file bit when present (I7).
    pub shared: bool,
    /// A transparent huge page may back the page (I20): smaps may count it in
    /// `AnonHugePages`, and its exclusive bit is its PMD's first page's where a PMD maps it.
    pub huge: bool,
}

impl Model {
    /// Every live process's predictions, page by page, ascending by address.
    pub fn physical(&self) -> Vec<(ProcId, Vec<Prediction>)> {
        // Frames whose pages the channel cannot pin down: every holder goes unconstrained.
        let mut open: BTreeSet<FrameId> = BTreeSet::new();
        for page in &self.pipe {
            open.extend(page.frames.iter().copied());
        }
        // Pages a racing thread writes, and the copies a fork made of them (T2): when the
        // kernel splits them is the interleaving's.
        open.extend(self.racing_open_frames());
        let zapped = self.zapped_frames();
        // One process per address space: two processes that share one (a clone child, T31)
        // read the same page tables, and counting both would count each entry twice.
        let live = || {
            self.procs
                .iter()
                .enumerate()
                .filter(|(i, p)| p.life == Life::Alive && self.mm_first_user(ProcId(*i as u8)))
        };
        // Whether a PMD (by its first page) may hold a transparent huge page whatever the THP
        // mode: MADV_COLLAPSE needs no MADV_HUGEPAGE (L3, L4). Asked once per PMD. A zero-page mapping is left open page by page, never by frame
        // (which would open every zero page).
        let mut huge: std::collections::HashMap<(usize, u64), bool> = Default::default();
        let pmd = self.pmd_pages();
        let mut may_be_huge = |i: usize, vpn: u64| {
            *huge
                .entry((i, vpn - vpn % pmd))
                .or_insert_with(|| self.huge_possible(ProcId(i as u8), vpn, false))
        };
        // Pages of shared objects that a collapse may have made one huge page: how many page
        // tables map which part of it (and so the exclusive bit) is the kernel's (found by a
        // campaign on a loaded machine: `map shared 513; read; advise collapse; fork; protect
        // 71 none`, exclusive bit, 5 of 5 runs there, 0 of 14 on a quiet one).
        let huge_flags = flag::HUGEPAGE | flag::HUGE_RESIDUE;
        let mut huge_objects: BTreeSet<(u32, u32)> = BTreeSet::new();
        for (_, p) in live() {
            for pte in self.spaces[p.mm].ptes.values() {
                if let PageBacking::Object { obj, index } = pte.backing
                    && pte.flags & huge_flags != 0
                {
                    huge_objects.insert((obj.0, index));
                }
            }
        }
        // A page of a PMD that may be huge: open only if untouched or all zero (I21), or if a
        // collapse touched it (I22).
        for (i, p) in live() {
            for (&vpn, pte) in &self.spaces[p.mm].ptes {
                // A hugetlb page is never a transparent huge page; its own rules say (I15).
                if pte.tlb != 0 && pte.alts.is_empty() {
                    continue;
                }
                if let PageBacking::Private(f) = pte.backing
                    && (pte.flags & (flag::LAZY | flag::HUGE_RESIDUE) != 0
                        || !pte.alts.is_empty()
                        || ((pte.flags & flag::HUGEPAGE != 0 || may_be_huge(i, vpn))
                            && self.huge_leaves_open(f)))
                {
                    if f != FrameId::ZERO {
                        open.insert(f);
                    }
                    open.extend(pte.alts.iter().filter(|a| *a != FrameId::ZERO));
                }
            }
        }
        let owners: BTreeSet<(ProcId, u64)> = self.pipe.iter().map(|p| p.owner).collect();
        let mut out = Vec::new();
        for (i, p) in live() {
            let proc = ProcId(i as u8);
            let mut preds = Vec::with_capacity(self.spaces[p.mm].ptes.len());
            for (&vpn, pte) in &self.spaces[p.mm].ptes {
                let addr = vpn * self.page_size;
                let guard = pte.flags & flag::GUARD != 0;
                let (identity, mut presence) = match pte.backing {
                    PageBacking::Private(FrameId::ZERO) => (Some(Identity::Zero), Presence::May),
                    PageBacking::Private(f) => (Some(Identity::Frame(f.0)), Presence::Must),
                    PageBacking::Object { obj, index } => {
                        match self.object(obj).frames.get(index as usize) {
                            None => (None, Presence::Never),
                            Some(&FrameId::ZERO) => {
                                (Some(Identity::ObjPage(obj.0, index)), Presence::May)
                            }
                            Some(f) => (Some(Identity::Frame(f.0)), Presence::May),
                        }
                    }
                };
                let huge = match pte.backing {
                    PageBacking::Private(_) => pte.flags & huge_flags != 0 || may_be_huge(i, vpn),
                    PageBacking::Object { obj, index } => huge_objects.contains(&(obj.0, index)),
                };
                let open = match pte.backing {
                    // The page a pipe took, its frame shared or not; a frame with an open page;
                    // an untouched or all-zero page where a huge page may be (I21).
                    PageBacking::Private(f) => {
                        owners.contains(&(proc, vpn))
                            || open.contains(&f)
                            || pte.flags & (flag::LAZY | flag::HUGE_RESIDUE) != 0
                            || !pte.alts.is_empty()
                            || (huge && self.huge_leaves_open(f))
                    }
                    // A shared page a racing thread zaps: how many page tables map it (T7).
                    PageBacking::Object { obj, index } => {
                        huge_objects.contains(&(obj.0, index))
                            || (self.object(obj).frames.get(index as usize))
                                .is_some_and(|f| zapped.contains(f))
                    }
                };
                // A page its own process's thread zaps: present or not between any two reads (T7).
                let open = open || self.zapping(proc, vpn);
                // A hugetlb page: predicted whole huge page by whole huge page (I15, I16).
                let (identity, open, huge) = if pte.tlb != 0 {
                    let (id, p, o) = self.tlb_prediction(proc, vpn, pte);
                    presence = p;
                    (id, o, false)
                } else {
                    (identity, open, huge)
                };
                if open {
                    presence = Presence::May;
                }
                if guard {
                    presence = Presence::Never;
                }
                preds.push(Prediction {
                    addr,
                    identity,
                    open: open || guard,
                    presence,
                    shared: pte.kind.is_shared(),
                    huge,
                });
            }
            out.push((proc, preds));
        }
        out
    }

    /// Whether the frame behind `id` holds data (a byte that is not zero): a shared object's
    /// page that the kernel must keep in the page cache while the object lives, where there is
    /// no swap; a page that holds only zeros may be one a read fault allocated, clean, which
    /// reclaim and MADV_PAGEOUT drop (I10).
    pub fn holds_data(&self, id: Identity) -> bool {
        match id {
            Identity::Frame(f) => !self.frames.is_zero(FrameId(f)),
            Identity::Zero
            | Identity::ObjPage(..)
            | Identity::TlbPrivate(..)
            | Identity::TlbShared(..) => false,
        }
    }

    /// MADV_POPULATE_WRITE on a private page: a write fault that stores nothing (I6,
    /// mm/madvise.c: madvise_populate() faults with FOLL_WRITE): the zero page or a frame
    /// shared copy-on-write gives way to a page of this process's own, with the same bytes.
    /// A page whose contents are still open (MADV_FREE) is left as it is.
    pub(super) fn populate_write(&mut self, proc: ProcId, vpn: u64) {
        let Some(pte) = self.space(proc).get(vpn).copied() else {
            return;
        };
        if let PageBacking::Private(_) = pte.backing
            && pte.flags & flag::LAZY == 0
            && pte.alts.is_empty()
        {
            self.writable_frame(proc, vpn);
        }
    }
}

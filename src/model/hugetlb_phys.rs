//! hugetlb pages in the physical channel (docs/SEMANTICS.md I15 to I17): what pagemap must say
//! of each base page of a huge page, from the state `hugetlb.rs` keeps (L9).
//!
//! A huge page is mapped or not as a whole, in each page table on its own: a private one from
//! the first fault (a read fault too: hugetlb has no zero page) or a fork of a mapped one, a
//! shared one from this process's first touch (a fork copies no shared hugetlb entry), and
//! neither after MADV_DONTNEED (I15). Its base pages are one folio: their PFNs are one run from
//! a huge page aligned head, and two processes show the same run exactly when they map the same
//! huge page, which for a private one is when they hold the same head frame (`hugetlb.rs`: a
//! copy-on-write copies the whole huge page, I16). The exclusive bit follows from how many page
//! tables map it, as for base pages (I8; `pagemap_hugetlb_range()`), and smaps counts it in
//! `Private_Hugetlb` or `Shared_Hugetlb`, never in `Rss` (I17).
//!
//! What the pool decides stays open (L9, L13, L14): a page the owner may have taken back
//! (`tlb::TAKEN`: mapped or not until a fault says), a page whose contents have an alternative
//! (a fork child's page its parent may have lost). A snapshot's words are read before its views
//! fault pages in, so the presence predicted is the one before the view (`tlb::WAS_PRESENT`,
//! `tlb::WAS_ABSENT`, set as the snapshot is reconciled).

use super::frame::FrameId;
use super::physical::{Identity, Presence};
use super::space::{PageBacking, Pte, tlb};
use super::{Life, Model};
use crate::program::{ProcId, caps};

/// Base pages in a huge page.
const HUGE: u64 = caps::HUGETLB_PAGES as u64;

impl Model {
    /// [I15] Records, before a snapshot's views change anything (`hugetlb_settle()`), whether
    /// each hugetlb page was surely mapped, surely not, or either, when its process read its
    /// pagemap words.
    pub(super) fn tlb_words_presence(&mut self) {
        let mms: std::collections::BTreeSet<usize> = self
            .procs
            .iter()
            .filter(|p| p.life == Life::Alive)
            .map(|p| p.mm)
            .collect();
        for mm in mms {
            for p in self.spaces[mm].ptes.values_mut() {
                if p.tlb == 0 {
                    continue;
                }
                p.tlb &= !(tlb::WAS_PRESENT | tlb::WAS_ABSENT);
                if p.tlb & tlb::TAKEN == 0 {
                    p.tlb |= if p.tlb & tlb::PRESENT != 0 {
                        tlb::WAS_PRESENT
                    } else {
                        tlb::WAS_ABSENT
                    };
                }
            }
        }
    }

    /// [I15, I16] The prediction for hugetlb page `vpn` of `proc`: its identity (the huge
    /// page and the base page's index in it), its presence at the words, and whether it is
    /// left open.
    pub(super) fn tlb_prediction(
        &self,
        proc: ProcId,
        vpn: u64,
        pte: &Pte,
    ) -> (Option<Identity>, Presence, bool) {
        let index = (vpn % HUGE) as u32;
        let identity = match pte.backing {
            PageBacking::Object { obj, index } => Identity::TlbShared(obj.0, index),
            PageBacking::Private(_) => {
                let head = match self.space(proc).get(vpn - vpn % HUGE).map(|p| p.backing) {
                    Some(PageBacking::Private(h)) => h,
                    _ => FrameId::ZERO,
                };
                Identity::TlbPrivate(head.0, index)
            }
        };
        // A clone child's view of the same page tables may fault a page in before this
        // process reads its words (T31).
        let presence = if pte.tlb & tlb::WAS_PRESENT != 0 {
            Presence::Must
        } else if pte.tlb & tlb::WAS_ABSENT != 0 && !self.shares_mm(proc) {
            Presence::Never
        } else {
            Presence::May
        };
        let unknown_head = matches!(identity, Identity::TlbPrivate(h, _) if h == FrameId::ZERO.0);
        let open = !pte.alts.is_empty() || (unknown_head && presence != Presence::Never);
        (Some(identity), presence, open)
    }
}

impl Identity {
    /// For a hugetlb page: its huge page (a key) and the base page's index in it (I16).
    pub fn huge_page(self) -> Option<((bool, u32, u32), u64)> {
        match self {
            Identity::TlbPrivate(head, index) => Some(((false, head, 0), index as u64)),
            Identity::TlbShared(obj, index) => {
                Some(((true, obj, index / HUGE as u32), (index as u64) % HUGE))
            }
            _ => None,
        }
    }
}

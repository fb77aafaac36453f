//! Address spaces at page granularity. Each mapped page is one entry; what a VMA is (and how the
//! kernel merges or splits them) is not modelled beyond what is observable: each page remembers
//! which mmap or mremap made its VMA (`vma`), so that "the range lies in one VMA" can be decided
//! where mremap needs it (docs/SEMANTICS.md §1: "Do not assert VMA counts or boundaries").
//! Holds page-table entries only: it never takes or releases a frame (the model does, in
//! `memory.rs`) and never decides what a page reads.

use std::collections::BTreeMap;

use super::frame::FrameId;
use crate::program::MapKind;

/// A shared object's number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjId(pub u32);

/// What a page-table entry points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageBacking {
    /// A private page: its own frame, or a frame shared copy-on-write with fork relatives.
    Private(FrameId),
    /// Page `index` of a shared object (an index past the object's end raises SIGBUS, G8).
    Object { obj: ObjId, index: u32 },
}

/// Per-page flags.
pub mod flag {
    /// MADV_DONTFORK: the page is not inherited (F4).
    pub const DONTFORK: u8 = 1;
    /// MADV_WIPEONFORK: a child gets zeroes here (B4, F5).
    pub const WIPEONFORK: u8 = 2;
    /// MADV_GUARD_INSTALL: any access is SIGSEGV/SEGV_MAPERR (F8).
    pub const GUARD: u8 = 4;
    /// MADV_FREE and not written since: the page may read zero at any time (F2).
    pub const LAZY: u8 = 8;
    /// MADV_HUGEPAGE / MADV_NOHUGEPAGE: no effect on contents, but VMA flags (VM_HUGEPAGE,
    /// VM_NOHUGEPAGE), so they split VMAs, which mremap sees (F9; measured).
    pub const HUGEPAGE: u8 = 16;
    pub const NOHUGEPAGE: u8 = 32;
    /// The page is this process's own (it got it by its own write fault): a write goes in place
    /// whatever else holds the frame (a pipe after vmsplice); cleared on both sides by fork.
    /// This is PG_anon_exclusive's role since 5.19 (docs/SEMANTICS.md K3/K4).
    pub const EXCLUSIVE: u8 = 64;
    /// A transparent huge page may have backed this page (it was advised `hugepage`, or a
    /// collapse took its PMD): after a split (a partial `nohugepage`, `mprotect`, `munmap`)
    /// its untouched neighbours may stay present as pieces of that huge page, so the physical
    /// channel leaves it open (I9, L4). Never cleared while the page is mapped; not a VMA flag.
    pub const HUGE_RESIDUE: u8 = 128;
    /// Flags that belong to the VMA (and so decide whether two pages can be one VMA).
    pub const VMA: u8 = DONTFORK | WIPEONFORK | HUGEPAGE | NOHUGEPAGE;
}

/// A page-table entry's hugetlb state (`Pte::tlb`; 0 for every other page). The rules are
/// `hugetlb.rs`'s (docs/SEMANTICS.md L6-L14; the physical channel's, I15-I17).
pub mod tlb {
    /// A base page of a hugetlb mapping.
    pub const PAGE: u8 = 1;
    /// This process made the private mapping and holds its reservation (HPAGE_RESV_OWNER);
    /// a fork child never does (L9).
    pub const OWNER: u8 = 2;
    /// The owner's reservation for this huge page is not consumed yet: its first fault cannot
    /// fail. A fault consumes it, and a zap (MADV_DONTNEED) does not give it back (L9).
    pub const RESERVED: u8 = 4;
    /// The huge page is mapped in this page table, as far as the model knows (a fault, a fork
    /// of a present page, a view that read it).
    pub const PRESENT: u8 = 8;
    /// The last view could not read the page (its fault had no huge page to take): until the
    /// page changes, views show it unreadable (learnt, L9).
    pub const GONE: u8 = 16;
    /// The owner may have taken the page back (`take_back()`): mapped here or not, until a
    /// fault or a zap says (I15).
    pub const TAKEN: u8 = 32;
    /// At the words of the last snapshot (read before its views faulted pages in), the huge
    /// page was mapped here, or surely was not (`hugetlb_phys.rs`, I15).
    pub const WAS_PRESENT: u8 = 64;
    pub const WAS_ABSENT: u8 = 128;
}

/// Up to three frames a private page may hold instead of its primary one, when the kernel's
/// choice is not yet known (a write after MADV_FREE settles on "old" or "zero" plus the write,
/// and only an observation tells which).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Alts {
    frames: [Option<FrameId>; 3],
}

impl Alts {
    pub fn iter(&self) -> impl Iterator<Item = FrameId> + '_ {
        self.frames.iter().flatten().copied()
    }
    pub fn is_empty(&self) -> bool {
        self.frames.iter().all(Option::is_none)
    }
    /// Adds a frame; `false` (and nothing added) when full.
    pub fn push(&mut self, f: FrameId) -> bool {
        match self.frames.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some(f);
                true
            }
            None => false,
        }
    }
    pub fn clear(&mut self) {
        self.frames = [None; 3];
    }
}

/// One mapped page of one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pte {
    pub kind: MapKind,
    pub prot: u8,
    pub backing: PageBacking,
    pub flags: u8,
    pub alts: Alts,
    /// The mmap or mremap call that made this page's VMA.
    pub vma: u32,
    /// The page's offset as its VMA reckons it (vm_pgoff + index in the VMA), `None` where the
    /// model cannot know it. A VMA is linear in it, so two neighbours whose offsets do not
    /// follow on are never one VMA. Private anonymous memory starts at the address's page
    /// number (do_mmap: pgoff = addr >> PAGE_SHIFT), /dev/zero and shared memory at 0.
    pub pgoff: Option<u64>,
    /// hugetlb state (`tlb` bits; 0 for every page that is not hugetlb, L6-L12).
    pub tlb: u8,
}

/// The mapped pages of one process, keyed by virtual page number.
#[derive(Clone, Debug, Default)]
pub struct AddressSpace {
    pub ptes: BTreeMap<u64, Pte>,
}

impl AddressSpace {
    pub fn get(&self, vpn: u64) -> Option<&Pte> {
        self.ptes.get(&vpn)
    }

    pub fn get_mut(&mut self, vpn: u64) -> Option<&mut Pte> {
        self.ptes.get_mut(&vpn)
    }

    /// Whether any page of `[vpn, vpn + n)` is mapped.
    pub fn any_mapped(&self, vpn: u64, n: u64) -> bool {
        self.ptes.range(vpn..vpn + n).next().is_some()
    }

    /// Removes `[vpn, vpn + n)`, returning what was there with its page numbers.
    pub fn remove_range(&mut self, vpn: u64, n: u64) -> Vec<(u64, Pte)> {
        let keys: Vec<u64> = self.ptes.range(vpn..vpn + n).map(|(k, _)| *k).collect();
        keys.into_iter()
            .filter_map(|k| self.ptes.remove(&k).map(|p| (k, p)))
            .collect()
    }
}

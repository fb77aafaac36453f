//! The words ops take besides handles and spans: mapping kinds, a map's fd and offset,
//! protections, advice, placement, remap flags, calls with a bad argument and the routes of a
//! `poke`, each with its trace keyword (`name`, `from_name`). Pure data: the numbers the kernel gets for them live in
//! [`tables`](crate::program::tables) and the executor.

use super::handle::At;
use super::span::Offset;

/// The four ways to get anonymous memory that this issue covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapKind {
    /// `mmap(NULL, len, RW, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)`: copy-on-write across fork.
    Private,
    /// `mmap(NULL, len, RW, MAP_SHARED|MAP_ANONYMOUS, -1, 0)`: one shmem object, shared by forks.
    Shared,
    /// `mmap(NULL, len, RW, MAP_PRIVATE, open("/dev/zero"), 0)`: like `Private`
    /// (docs/SEMANTICS.md C1).
    PrivateZero,
    /// `mmap(NULL, len, RW, MAP_SHARED, open("/dev/zero"), 0)`: a new shmem object (C2).
    SharedZero,
}

impl MapKind {
    pub const ALL: [MapKind; 4] = [
        MapKind::Private,
        MapKind::Shared,
        MapKind::PrivateZero,
        MapKind::SharedZero,
    ];

    pub fn is_shared(self) -> bool {
        matches!(self, MapKind::Shared | MapKind::SharedZero)
    }

    pub fn uses_dev_zero(self) -> bool {
        matches!(self, MapKind::PrivateZero | MapKind::SharedZero)
    }

    /// The trace keyword.
    pub fn name(self) -> &'static str {
        match self {
            MapKind::Private => "private",
            MapKind::Shared => "shared",
            MapKind::PrivateZero => "private-zero",
            MapKind::SharedZero => "shared-zero",
        }
    }

    pub fn from_name(s: &str) -> Option<MapKind> {
        MapKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// What a `map` passes to mmap besides its kind, length and address: by default the fd and
/// offset of the kind (-1 and 0 for an anonymous mapping; for /dev/zero, a descriptor opened for
/// this map alone and closed right after the mmap, offset 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MapArgs {
    /// The program's /dev/zero descriptor (opened once by the root before the first op,
    /// inherited by every process, never closed): passed instead of -1 with MAP_ANONYMOUS, where
    /// Linux ignores it, or mapped instead of a descriptor of the map's own (docs/SEMANTICS.md
    /// A10, C4).
    pub fd: bool,
    /// mmap's offset; only anonymous kinds take one (Linux ignores an aligned one and refuses an
    /// unaligned one, A10).
    pub offset: Offset,
    /// `hugetlb`: MAP_HUGETLB, the default huge page size (docs/SEMANTICS.md L6). The length
    /// stays in base pages; the kernel rounds it up to whole huge pages, so the handle covers
    /// [`caps::HUGETLB_PAGES`](super::caps::HUGETLB_PAGES) pages per huge page.
    pub hugetlb: bool,
}

impl MapArgs {
    pub fn is_default(self) -> bool {
        self == MapArgs::default()
    }
}

/// Protection for `protect` (mprotect).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prot {
    None,
    Read,
    ReadWrite,
    /// PROT_WRITE alone; x86 cannot express write-only pages, so reads work too
    /// (docs/SEMANTICS.md A7).
    Write,
}

impl Prot {
    pub const ALL: [Prot; 4] = [Prot::None, Prot::Read, Prot::ReadWrite, Prot::Write];
    pub fn name(self) -> &'static str {
        match self {
            Prot::None => "none",
            Prot::Read => "read",
            Prot::ReadWrite => "read-write",
            Prot::Write => "write",
        }
    }
    pub fn from_name(s: &str) -> Option<Prot> {
        Prot::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// Advice for `advise` (madvise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Advice {
    DontNeed,
    Free,
    Remove,
    DontFork,
    DoFork,
    WipeOnFork,
    KeepOnFork,
    PopulateRead,
    PopulateWrite,
    Cold,
    PageOut,
    GuardInstall,
    GuardRemove,
    HugePage,
    NoHugePage,
    /// MADV_COLLAPSE (docs/SEMANTICS.md L3).
    Collapse,
}

impl Advice {
    pub const ALL: [Advice; 16] = [
        Advice::DontNeed,
        Advice::Free,
        Advice::Remove,
        Advice::DontFork,
        Advice::DoFork,
        Advice::WipeOnFork,
        Advice::KeepOnFork,
        Advice::PopulateRead,
        Advice::PopulateWrite,
        Advice::Cold,
        Advice::PageOut,
        Advice::GuardInstall,
        Advice::GuardRemove,
        Advice::HugePage,
        Advice::NoHugePage,
        Advice::Collapse,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Advice::DontNeed => "dontneed",
            Advice::Free => "free",
            Advice::Remove => "remove",
            Advice::DontFork => "dontfork",
            Advice::DoFork => "dofork",
            Advice::WipeOnFork => "wipeonfork",
            Advice::KeepOnFork => "keeponfork",
            Advice::PopulateRead => "populate-read",
            Advice::PopulateWrite => "populate-write",
            Advice::Cold => "cold",
            Advice::PageOut => "pageout",
            Advice::GuardInstall => "guard-install",
            Advice::GuardRemove => "guard-remove",
            Advice::HugePage => "hugepage",
            Advice::NoHugePage => "nohugepage",
            Advice::Collapse => "collapse",
        }
    }
    pub fn from_name(s: &str) -> Option<Advice> {
        Advice::ALL.into_iter().find(|a| a.name() == s)
    }
    /// The MADV_* number (`tables::madv`).
    pub fn number(self) -> i32 {
        use crate::program::tables::madv;
        match self {
            Advice::DontNeed => madv::DONTNEED,
            Advice::Free => madv::FREE,
            Advice::Remove => madv::REMOVE,
            Advice::DontFork => madv::DONTFORK,
            Advice::DoFork => madv::DOFORK,
            Advice::WipeOnFork => madv::WIPEONFORK,
            Advice::KeepOnFork => madv::KEEPONFORK,
            Advice::PopulateRead => madv::POPULATE_READ,
            Advice::PopulateWrite => madv::POPULATE_WRITE,
            Advice::Cold => madv::COLD,
            Advice::PageOut => madv::PAGEOUT,
            Advice::GuardInstall => madv::GUARD_INSTALL,
            Advice::GuardRemove => madv::GUARD_REMOVE,
            Advice::HugePage => madv::HUGEPAGE,
            Advice::NoHugePage => madv::NOHUGEPAGE,
            Advice::Collapse => madv::COLLAPSE,
        }
    }
}

/// Where a `map` asks to go, relative to an existing handle's range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlaceHow {
    /// MAP_FIXED: exactly there, replacing what is mapped (docs/SEMANTICS.md D3).
    Fixed,
    /// MAP_FIXED_NOREPLACE: exactly there, or EEXIST (D4).
    NoReplace,
    /// A hint address without MAP_FIXED: the kernel may take it or not (A5).
    Hint,
    /// MAP_FIXED and MAP_FIXED_NOREPLACE together: NOREPLACE wins (D6).
    FixedNoReplace,
}

impl PlaceHow {
    pub const ALL: [PlaceHow; 4] = [
        PlaceHow::Fixed,
        PlaceHow::NoReplace,
        PlaceHow::Hint,
        PlaceHow::FixedNoReplace,
    ];
    pub fn name(self) -> &'static str {
        match self {
            PlaceHow::Fixed => "fixed",
            PlaceHow::NoReplace => "noreplace",
            PlaceHow::Hint => "hint",
            PlaceHow::FixedNoReplace => "fixed-noreplace",
        }
    }
    pub fn from_name(s: &str) -> Option<PlaceHow> {
        PlaceHow::ALL.into_iter().find(|h| h.name() == s)
    }
    /// Whether the call asks for exactly this address (MAP_FIXED, MAP_FIXED_NOREPLACE, or both).
    pub fn is_exact(self) -> bool {
        self != PlaceHow::Hint
    }
    /// Whether the call refuses to replace what is there (MAP_FIXED_NOREPLACE, alone or not).
    pub fn no_replace(self) -> bool {
        matches!(self, PlaceHow::NoReplace | PlaceHow::FixedNoReplace)
    }
}

/// mremap flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RemapFlags {
    pub maymove: bool,
    pub dontunmap: bool,
    /// MREMAP_FIXED with this new address.
    pub fixed: Option<At>,
}

/// A call made with a deliberately bad argument: its errno is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Syscall {
    Mmap,
    Munmap,
    Mprotect,
    Madvise,
    Mremap,
}

impl Syscall {
    pub const ALL: [Syscall; 5] = [
        Syscall::Mmap,
        Syscall::Munmap,
        Syscall::Mprotect,
        Syscall::Madvise,
        Syscall::Mremap,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Syscall::Mmap => "mmap",
            Syscall::Munmap => "munmap",
            Syscall::Mprotect => "mprotect",
            Syscall::Madvise => "madvise",
            Syscall::Mremap => "mremap",
        }
    }
    pub fn from_name(s: &str) -> Option<Syscall> {
        Syscall::ALL.into_iter().find(|c| c.name() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BadArg {
    /// Length 0 (for mremap, new size 0).
    ZeroLength,
    /// Address one byte past the handle's base.
    Unaligned,
    /// A length whose page rounding or end address wraps around.
    Overflow,
    UnknownAdvice,
    UnknownProt,
    UnknownFlags,
}

impl BadArg {
    pub const ALL: [BadArg; 6] = [
        BadArg::ZeroLength,
        BadArg::Unaligned,
        BadArg::Overflow,
        BadArg::UnknownAdvice,
        BadArg::UnknownProt,
        BadArg::UnknownFlags,
    ];
    pub fn name(self) -> &'static str {
        match self {
            BadArg::ZeroLength => "zero-length",
            BadArg::Unaligned => "unaligned",
            BadArg::Overflow => "overflow",
            BadArg::UnknownAdvice => "unknown-advice",
            BadArg::UnknownProt => "unknown-prot",
            BadArg::UnknownFlags => "unknown-flags",
        }
    }
    pub fn from_name(s: &str) -> Option<BadArg> {
        BadArg::ALL.into_iter().find(|b| b.name() == s)
    }
    /// Whether the combination is one cowcheck checks. Left out: bad arguments that Linux
    /// accepts and that would map memory or touch the harness (mmap ignores unknown prot and
    /// flag bits; madvise/munmap with a huge but non-wrapping length reaches harness memory).
    pub fn applies_to(self, call: Syscall) -> bool {
        match self {
            BadArg::ZeroLength | BadArg::Unaligned | BadArg::Overflow => true,
            BadArg::UnknownAdvice => call == Syscall::Madvise,
            BadArg::UnknownProt => call == Syscall::Mprotect,
            BadArg::UnknownFlags => call == Syscall::Mremap,
        }
    }
}

/// How a `poke` reaches memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Via {
    /// pwrite on /proc/self/mem: a forced write (FOLL_FORCE), which breaks copy-on-write even
    /// where the mapping is not writable (docs/SEMANTICS.md E6, K1).
    Mem,
    /// process_vm_writev on ourselves: a write with the mapping's own permissions.
    Vm,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Mem => "mem",
            Via::Vm => "vm",
        }
    }
    pub fn from_name(s: &str) -> Option<Via> {
        [Via::Mem, Via::Vm].into_iter().find(|v| v.name() == s)
    }
}

/// What a racing thread does again and again until it is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RaceKind {
    /// Stores 1, 2, 3, ... (u64, little-endian) into the last 8 bytes of the page, each store
    /// followed by publishing the value it stored (so that a reader of the published counter
    /// knows the page holds at least that value).
    Write,
    /// `madvise(MADV_DONTNEED)` of the page, again and again (half of Dirty COW's pair,
    /// docs/SEMANTICS.md T7); its rounds are its counter.
    DontNeed,
    /// As `Write`, but each store is a forced write through `/proc/self/mem` (`pwrite`, the
    /// `poke` op's way: it writes a private page its process may not write, T8).
    Poke,
    /// Loads the last 8 bytes of the page again and again; its `stop` reports the rounds, the
    /// first and the last value loaded, and how many loads were smaller than the one before
    /// (docs/SEMANTICS.md T10).
    Read,
    /// `mprotect`s the page read-only, then read-write, again and again; the last round (it
    /// starts after `stop` was asked) leaves it read-write (docs/SEMANTICS.md T11).
    Protect,
    /// `munmap`s the page, then maps a fresh private anonymous read-write page there
    /// (`MAP_FIXED`), again and again; the last round leaves it mapped, zero-filled
    /// (docs/SEMANTICS.md T12).
    Unmap,
    /// Moves the page to the next page's address and back (`mremap(MREMAP_MAYMOVE |
    /// MREMAP_FIXED)`), again and again, its contents travelling with it; the last round leaves
    /// it at its own address and the next page a hole (docs/SEMANTICS.md T13).
    Remap,
    /// `vmsplice`s the page into a pipe of its own and reads it all back, again and again; its
    /// `stop` reports as a `read` thread's, the loads being the last words drained, and a
    /// drained page whose other bytes differ from the first one's counts as a drop
    /// (docs/SEMANTICS.md T14).
    Vmsplice,
    /// `madvise(MADV_FREE)` of the page, again and again, its rounds its counter: the page is
    /// lazily freed, its old bytes or zero until written (docs/SEMANTICS.md T15).
    Free,
    /// `madvise(MADV_PAGEOUT)` of the page, again and again, its rounds its counter: its bytes
    /// never change (docs/SEMANTICS.md T16).
    PageOut,
    /// Loads the page's last word, stores the round's number there (a fresh page's first
    /// touch: the page faults in) and `madvise(MADV_DONTNEED)`s the page, again and again; the
    /// last round stores and zaps no more (docs/SEMANTICS.md T17).
    Fault,
}

impl RaceKind {
    pub const ALL: [RaceKind; 11] = [
        RaceKind::Write,
        RaceKind::DontNeed,
        RaceKind::Poke,
        RaceKind::Read,
        RaceKind::Protect,
        RaceKind::Unmap,
        RaceKind::Remap,
        RaceKind::Vmsplice,
        RaceKind::Free,
        RaceKind::PageOut,
        RaceKind::Fault,
    ];
    pub fn name(self) -> &'static str {
        match self {
            RaceKind::Write => "write",
            RaceKind::DontNeed => "dontneed",
            RaceKind::Poke => "poke",
            RaceKind::Read => "read",
            RaceKind::Protect => "protect",
            RaceKind::Unmap => "unmap",
            RaceKind::Remap => "remap",
            RaceKind::Vmsplice => "vmsplice",
            RaceKind::Free => "free",
            RaceKind::PageOut => "pageout",
            RaceKind::Fault => "fault",
        }
    }
    /// Whether the thread stores the counter into the page's last word.
    pub fn stores(self) -> bool {
        matches!(self, RaceKind::Write | RaceKind::Poke | RaceKind::Fault)
    }
    /// Whether the thread zaps the page it stores to between its stores, so that the page may
    /// read all zero at any moment while it runs (T17): no reader or dontneed thread joins it.
    pub fn zaps_itself(self) -> bool {
        self == RaceKind::Fault
    }
    /// Whether a storing thread's process may run this kind beside it on one page (T9, T15,
    /// T16).
    pub fn pairs_with_storer(self) -> bool {
        matches!(
            self,
            RaceKind::DontNeed | RaceKind::Free | RaceKind::PageOut
        )
    }
    /// Whether the racing process must store nothing while the thread runs: a store to the
    /// thread's page would be kept, fault or not as the interleaving goes (T7, T11, T15, T17),
    /// and handles do not tell which page a store reaches. A `pageout` thread changes no
    /// bytes (T16): its process stores on.
    pub fn bars_stores(self) -> bool {
        matches!(
            self,
            RaceKind::DontNeed
                | RaceKind::Protect
                | RaceKind::Unmap
                | RaceKind::Remap
                | RaceKind::Vmsplice
                | RaceKind::Free
                | RaceKind::Fault
        )
    }
    /// Whether the racing process must load nothing and map nothing while the thread runs: its
    /// page comes and goes (a load there would die or not as the interleaving goes, and a new
    /// mapping could land in the hole the thread just made, T12, T13).
    pub fn bars_loads(self) -> bool {
        matches!(self, RaceKind::Unmap | RaceKind::Remap)
    }
    /// Whether the thread changes its process's layout (a view of the layout holds it between
    /// two rounds).
    pub fn changes_layout(self) -> bool {
        matches!(self, RaceKind::Protect | RaceKind::Unmap | RaceKind::Remap)
    }
    /// How many pages from the raced one the thread works on: a `remap` thread's spare page
    /// (the next one) is its too (T13).
    pub fn pages(self) -> u16 {
        if self == RaceKind::Remap { 2 } else { 1 }
    }
    /// Whether the thread works on the page's last word (stores to it or loads it), rather
    /// than on the whole page.
    /// Whether the thread reports what it saw, as a `read` thread does (T10, T14).
    pub fn watches(self) -> bool {
        matches!(self, RaceKind::Read | RaceKind::Vmsplice)
    }
    pub fn on_word(self) -> bool {
        self.stores() || self == RaceKind::Read
    }
    /// The wire code (`kernel::protocol`).
    pub fn code(self) -> u64 {
        self as u64
    }
    pub fn from_code(c: u64) -> Option<RaceKind> {
        RaceKind::ALL.into_iter().find(|k| k.code() == c)
    }
    pub fn from_name(s: &str) -> Option<RaceKind> {
        RaceKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// The most thread handles in one program.
pub const MAX_THREADS: usize = 8;

/// Where a racing thread stores: the last 8 bytes of its page.
pub const RACE_WORD: usize = 8;

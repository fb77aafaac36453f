//! The op language: pure data, no I/O.
//!
//! A program is a list of ops over abstract handles: processes (`p0`, the root, and the children
//! that `fork` creates) and mappings (`m0`, ... created by `map`). A mapping handle names the
//! address range that its `map` returned; a process that forked after the map inherits it at the
//! same address. Ops never carry raw addresses, so a program replays on any run.

use std::fmt;

/// Hard caps that keep random programs harmless to the machine. The parser rejects traces past
/// them, the generators never exceed them and the executor enforces them again.
pub mod caps {
    /// Pages in one `map` (the 1..=64).
    pub const MAX_MAP_PAGES: u16 = 64;
    /// Mapping handles per program.
    pub const MAX_MAPS: usize = 32;
    /// Process handles per program, the root included.
    pub const MAX_PROCS: usize = 32;
    /// Processes alive at once.
    pub const MAX_LIVE: usize = 16;
    /// Ops per program.
    pub const MAX_OPS: usize = 512;
    /// Byte offsets inside a page are bounded by the smallest page size Linux has (4 KiB), so a
    /// trace means the same thing on 4 KiB, 16 KiB and 64 KiB kernels.
    pub const MAX_BYTE_OFFSET: u16 = 4096;
}

/// A process handle; `p0` is the root of the program's process tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcId(pub u8);

/// A mapping handle: the range one `map` op returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MapId(pub u8);

impl ProcId {
    pub const ROOT: ProcId = ProcId(0);
}

impl fmt::Display for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

impl fmt::Display for MapId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// The four ways to get anonymous memory that this issue covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapKind {
    /// `mmap(NULL, len, RW, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)`: copy-on-write across fork.
    Private,
    /// `mmap(NULL, len, RW, MAP_SHARED|MAP_ANONYMOUS, -1, 0)`: one shmem object, shared by forks.
    Shared,
    /// `mmap(NULL, len, RW, MAP_PRIVATE, open("/dev/zero"), 0)`: like `Private` (SEMANTICS C1).
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

/// Pages `[start, end)` of a mapping, counted from the mapping's first page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageRange {
    pub start: u16,
    pub end: u16,
}

impl PageRange {
    pub fn new(start: u16, end: u16) -> PageRange {
        debug_assert!(start < end);
        PageRange { start, end }
    }
    pub fn len(self) -> u16 {
        self.end - self.start
    }
    pub fn is_empty(self) -> bool {
        self.end <= self.start
    }
    pub fn pages(self) -> std::ops::Range<u16> {
        self.start..self.end
    }
}

/// What a `write` or `read` touches: whole pages, or a byte range inside one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Span {
    Pages(PageRange),
    /// Bytes `[start, end)` of page `page`; `end <= caps::MAX_BYTE_OFFSET`.
    Bytes {
        page: u16,
        start: u16,
        end: u16,
    },
}

impl Span {
    /// The pages the span touches, in the order the executor touches them (ascending).
    pub fn page_range(self) -> PageRange {
        match self {
            Span::Pages(r) => r,
            Span::Bytes { page, .. } => PageRange::new(page, page + 1),
        }
    }
    /// Byte range touched inside page `page` (which must be in `page_range()`), for a page size.
    pub fn bytes_in_page(self, page_size: usize) -> std::ops::Range<usize> {
        match self {
            Span::Pages(_) => 0..page_size,
            Span::Bytes { start, end, .. } => start as usize..end as usize,
        }
    }
}

/// The bytes a `write` stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Every byte is the value.
    Fill(u8),
    /// The byte at offset `o` from the start of the mapping is `base + o mod 251`: neighbouring
    /// pages differ, so a page that lands at the wrong offset is seen.
    Ramp(u8),
}

impl Pattern {
    /// The byte stored at mapping byte offset `offset`.
    #[inline]
    pub fn byte_at(self, offset: usize) -> u8 {
        match self {
            Pattern::Fill(b) => b,
            Pattern::Ramp(b) => b.wrapping_add((offset % 251) as u8),
        }
    }
}

/// Protection for `protect` (mprotect).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prot {
    None,
    Read,
    ReadWrite,
    /// PROT_WRITE alone; x86 cannot express write-only pages, so reads work too (SEMANTICS A7).
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
}

impl Advice {
    pub const ALL: [Advice; 15] = [
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
        }
    }
}

/// Where a `map` asks to go, relative to an existing handle's range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlaceHow {
    /// MAP_FIXED: exactly there, replacing what is mapped (SEMANTICS D3).
    Fixed,
    /// MAP_FIXED_NOREPLACE: exactly there, or EEXIST (D4).
    NoReplace,
    /// A hint address without MAP_FIXED: the kernel may take it or not (A5).
    Hint,
}

impl PlaceHow {
    pub fn name(self) -> &'static str {
        match self {
            PlaceHow::Fixed => "fixed",
            PlaceHow::NoReplace => "noreplace",
            PlaceHow::Hint => "hint",
        }
    }
}

/// An address named by a handle and a page inside its range: `m0+2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct At {
    pub map: MapId,
    pub page: u16,
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

/// One operation, performed by one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `proc` maps `pages` pages of `kind` and names the range `map`.
    Map {
        proc: ProcId,
        map: MapId,
        kind: MapKind,
        pages: u16,
    },
    /// `proc` stores `pattern` into `span` of `map`, page by page in ascending order.
    Write {
        proc: ProcId,
        map: MapId,
        span: Span,
        pattern: Pattern,
    },
    /// `proc` loads `span` of `map`; the bytes are observed.
    Read {
        proc: ProcId,
        map: MapId,
        span: Span,
    },
    /// `proc` forks; the child is `child`.
    Fork { proc: ProcId, child: ProcId },
    /// `proc` exits (status 0); its children live on.
    Exit { proc: ProcId },
    /// `proc` unmaps `pages` of `map`.
    Unmap {
        proc: ProcId,
        map: MapId,
        pages: PageRange,
    },
    /// A `map` with placement: MAP_FIXED, MAP_FIXED_NOREPLACE or a hint at `at`.
    MapAt {
        proc: ProcId,
        map: MapId,
        kind: MapKind,
        pages: u16,
        how: PlaceHow,
        at: At,
    },
    /// `proc` changes the protection of `pages` of `map` (mprotect).
    Protect {
        proc: ProcId,
        map: MapId,
        pages: PageRange,
        prot: Prot,
    },
    /// `proc` gives advice on `pages` of `map` (madvise).
    Advise {
        proc: ProcId,
        map: MapId,
        pages: PageRange,
        advice: Advice,
    },
    /// `proc` remaps `old` pages of `map` (empty: old_size 0) to `new_pages` pages; the result
    /// range is named `result`.
    Remap {
        proc: ProcId,
        map: MapId,
        old: PageRange,
        new_pages: u16,
        flags: RemapFlags,
        result: MapId,
    },
    /// `proc` calls `call` on `map` with a bad argument.
    Invalid {
        proc: ProcId,
        map: MapId,
        call: Syscall,
        bad: BadArg,
    },
    /// `proc` writes `pattern` into `span` of `map` through the kernel rather than with
    /// stores: /proc/self/mem (`mem`, FOLL_FORCE, the Dirty COW path) or process_vm_writev
    /// on itself (`vm`), one page at a time in ascending order.
    Poke {
        proc: ProcId,
        map: MapId,
        span: Span,
        pattern: Pattern,
        via: Via,
    },
    /// `proc` vmsplices page `page` of `map` into the program's pipe (one pipe, created by the
    /// root and inherited by every process): the pipe holds a reference to the page.
    Vmsplice { proc: ProcId, map: MapId, page: u16 },
    /// `proc` reads the oldest page out of the program's pipe; the bytes are observed.
    PipeRead { proc: ProcId },
}

/// How a `poke` reaches memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Via {
    /// pwrite on /proc/self/mem: a forced write (FOLL_FORCE), which breaks copy-on-write even
    /// where the mapping is not writable (SEMANTICS E6, K1).
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

/// The op kinds, for statistics and divergence signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    Map,
    Write,
    Read,
    Fork,
    Exit,
    Unmap,
    Protect,
    Advise,
    Remap,
    Invalid,
    Poke,
    Vmsplice,
    PipeRead,
}

impl OpKind {
    pub const ALL: [OpKind; 13] = [
        OpKind::Map,
        OpKind::Write,
        OpKind::Read,
        OpKind::Fork,
        OpKind::Exit,
        OpKind::Unmap,
        OpKind::Protect,
        OpKind::Advise,
        OpKind::Remap,
        OpKind::Invalid,
        OpKind::Poke,
        OpKind::Vmsplice,
        OpKind::PipeRead,
    ];
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Map => "map",
            OpKind::Write => "write",
            OpKind::Read => "read",
            OpKind::Fork => "fork",
            OpKind::Exit => "exit",
            OpKind::Unmap => "unmap",
            OpKind::Protect => "protect",
            OpKind::Advise => "advise",
            OpKind::Remap => "remap",
            OpKind::Invalid => "invalid",
            OpKind::Poke => "poke",
            OpKind::Vmsplice => "vmsplice",
            OpKind::PipeRead => "pipe-read",
        }
    }
}

impl Op {
    /// The process that performs the op.
    pub fn proc(&self) -> ProcId {
        let mut op = *self;
        *op.proc_mut()
    }

    /// The same op performed by another process.
    pub fn with_proc(self, p: ProcId) -> Op {
        let mut op = self;
        *op.proc_mut() = p;
        op
    }

    fn proc_mut(&mut self) -> &mut ProcId {
        match self {
            Op::Map { proc, .. }
            | Op::Write { proc, .. }
            | Op::Read { proc, .. }
            | Op::Fork { proc, .. }
            | Op::Exit { proc }
            | Op::Unmap { proc, .. }
            | Op::MapAt { proc, .. }
            | Op::Protect { proc, .. }
            | Op::Advise { proc, .. }
            | Op::Remap { proc, .. }
            | Op::Invalid { proc, .. }
            | Op::Poke { proc, .. }
            | Op::Vmsplice { proc, .. }
            | Op::PipeRead { proc } => proc,
        }
    }

    /// The mapping the op names, if any.
    pub fn map(&self) -> Option<MapId> {
        match *self {
            Op::Map { map, .. }
            | Op::Write { map, .. }
            | Op::Read { map, .. }
            | Op::Unmap { map, .. }
            | Op::MapAt { map, .. }
            | Op::Protect { map, .. }
            | Op::Advise { map, .. }
            | Op::Remap { map, .. }
            | Op::Invalid { map, .. }
            | Op::Poke { map, .. }
            | Op::Vmsplice { map, .. } => Some(map),
            Op::Fork { .. } | Op::Exit { .. } | Op::PipeRead { .. } => None,
        }
    }

    pub fn kind(&self) -> OpKind {
        match self {
            Op::Map { .. } => OpKind::Map,
            Op::Write { .. } => OpKind::Write,
            Op::Read { .. } => OpKind::Read,
            Op::Fork { .. } => OpKind::Fork,
            Op::Exit { .. } => OpKind::Exit,
            Op::Unmap { .. } => OpKind::Unmap,
            Op::MapAt { .. } => OpKind::Map,
            Op::Protect { .. } => OpKind::Protect,
            Op::Advise { .. } => OpKind::Advise,
            Op::Remap { .. } => OpKind::Remap,
            Op::Invalid { .. } => OpKind::Invalid,
            Op::Poke { .. } => OpKind::Poke,
            Op::Vmsplice { .. } => OpKind::Vmsplice,
            Op::PipeRead { .. } => OpKind::PipeRead,
        }
    }

    /// The op with every handle renamed.
    pub fn rename(self, p: impl Fn(ProcId) -> ProcId, m: impl Fn(MapId) -> MapId) -> Op {
        let mut op = self.with_proc(p(self.proc()));
        let at = |a: At| At {
            map: m(a.map),
            page: a.page,
        };
        match &mut op {
            Op::Map { map, .. }
            | Op::Write { map, .. }
            | Op::Read { map, .. }
            | Op::Unmap { map, .. }
            | Op::Protect { map, .. }
            | Op::Advise { map, .. }
            | Op::Invalid { map, .. }
            | Op::Poke { map, .. }
            | Op::Vmsplice { map, .. } => *map = m(*map),
            Op::MapAt { map, at: a, .. } => {
                *map = m(*map);
                *a = at(*a);
            }
            Op::Remap {
                map, flags, result, ..
            } => {
                *map = m(*map);
                *result = m(*result);
                flags.fixed = flags.fixed.map(at);
            }
            Op::Fork { child, .. } => *child = p(*child),
            Op::Exit { .. } | Op::PipeRead { .. } => {}
        }
        op
    }

    /// The handle an op creates (a map's, or a remap's result), if any.
    pub fn creates(&self) -> Option<MapId> {
        match *self {
            Op::Map { map, .. } | Op::MapAt { map, .. } => Some(map),
            Op::Remap { result, .. } => Some(result),
            _ => None,
        }
    }

    /// Every mapping handle the op names (the one it acts on, a placement target, a result).
    pub fn maps(&self) -> Vec<MapId> {
        match *self {
            Op::MapAt { map, at, .. } => vec![map, at.map],
            Op::Remap {
                map, flags, result, ..
            } => {
                let mut v = vec![map, result];
                if let Some(at) = flags.fixed {
                    v.push(at.map);
                }
                v
            }
            _ => self.map().into_iter().collect(),
        }
    }

    /// Whether the whole observable state is compared after this op (the minimum: after
    /// every fork and exit; the end of the program is always compared too).
    pub fn snapshot_after(&self) -> bool {
        matches!(self, Op::Fork { .. } | Op::Exit { .. })
    }
}

/// A comment line of a trace, kept so that `print(parse(t)) == t`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Comment {
    /// The comment stands before op `before_op` (or, if `inline`, at the end of that op's line).
    pub before_op: usize,
    pub inline: bool,
    /// The text after `#`, without the line break; `None` for a blank line.
    pub text: Option<String>,
}

/// A program: ops in order, plus the comments of the trace it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Program {
    pub ops: Vec<Op>,
    pub comments: Vec<Comment>,
    /// Inline expectations (`=> ...` on an op's line): `(op index, expectation)`, ascending,
    /// at most one per op (the printer writes the first).
    pub expects: Vec<(usize, crate::program::expect::Expect)>,
}

impl Program {
    pub fn new(ops: Vec<Op>) -> Program {
        Program {
            ops,
            comments: Vec::new(),
            expects: Vec::new(),
        }
    }

    /// The inline expectation of op `index`, if the trace wrote one.
    pub fn expect_of(&self, index: usize) -> Option<&crate::program::expect::Expect> {
        self.expects
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, e)| e)
    }

    /// Number of `fork` ops.
    pub fn forks(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o, Op::Fork { .. }))
            .count()
    }

    /// The program with handles, pages and values left out: what groups findings that are
    /// the same bug (`run --keep-going`), as crash triage groups crashes by signature.
    pub fn shape(&self) -> String {
        self.ops
            .iter()
            .map(|op| match *op {
                Op::Map { kind, .. } => format!("map {}", kind.name()),
                Op::MapAt { kind, how, .. } => format!("map {} {}", kind.name(), how.name()),
                Op::Protect { prot, .. } => format!("protect {}", prot.name()),
                Op::Advise { advice, .. } => format!("advise {}", advice.name()),
                Op::Remap { old, flags, .. } => format!(
                    "remap{}{}{}{}",
                    if old.start == old.end { " old0" } else { "" },
                    if flags.maymove { " maymove" } else { "" },
                    if flags.dontunmap { " dontunmap" } else { "" },
                    if flags.fixed.is_some() { " fixed" } else { "" }
                ),
                Op::Invalid { call, bad, .. } => {
                    format!("invalid {} {}", call.name(), bad.name())
                }
                Op::Poke { via, .. } => format!("poke {}", via.name()),
                _ => op.kind().name().to_string(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The pages of each mapping handle, as its `map` op declared them.
    pub fn map_sizes(&self) -> Vec<Option<u16>> {
        let mut sizes = vec![None; caps::MAX_MAPS];
        for op in &self.ops {
            if let Op::Map { map, pages, .. } = *op
                && let Some(slot) = sizes.get_mut(map.0 as usize)
            {
                *slot = Some(pages);
            }
        }
        sizes
    }
}

/// Which part of an op a validation error is about, so that the trace parser can point at the
/// token's column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Culprit {
    Proc,
    Child,
    Map,
    Span,
    Count,
}

/// Why an op cannot stand where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidOp {
    pub culprit: Culprit,
    pub message: String,
}

fn invalid(culprit: Culprit, message: String) -> InvalidOp {
    InvalidOp { culprit, message }
}

/// The static rules of the language, applied op by op: handles exist before they are used, new
/// handles are fresh, ranges lie inside their mapping, and the caps hold. Whether an op kills its
/// process is dynamic and never an error: ops of a dead process are skipped on both sides.
#[derive(Clone, Debug)]
pub struct Validator {
    procs: [ProcState; caps::MAX_PROCS],
    maps: [Option<u16>; caps::MAX_MAPS],
    live: usize,
    ops: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProcState {
    Unborn,
    Alive,
    Exited,
}

impl Default for Validator {
    fn default() -> Self {
        let mut procs = [ProcState::Unborn; caps::MAX_PROCS];
        procs[0] = ProcState::Alive;
        Validator {
            procs,
            maps: [None; caps::MAX_MAPS],
            live: 1,
            ops: 0,
        }
    }
}

impl Validator {
    pub fn new() -> Validator {
        Validator::default()
    }

    /// Pages declared for a mapping handle, if it exists yet.
    pub fn map_pages(&self, map: MapId) -> Option<u16> {
        self.maps.get(map.0 as usize).copied().flatten()
    }

    /// Whether a process handle has been created and has not exited.
    pub fn is_alive(&self, proc: ProcId) -> bool {
        self.procs.get(proc.0 as usize) == Some(&ProcState::Alive)
    }

    /// Checks `op` against everything admitted before it and, if it is valid, admits it.
    pub fn admit(&mut self, op: &Op) -> Result<(), InvalidOp> {
        if self.ops >= caps::MAX_OPS {
            return Err(invalid(
                Culprit::Proc,
                format!("more than {} ops in one program", caps::MAX_OPS),
            ));
        }
        let proc = op.proc();
        match self.procs.get(proc.0 as usize) {
            None => {
                return Err(invalid(
                    Culprit::Proc,
                    format!(
                        "process handle {proc} is past the cap of {} processes",
                        caps::MAX_PROCS
                    ),
                ));
            }
            Some(ProcState::Unborn) => {
                return Err(invalid(
                    Culprit::Proc,
                    format!("unknown process {proc}: no fork created it"),
                ));
            }
            Some(ProcState::Exited) => {
                return Err(invalid(
                    Culprit::Proc,
                    format!("process {proc} has already exited"),
                ));
            }
            Some(ProcState::Alive) => {}
        }
        match *op {
            Op::Map { map, pages, .. } => self.new_map(map, pages)?,
            Op::Write { map, span, .. }
            | Op::Read { map, span, .. }
            | Op::Poke { map, span, .. } => {
                let pages = self.known_map(map)?;
                check_span(span, pages)?;
            }
            Op::Vmsplice { map, page, .. } => {
                let pages = self.known_map(map)?;
                check_span(
                    Span::Pages(PageRange {
                        start: page,
                        end: page.saturating_add(1),
                    }),
                    pages,
                )?;
            }
            Op::PipeRead { .. } => {}
            Op::Unmap {
                map, pages: range, ..
            } => {
                let pages = self.known_map(map)?;
                check_span(Span::Pages(range), pages)?;
            }
            Op::Fork { child, .. } => {
                match self.procs.get(child.0 as usize) {
                    None => {
                        return Err(invalid(
                            Culprit::Child,
                            format!(
                                "process handle {child} is past the cap of {} processes",
                                caps::MAX_PROCS
                            ),
                        ));
                    }
                    Some(ProcState::Unborn) => {}
                    Some(_) => {
                        return Err(invalid(
                            Culprit::Child,
                            format!(
                                "process handle {child} is already taken; a fork needs a new handle"
                            ),
                        ));
                    }
                }
                if self.live >= caps::MAX_LIVE {
                    return Err(invalid(
                        Culprit::Child,
                        format!("more than {} processes alive at once", caps::MAX_LIVE),
                    ));
                }
                self.procs[child.0 as usize] = ProcState::Alive;
                self.live += 1;
            }
            Op::Exit { .. } => {
                self.procs[proc.0 as usize] = ProcState::Exited;
                self.live -= 1;
            }
            Op::MapAt { map, pages, at, .. } => {
                let target = self.known_map(at.map)?;
                if at.page >= target {
                    return Err(invalid(
                        Culprit::Span,
                        format!(
                            "page {} is out of range: {} has {target} pages",
                            at.page, at.map
                        ),
                    ));
                }
                // Placement stays inside the target's range, so MAP_FIXED can never land on
                // the harness's own memory.
                if at.page as u32 + pages as u32 > target as u32 {
                    return Err(invalid(
                        Culprit::Count,
                        format!(
                            "{pages} pages from {}+{} run past its {target} pages",
                            at.map, at.page
                        ),
                    ));
                }
                self.new_map(map, pages)?;
            }
            Op::Protect {
                map, pages: range, ..
            }
            | Op::Advise {
                map, pages: range, ..
            } => {
                let pages = self.known_map(map)?;
                check_span(Span::Pages(range), pages)?;
            }
            Op::Remap {
                map,
                old,
                new_pages,
                flags,
                result,
                ..
            } => {
                let pages = self.known_map(map)?;
                if old.start > old.end || old.end > pages || old.start >= pages {
                    return Err(invalid(
                        Culprit::Span,
                        format!(
                            "page range {}..{} is out of range: the mapping has {pages} pages",
                            old.start, old.end
                        ),
                    ));
                }
                if let Some(at) = flags.fixed {
                    let target = self.known_map(at.map)?;
                    if at.page as u32 + new_pages as u32 > target as u32 {
                        return Err(invalid(
                            Culprit::Count,
                            format!(
                                "{new_pages} pages from {}+{} run past its {target} pages",
                                at.map, at.page
                            ),
                        ));
                    }
                }
                self.new_map(result, new_pages)?;
            }
            Op::Invalid { map, call, bad, .. } => {
                self.known_map(map)?;
                if !bad.applies_to(call) {
                    return Err(invalid(
                        Culprit::Count,
                        format!(
                            "{} is not a bad argument cowcheck checks for {}",
                            bad.name(),
                            call.name()
                        ),
                    ));
                }
            }
        }
        self.ops += 1;
        Ok(())
    }

    fn new_map(&mut self, map: MapId, pages: u16) -> Result<(), InvalidOp> {
        match self.maps.get(map.0 as usize) {
            None => {
                return Err(invalid(
                    Culprit::Map,
                    format!(
                        "mapping handle {map} is past the cap of {} mappings",
                        caps::MAX_MAPS
                    ),
                ));
            }
            Some(Some(_)) => {
                return Err(invalid(
                    Culprit::Map,
                    format!("mapping handle {map} is already taken; a map needs a new handle"),
                ));
            }
            Some(None) => {}
        }
        if pages == 0 || pages > caps::MAX_MAP_PAGES {
            return Err(invalid(
                Culprit::Count,
                format!(
                    "a map takes 1 to {} pages, not {pages}",
                    caps::MAX_MAP_PAGES
                ),
            ));
        }
        self.maps[map.0 as usize] = Some(pages);
        Ok(())
    }

    fn known_map(&self, map: MapId) -> Result<u16, InvalidOp> {
        self.map_pages(map).ok_or_else(|| {
            invalid(
                Culprit::Map,
                format!("unknown mapping {map}: no earlier map op created it"),
            )
        })
    }
}

fn check_span(span: Span, pages: u16) -> Result<(), InvalidOp> {
    match span {
        Span::Pages(r) => {
            if r.start >= r.end {
                return Err(invalid(
                    Culprit::Span,
                    format!("empty page range {}..{}", r.start, r.end),
                ));
            }
            if r.end > pages {
                return Err(invalid(
                    Culprit::Span,
                    format!(
                        "page range {}..{} is out of range: the mapping has {pages} pages",
                        r.start, r.end
                    ),
                ));
            }
        }
        Span::Bytes { page, start, end } => {
            if page >= pages {
                return Err(invalid(
                    Culprit::Span,
                    format!("page {page} is out of range: the mapping has {pages} pages"),
                ));
            }
            if start >= end || end > caps::MAX_BYTE_OFFSET {
                return Err(invalid(
                    Culprit::Span,
                    format!(
                        "byte range {start}..{end} must be non-empty and end at most {}",
                        caps::MAX_BYTE_OFFSET
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl Program {
    /// Checks the whole program; on error, the index of the first invalid op.
    pub fn validate(&self) -> Result<(), (usize, InvalidOp)> {
        let mut v = Validator::new();
        for (i, op) in self.ops.iter().enumerate() {
            v.admit(op).map_err(|e| (i, e))?;
        }
        Ok(())
    }
}

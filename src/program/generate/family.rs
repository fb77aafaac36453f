//! The op families that came after the first fuzz artifacts, and how dialect-2 bytes choose
//! them: a tag byte before each raw op. Each family's decoder lives in its own file of this
//! directory and is reached only through [`Builder::add_family`](super::Builder).

use super::{Builder, RawOp};

/// The prefix of dialect-2 bytes. No committed fuzz artifact starts with it
/// (`tests/fuzz_corpus.rs` checks), so old artifacts decode as they did.
pub const DIALECT_2: &[u8] = b"\xcc\x02cowcheck";

/// The prefix of dialect-3 bytes: laid out as dialect 2 (a tag byte before each raw op), and
/// decoded the same but for the race kinds that came after it (`race remap`, `race vmsplice`,
/// docs/SEMANTICS.md T13, T14), which only dialect 3 draws: so dialect-2 bytes (a campaign's
/// programs up to then, a fuzzer's inputs) keep their programs. `cowcheck run` and the
/// fuzzer's fresh programs draw dialect 3.
pub const DIALECT_3: &[u8] = b"\xcc\x03cowcheck";

/// The prefix of dialect-4 bytes: laid out and decoded as dialect 3, but for the race kinds
/// that came after it (`race free`, `race pageout`, `race fault`, docs/SEMANTICS.md T15-T17),
/// which only dialect 4 draws, and `pageout` as the other half of a pair: so dialect-3 bytes keep
/// their programs. `cowcheck run` draws dialect 4.
pub const DIALECT_4: &[u8] = b"\xcc\x04cowcheck";

/// One later family of ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// malloc, calloc, realloc, free, posix_memalign, mallopt, malloc_trim.
    Alloc,
    /// Threads, racing ops, vfork and CLONE_VM children.
    Threads,
    /// Huge-page backings: THP-sized mappings, hugetlb.
    Backings,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Alloc, Family::Threads, Family::Backings];

    fn bit(self) -> u8 {
        match self {
            Family::Alloc => 1,
            Family::Threads => 2,
            Family::Backings => 4,
        }
    }

    /// The family a tag chooses, or `None` for the classic ops: out of 16, 11 classic, 2
    /// allocator, 2 threads, 1 backings.
    pub fn of_tag(tag: u8) -> Option<Family> {
        match tag % 16 {
            0..=10 => None,
            11..=12 => Some(Family::Alloc),
            13..=14 => Some(Family::Threads),
            _ => Some(Family::Backings),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Alloc => "alloc",
            Family::Threads => "threads",
            Family::Backings => "backings",
        }
    }
}

/// A set of families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Families(u8);

impl Families {
    pub const NONE: Families = Families(0);
    pub const ALL: Families = Families(7);

    pub fn of(families: &[Family]) -> Families {
        Families(families.iter().fold(0, |acc, f| acc | f.bit()))
    }
    pub fn contains(self, f: Family) -> bool {
        self.0 & f.bit() != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn with(self, f: Family) -> Families {
        Families(self.0 | f.bit())
    }
    pub fn without(self, f: Family) -> Families {
        Families(self.0 & !f.bit())
    }
}

impl Builder {
    /// Adds one op of family `f` from `r`. A family whose decoder does not exist yet draws a
    /// classic op.
    pub(super) fn add_family(&mut self, f: Family, r: &RawOp) {
        match f {
            Family::Alloc => self.add_alloc(r),
            Family::Backings => self.add_backings(r),
            Family::Threads => self.add_threads(r),
        }
    }
}

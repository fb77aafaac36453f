//! Wire codes of the allocator requests (`ALLOC`, `FREE`, `TUNE`; docs/SEMANTICS.md part 14):
//!
//! | verb    | words 1..                                    |
//! |---------|----------------------------------------------|
//! | `ALLOC` | call, size, creates, from (realloc), align   |
//! | `FREE`  | map                                          |
//! | `TUNE`  | what, value                                  |
//!
//! `call`: 1 malloc, 2 calloc, 3 realloc, 4 posix_memalign, 5 aligned_alloc; `what`: 1
//! M_MMAP_THRESHOLD, 2 M_MMAP_MAX, 3 M_TRIM_THRESHOLD, 4 malloc_trim (value: its pad).

use super::codes::map_of;
use crate::program::{AllocCall, MalloptParam, MapId, Tune};

/// `call, from, align` of an ALLOC.
pub(super) fn call_words(call: AllocCall) -> [u64; 3] {
    match call {
        AllocCall::Malloc => [1, 0, 0],
        AllocCall::Calloc => [2, 0, 0],
        AllocCall::Realloc { from } => [3, from.0 as u64, 0],
        AllocCall::Memalign { align } => [4, 0, align as u64],
        AllocCall::AlignedAlloc { align } => [5, 0, align as u64],
    }
}

/// The call of `call, from, align` words; `None` for anything `call_words` never makes.
pub(super) fn alloc_call_of(call: u64, from: u64, align: u64) -> Option<AllocCall> {
    let align32 = u32::try_from(align).ok()?;
    let from_map: Option<MapId> = map_of(from);
    Some(match (call, from, align) {
        (1, 0, 0) => AllocCall::Malloc,
        (2, 0, 0) => AllocCall::Calloc,
        (3, _, 0) => AllocCall::Realloc { from: from_map? },
        (4, 0, _) => AllocCall::Memalign { align: align32 },
        (5, 0, _) => AllocCall::AlignedAlloc { align: align32 },
        _ => return None,
    })
}

pub(super) fn tune_words(tune: Tune) -> [u64; 2] {
    match tune {
        Tune::Mallopt { param, value } => [
            match param {
                MalloptParam::MmapThreshold => 1,
                MalloptParam::MmapMax => 2,
                MalloptParam::TrimThreshold => 3,
            },
            value as u64,
        ],
        Tune::Trim { pad } => [4, pad as u64],
    }
}

pub(super) fn tune_of(what: u64, value: u64) -> Option<Tune> {
    let value = u32::try_from(value).ok()?;
    let param = match what {
        1 => MalloptParam::MmapThreshold,
        2 => MalloptParam::MmapMax,
        3 => MalloptParam::TrimThreshold,
        4 => return Some(Tune::Trim { pad: value }),
        _ => return None,
    };
    Some(Tune::Mallopt { param, value })
}

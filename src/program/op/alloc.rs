//! The allocator ops' words (docs/SEMANTICS.md part 14, rules M1 to M9): which call of the
//! malloc family an `alloc` op makes ([`AllocCall`]), the allocator settings a `tune` op
//! changes ([`Tune`]), and the validator's bookkeeping of allocation handles ([`AllocTable`]).
//!
//! An allocation handle shares the mapping handles' numbering (`m3`), but names the block a
//! malloc-family call returned, not a range of pages: it is valid only in the processes that
//! hold the block (the allocating process and the children it forks afterwards) until each of
//! them frees it (use after free and double free are refused here, never run).
//!
//! Spans on an allocation count in *units* of 4096 bytes (the smallest page size Linux has,
//! [`caps::MAX_BYTE_OFFSET`]) from the block's first byte, whatever the block's address and the
//! kernel's page size: unit `i` is bytes `[4096 i, 4096 (i + 1))` of the block, the last unit cut
//! at the block's size, so `2` names bytes 8192..12288 of the block and `2[100..200]` bytes
//! 8292..8392. A block rarely starts on a page boundary; its units need not either.

use super::caps;
use super::handle::{MapId, ProcId};
use super::span::Span;

/// Which part of an allocator op a refusal is about (the validator's `Culprit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Map,
    Span,
    Count,
    Args,
}

/// Why an allocator op, or a span of a block, cannot stand where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub part: Part,
    pub message: String,
}

/// Bytes of one unit of an allocation span.
pub const ALLOC_UNIT: u32 = caps::MAX_BYTE_OFFSET as u32;

/// The largest block an op asks for: above glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
/// (4 * 1024 * 1024 * sizeof(long) = 32 MiB, malloc.c and mallopt(3)), so that the whole range
/// of the dynamic threshold can be crossed, and small enough that programs stay fast.
pub const MAX_ALLOC_BYTES: u32 = 40 << 20;

/// The `M_MMAP_THRESHOLD` the executor's coordinator sets for itself (with `M_TRIM_THRESHOLD`
/// 256 MiB) after it forked the zygote: programs never inherit it, and start with glibc's
/// defaults and its dynamic threshold (docs/SEMANTICS.md M11).
pub const EXECUTOR_MMAP_THRESHOLD: u32 = 64 << 20;

/// An alignment of posix_memalign / aligned_alloc: a power of two from 8 to 64 KiB.
pub const MAX_ALIGN: u32 = 1 << 16;

/// Which malloc-family call makes a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AllocCall {
    Malloc,
    /// `calloc(1, size)`.
    Calloc,
    /// `realloc(from, size)`: `from` is freed when the call succeeds.
    Realloc {
        from: MapId,
    },
    /// `posix_memalign(&p, align, size)`.
    Memalign {
        align: u32,
    },
    /// `aligned_alloc(align, size)`.
    AlignedAlloc {
        align: u32,
    },
}

impl AllocCall {
    pub fn name(self) -> &'static str {
        match self {
            AllocCall::Malloc => "malloc",
            AllocCall::Calloc => "calloc",
            AllocCall::Realloc { .. } => "realloc",
            AllocCall::Memalign { .. } => "posix-memalign",
            AllocCall::AlignedAlloc { .. } => "aligned-alloc",
        }
    }
    pub fn align(self) -> Option<u32> {
        match self {
            AllocCall::Memalign { align } | AllocCall::AlignedAlloc { align } => Some(align),
            _ => None,
        }
    }
}

/// The mallopt(3) parameters an op sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MalloptParam {
    /// M_MMAP_THRESHOLD (-3).
    MmapThreshold,
    /// M_MMAP_MAX (-4).
    MmapMax,
    /// M_TRIM_THRESHOLD (-1).
    TrimThreshold,
}

impl MalloptParam {
    pub const ALL: [MalloptParam; 3] = [
        MalloptParam::MmapThreshold,
        MalloptParam::MmapMax,
        MalloptParam::TrimThreshold,
    ];
    pub fn name(self) -> &'static str {
        match self {
            MalloptParam::MmapThreshold => "mmap-threshold",
            MalloptParam::MmapMax => "mmap-max",
            MalloptParam::TrimThreshold => "trim-threshold",
        }
    }
    pub fn from_name(s: &str) -> Option<MalloptParam> {
        MalloptParam::ALL.into_iter().find(|p| p.name() == s)
    }
    /// glibc's <malloc.h> number.
    pub fn number(self) -> i32 {
        match self {
            MalloptParam::MmapThreshold => -3,
            MalloptParam::MmapMax => -4,
            MalloptParam::TrimThreshold => -1,
        }
    }
}

/// A change to the allocator's settings, or a trim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tune {
    /// `mallopt(param, value)`.
    Mallopt { param: MalloptParam, value: u32 },
    /// `malloc_trim(pad)`.
    Trim { pad: u32 },
}

/// The allocation handles of a program as the validator sees them: each handle's size and the
/// processes (a bit per handle number) in which the block is live.
#[derive(Clone, Debug)]
pub struct AllocTable {
    blocks: [Option<(u32, u32)>; caps::MAX_MAPS],
}

impl Default for AllocTable {
    fn default() -> Self {
        AllocTable {
            blocks: [None; caps::MAX_MAPS],
        }
    }
}

fn invalid(part: Part, message: String) -> Refusal {
    Refusal { part, message }
}

impl AllocTable {
    /// Whether `map` names an allocation (live anywhere or not).
    pub fn is_alloc(&self, map: MapId) -> bool {
        matches!(self.blocks.get(map.0 as usize), Some(Some(_)))
    }

    /// The size of `map` if it is live in `proc`.
    pub fn live_size(&self, proc: ProcId, map: MapId) -> Option<u32> {
        match self.blocks.get(map.0 as usize) {
            Some(Some((size, mask))) if mask & (1 << proc.0) != 0 => Some(*size),
            _ => None,
        }
    }

    /// `map` live in `proc`, or why not.
    pub fn live(&self, proc: ProcId, map: MapId) -> Result<u32, Refusal> {
        if let Some(size) = self.live_size(proc, map) {
            return Ok(size);
        }
        Err(invalid(
            Part::Map,
            if self.is_alloc(map) {
                format!("allocation {map} is not live in {proc} (freed, or allocated elsewhere)")
            } else {
                format!("unknown allocation {map}: no earlier malloc-family op made it")
            },
        ))
    }

    /// A new block `map` of `size` bytes in `proc` (the caller checked the handle is fresh).
    pub fn create(
        &mut self,
        proc: ProcId,
        map: MapId,
        call: AllocCall,
        size: u32,
    ) -> Result<(), Refusal> {
        if size == 0 || size > MAX_ALLOC_BYTES {
            return Err(invalid(
                Part::Count,
                format!("an allocation takes 1 to {MAX_ALLOC_BYTES} bytes, not {size}"),
            ));
        }
        if let Some(align) = call.align()
            && (!align.is_power_of_two() || !(8..=MAX_ALIGN).contains(&align))
        {
            return Err(invalid(
                Part::Args,
                format!("an alignment is a power of two from 8 to {MAX_ALIGN}, not {align}"),
            ));
        }
        if let AllocCall::Realloc { from } = call {
            if from == map {
                return Err(invalid(
                    Part::Map,
                    format!("realloc's result needs a new handle, not {from}"),
                ));
            }
            self.live(proc, from)?;
            self.free(proc, from);
        }
        self.blocks[map.0 as usize] = Some((size, 1 << proc.0));
        Ok(())
    }

    /// `proc` no longer holds `map`.
    pub fn free(&mut self, proc: ProcId, map: MapId) {
        if let Some(Some((_, mask))) = self.blocks.get_mut(map.0 as usize) {
            *mask &= !(1 << proc.0);
        }
    }

    /// `child` holds every block `parent` holds.
    pub fn fork(&mut self, parent: ProcId, child: ProcId) {
        for (_, mask) in self.blocks.iter_mut().flatten() {
            if *mask & (1 << parent.0) != 0 {
                *mask |= 1 << child.0;
            }
        }
    }
}

/// The units of an allocation of `size` bytes.
pub fn alloc_units(size: u32) -> u32 {
    size.div_ceil(ALLOC_UNIT)
}

/// The bytes `[start, end)` of a block of `size` bytes that `span` names (units of 4096 bytes
/// from the block's first byte, the last one cut at the size).
pub fn alloc_bytes(span: Span, size: u32) -> (u32, u32) {
    match span {
        Span::Pages(r) => (
            r.start as u32 * ALLOC_UNIT,
            (r.end as u32 * ALLOC_UNIT).min(size),
        ),
        Span::Bytes { page, start, end } => (
            page as u32 * ALLOC_UNIT + start as u32,
            page as u32 * ALLOC_UNIT + end as u32,
        ),
    }
}

/// A span must lie inside the block: whole units up to the last (cut) one, bytes up to the size.
pub fn check_alloc_span(span: Span, size: u32) -> Result<(), Refusal> {
    let units = alloc_units(size);
    let bad = |m: String| Err(invalid(Part::Span, m));
    match span {
        Span::Pages(r) if r.start >= r.end => {
            bad(format!("empty unit range {}..{}", r.start, r.end))
        }
        Span::Pages(r) if r.len() > caps::MAX_MAP_PAGES => bad(format!(
            "a span of an allocation covers at most {} units, not {}",
            caps::MAX_MAP_PAGES,
            r.len()
        )),
        Span::Pages(r) if r.end as u32 > units => bad(format!(
            "unit range {}..{} is out of range: the allocation has {units} units of {ALLOC_UNIT} bytes",
            r.start, r.end
        )),
        Span::Bytes { start, end, .. } if start >= end || end > caps::MAX_BYTE_OFFSET => bad(
            format!("byte range {start}..{end} must be non-empty and end at most {ALLOC_UNIT}"),
        ),
        Span::Bytes { .. } if alloc_bytes(span, size).1 > size => {
            bad(format!("the span ends past the allocation's {size} bytes"))
        }
        _ => Ok(()),
    }
}

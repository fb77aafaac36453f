//! The malloc family (docs/SEMANTICS.md part 14): what every allocator must do, whatever it is
//! (M1 to M6), never where it puts a block or how it gets the memory. A block lives in the
//! process that holds it, as bytes the model tracks at 4096-byte units (`op/alloc.rs`), outside
//! the address space of `space.rs`: the allocator's own mappings and heap are not the program's,
//! and the executor leaves them out of every snapshot's layout (`kernel/worker/alloc.rs`).
//!
//! - a block's bytes are the process's own: fork copies every live block by value, and later
//!   writes on either side never show on the other (M1, M5);
//! - malloc, posix_memalign and aligned_alloc return bytes whose values are open: the model
//!   learns them from what a read observes, and a byte the program stored is predicted (M2);
//!   calloc's bytes read zero (M3); realloc keeps the old block's first min(old, new) bytes
//!   (M4);
//! - blocks live at the same time in one process never overlap, nor overlap the program's own
//!   mappings, and an aligned call's block is aligned (M6): the address is learnt from the
//!   call's result and checked here;
//! - where the executor's allocator is glibc's own (`Features::glibc_malloc`), what follows
//!   from a block's coming in a mapping of its own is checked in `glibc.rs` (M8 to M11).

use std::sync::Arc;

use super::{Model, ModelError, observed_addr, observed_errno};
use crate::program::outcome::{Outcome, digest};
use crate::program::{ALLOC_UNIT, AllocCall, MapId, Op, Pattern, ProcId, Span, alloc_bytes, caps};

/// A byte whose value the allocator left open.
const OPEN: u16 = 0x100;

/// One 4096-byte unit of a block (the last one cut at the block's size).
#[derive(Clone, Debug)]
enum Unit {
    /// Every byte open (fresh from malloc, the part of a realloc past the old size).
    Open,
    /// Every byte zero (calloc).
    Zero,
    /// Each byte a value, or `OPEN`.
    Bytes(Arc<Vec<u16>>),
}

/// A live block: where the call put it, its size, its bytes.
#[derive(Clone, Debug)]
pub(super) struct Block {
    addr: u64,
    size: u32,
    units: Vec<Unit>,
    /// The length of the block's mapping of its own (glibc's mapped chunk, M8), if it has one.
    own: Option<u64>,
}

/// Every process's live blocks, by handle, and which handles are allocations.
#[derive(Clone, Debug)]
pub(super) struct Heap {
    blocks: Vec<Vec<Option<Block>>>,
    is_alloc: [bool; caps::MAX_MAPS],
    /// Where the model alone places its next block.
    next_addr: u64,
    /// glibc's settings per process (`glibc.rs`).
    pub(super) glibc: super::glibc::PerProc,
}

impl Default for Heap {
    fn default() -> Self {
        Heap {
            blocks: vec![vec![None; caps::MAX_MAPS]; caps::MAX_PROCS],
            is_alloc: [false; caps::MAX_MAPS],
            next_addr: 0x5555_0000_0000,
            glibc: Default::default(),
        }
    }
}

impl Block {
    fn unit_len(&self, u: usize) -> usize {
        (self.size as usize - u * ALLOC_UNIT as usize).min(ALLOC_UNIT as usize)
    }

    /// The unit's bytes, materialised for a change.
    fn bytes_mut(&mut self, u: usize) -> &mut Vec<u16> {
        let len = self.unit_len(u);
        let fill = match self.units[u] {
            Unit::Open => Some(OPEN),
            Unit::Zero => Some(0),
            Unit::Bytes(_) => None,
        };
        if let Some(v) = fill {
            self.units[u] = Unit::Bytes(Arc::new(vec![v; len]));
        }
        match &mut self.units[u] {
            Unit::Bytes(b) => Arc::make_mut(b),
            _ => unreachable!("materialised above"),
        }
    }

    /// Byte `i` of the block (`OPEN` if open).
    fn byte(&self, i: u32) -> u16 {
        match &self.units[(i / ALLOC_UNIT) as usize] {
            Unit::Open => OPEN,
            Unit::Zero => 0,
            Unit::Bytes(b) => b[(i % ALLOC_UNIT) as usize],
        }
    }

    /// Stores `pattern` over bytes `[start, end)` (a ramp counts from the block's first byte).
    fn store(&mut self, start: u32, end: u32, pattern: Pattern) {
        for i in start..end {
            let u = (i / ALLOC_UNIT) as usize;
            self.bytes_mut(u)[(i % ALLOC_UNIT) as usize] = pattern.byte_at(i as usize) as u16;
        }
    }

    /// The digest of bytes `[start, end)`, if none is open.
    fn digest(&self, start: u32, end: u32) -> Option<u64> {
        let mut bytes = Vec::with_capacity((end - start) as usize);
        for i in start..end {
            let b = self.byte(i);
            if b == OPEN {
                return None;
            }
            bytes.push(b as u8);
        }
        Some(digest(&bytes))
    }
}

impl Model {
    /// Whether handle `map` names an allocation (made by an allocator op, whatever its result).
    pub fn is_alloc(&self, map: MapId) -> bool {
        self.heap.is_alloc.get(map.0 as usize) == Some(&true)
    }

    /// Bytes `[start, end)` of block `map` as `proc` holds it, if it holds it and every one of
    /// them is known (not left open by the allocator, M2).
    pub fn block_bytes(&self, proc: ProcId, map: MapId, start: u32, end: u32) -> Option<Vec<u8>> {
        let b = self
            .heap
            .blocks
            .get(proc.0 as usize)?
            .get(map.0 as usize)?
            .as_ref()?;
        (start..end.min(b.size))
            .map(|i| u8::try_from(b.byte(i)).ok())
            .collect()
    }

    /// The size of block `map` as `proc` holds it.
    pub fn block_size(&self, proc: ProcId, map: MapId) -> Option<u32> {
        let b = self
            .heap
            .blocks
            .get(proc.0 as usize)?
            .get(map.0 as usize)?
            .as_ref()?;
        Some(b.size)
    }

    /// The allocator ops, and writes and reads of an allocation; `None` for every other op
    /// (a fork copies the parent's blocks first, then goes on as a fork).
    pub(super) fn malloc_step(
        &mut self,
        op: &Op,
        observed: Option<&Outcome>,
    ) -> Option<Result<Outcome, ModelError>> {
        let proc = op.proc();
        let p = proc.0 as usize;
        match *op {
            // [M1] [M5] fork copies every live block by value.
            Op::Fork { child, .. } => {
                self.heap.blocks[child.0 as usize] = self.heap.blocks[p].clone();
                self.heap.glibc[child.0 as usize] = self.heap.glibc[p];
                None
            }
            Op::Exit { .. } => {
                self.heap.blocks[p] = vec![None; caps::MAX_MAPS];
                None
            }
            Op::Alloc {
                map, call, size, ..
            } => {
                self.heap.is_alloc[map.0 as usize] = true;
                Some(self.alloc(proc, map, call, size, observed))
            }
            Op::Free { map, .. } => {
                let Some(block) = self.heap.blocks[p][map.0 as usize].take() else {
                    return Some(Ok(Outcome::Skipped));
                };
                let (appeared, vanished) = layout_change(observed);
                if self.glibc()
                    && let Some(own) = block.own
                    && observed.is_some()
                    && let Err(e) = self.glibc_freed(map, block.addr, own, vanished)
                {
                    return Some(Err(e));
                }
                if self.glibc()
                    && let Some(own) = block.own
                {
                    self.glibc_released(proc, own); // [M11]
                }
                Some(Ok(Outcome::Allocated {
                    addr: 0,
                    appeared,
                    vanished,
                }))
            }
            Op::Tune { tune, .. } => {
                self.glibc_tune(proc, tune);
                Some(Ok(Outcome::Done))
            }
            Op::Write {
                map, span, pattern, ..
            } if self.is_alloc(map) => {
                let Some(block) = self.heap.blocks[p][map.0 as usize].as_mut() else {
                    return Some(Ok(Outcome::Skipped));
                };
                let (start, end) = alloc_bytes(span, block.size);
                block.store(start, end, pattern);
                Some(Ok(Outcome::Done))
            }
            Op::Read { map, span, .. } if self.is_alloc(map) => {
                let Some(block) = self.heap.blocks[p][map.0 as usize].as_ref() else {
                    return Some(Ok(Outcome::Skipped));
                };
                Some(Ok(read(block, span, observed)))
            }
            _ => None,
        }
    }

    fn alloc(
        &mut self,
        proc: ProcId,
        map: MapId,
        call: AllocCall,
        size: u32,
        observed: Option<&Outcome>,
    ) -> Result<Outcome, ModelError> {
        let p = proc.0 as usize;
        let from = match call {
            AllocCall::Realloc { from } => match self.heap.blocks[p][from.0 as usize].as_ref() {
                Some(b) => Some((from, b.clone())),
                None => return Ok(Outcome::Skipped),
            },
            _ => None,
        };
        // Running out of memory is the allocator's to decide; the block (and realloc's old
        // block) are then as before.
        if let Some(errno) = observed_errno(observed)
            && errno == crate::program::tables::errno::ENOMEM
        {
            return Ok(Outcome::Failed { errno });
        }
        let addr = match observed_addr(observed) {
            Some(a) => a,
            None => {
                let a = self.heap.next_addr;
                self.heap.next_addr += (size as u64).next_multiple_of(1 << 16) + (1 << 16);
                a
            }
        };
        let bad = |reason: String| ModelError::Placement { map, addr, reason };
        // [M6] aligned calls honour the alignment; no live block and no program mapping of
        // this process shares a byte with the new block.
        if let Some(align) = call.align()
            && addr % align as u64 != 0
        {
            return Err(bad(format!("is not aligned to {align} bytes (M6)")));
        }
        let end = addr + size as u64;
        for (m, b) in self.heap.blocks[p].iter().enumerate() {
            if let Some(b) = b
                && from.as_ref().is_none_or(|(f, _)| f.0 as usize != m)
                && addr < b.addr + b.size as u64
                && b.addr < end
            {
                return Err(bad(format!(
                    "overlaps the live allocation m{m} at {:#x} ({} bytes) (M6)",
                    b.addr, b.size
                )));
            }
        }
        for vpn in self.vpn(addr)..=self.vpn(end - 1) {
            if self.space(proc).get(vpn).is_some() {
                return Err(bad(format!(
                    "overlaps the program's own mapping at page {:#x} (M6)",
                    vpn * self.page_size
                )));
            }
        }
        let (appeared, vanished) = layout_change(observed);
        let own = if self.glibc() {
            let old_own = from.as_ref().and_then(|(_, b)| b.own.map(|l| (b.addr, l)));
            self.glibc_placed(proc, map, (call, size), addr, appeared, old_own)?
        } else {
            None
        };
        let units = size.div_ceil(ALLOC_UNIT) as usize;
        let mut block = Block {
            own,
            addr,
            size,
            units: vec![
                if call == AllocCall::Calloc {
                    Unit::Zero // [M3]
                } else {
                    Unit::Open // [M2]
                };
                units
            ],
        };
        // [M4] realloc keeps the old block's first min(old, new) bytes and frees the old one.
        if let Some((from, old)) = from {
            let keep = old.size.min(size);
            for u in 0..keep.div_ceil(ALLOC_UNIT) as usize {
                let whole =
                    (u as u32 + 1) * ALLOC_UNIT <= keep && block.unit_len(u) == old.unit_len(u);
                if whole {
                    block.units[u] = old.units[u].clone();
                } else {
                    let lo = u as u32 * ALLOC_UNIT;
                    for i in lo..keep.min(lo + ALLOC_UNIT) {
                        let b = old.byte(i);
                        block.bytes_mut(u)[(i - lo) as usize] = b;
                    }
                }
            }
            self.heap.blocks[p][from.0 as usize] = None;
        }
        self.heap.blocks[p][map.0 as usize] = Some(block);
        Ok(Outcome::Allocated {
            addr,
            appeared,
            vanished,
        })
    }
}

/// What an allocator call did to the layout, as the executor saw it (learnt: M8, M9 check it
/// where glibc is the allocator); nothing without an observation.
fn layout_change(observed: Option<&Outcome>) -> (u64, u64) {
    match observed {
        Some(Outcome::Allocated {
            appeared, vanished, ..
        }) => (*appeared, *vanished),
        _ => (0, 0),
    }
}

/// A read of `span` of a block: a digest per unit, predicted where every byte is known and
/// learnt from the observation where the allocator left bytes open (M2).
fn read(block: &Block, span: Span, observed: Option<&Outcome>) -> Outcome {
    let (start, end) = alloc_bytes(span, block.size);
    let seen = match observed {
        Some(Outcome::Read { digests }) => Some(digests),
        _ => None,
    };
    let mut digests = Vec::new();
    let mut at = start;
    while at < end {
        let stop = ((at / ALLOC_UNIT + 1) * ALLOC_UNIT).min(end);
        let i = digests.len();
        let d = block.digest(at, stop).unwrap_or_else(|| {
            seen.and_then(|s| s.get(i).copied())
                .unwrap_or_else(|| digest(&vec![0; (stop - at) as usize]))
        });
        digests.push(d);
        at = stop;
    }
    Outcome::Read { digests }
}

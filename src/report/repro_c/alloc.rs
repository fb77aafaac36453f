//! The allocator ops in a reproducer (docs/SEMANTICS.md part 14): their `struct op` rows
//! (`V_ALLOC`, `V_FREE`, `V_TUNE`, and `V_AWRITE`/`V_AREAD` for writes and reads of a block, whose
//! `lo..hi` are bytes of the block, digested per 4096-byte unit as cowcheck does), performed by
//! `runtime.c` through the C library's malloc family.

use std::fmt::Write;

use crate::program::{AllocCall, MalloptParam, MapId, Op, Pattern, Program, Tune, alloc_bytes};

/// The size of each allocation handle of `program` (0: not an allocation).
pub(super) fn sizes(program: &Program) -> Vec<u32> {
    let mut v = vec![0u32; crate::program::caps::MAX_MAPS];
    for op in &program.ops {
        if let Op::Alloc { map, size, .. } = *op {
            v[map.0 as usize] = size;
        }
    }
    v
}

/// The row fields of an allocator op, or of a write or read of a block; `None` for any other op.
pub(super) fn fields(op: &Op, sizes: &[u32]) -> Option<String> {
    let proc = op.proc().0;
    let size_of = |m: MapId| sizes.get(m.0 as usize).copied().unwrap_or(0);
    let pattern = |p: Pattern| match p {
        Pattern::Fill(b) => format!(", .ramp = 0, .byte = 0x{b:02x}"),
        Pattern::Ramp(b) => format!(", .ramp = 1, .byte = 0x{b:02x}"),
    };
    let (mut f, need) = match *op {
        Op::Alloc {
            map, call, size, ..
        } => {
            let (kind, align, from) = match call {
                AllocCall::Malloc => ("ALLOC_MALLOC", 0, -1),
                AllocCall::Calloc => ("ALLOC_CALLOC", 0, -1),
                AllocCall::Realloc { from } => ("ALLOC_REALLOC", 0, from.0 as i32),
                AllocCall::Memalign { align } => ("ALLOC_MEMALIGN", align, -1),
                AllocCall::AlignedAlloc { align } => ("ALLOC_ALIGNED", align, -1),
            };
            (
                format!(
                    ".verb = V_ALLOC, .proc = {proc}, .map = {}, .kind = {kind}, .size = {size}, .lo = {align}, .at_map = {from}",
                    map.0
                ),
                from,
            )
        }
        Op::Free { map, .. } => (
            format!(".verb = V_FREE, .proc = {proc}, .map = {}", map.0),
            map.0 as i32,
        ),
        Op::Tune { tune, .. } => {
            let (kind, value) = match tune {
                Tune::Mallopt { param, value } => (
                    match param {
                        MalloptParam::MmapThreshold => "TUNE_MMAP_THRESHOLD",
                        MalloptParam::MmapMax => "TUNE_MMAP_MAX",
                        MalloptParam::TrimThreshold => "TUNE_TRIM_THRESHOLD",
                    },
                    value,
                ),
                Tune::Trim { pad } => ("TUNE_TRIM", pad),
            };
            (
                format!(
                    ".verb = V_TUNE, .proc = {proc}, .map = -1, .kind = {kind}, .size = {value}"
                ),
                -1,
            )
        }
        Op::Write {
            map,
            span,
            pattern: p,
            ..
        } if size_of(map) > 0 => {
            let (lo, hi) = alloc_bytes(span, size_of(map));
            (
                format!(
                    ".verb = V_AWRITE, .proc = {proc}, .map = {}, .lo = {lo}, .hi = {hi}{}",
                    map.0,
                    pattern(p)
                ),
                map.0 as i32,
            )
        }
        Op::Read { map, span, .. } if size_of(map) > 0 => {
            let (lo, hi) = alloc_bytes(span, size_of(map));
            (
                format!(
                    ".verb = V_AREAD, .proc = {proc}, .map = {}, .lo = {lo}, .hi = {hi}",
                    map.0
                ),
                map.0 as i32,
            )
        }
        _ => return None,
    };
    let _ = write!(f, ", .need = {{ {need}, -1 }}");
    Some(f)
}

/// What a read of a block sees, in words (a unit at a time, at most three).
pub(super) fn read_words(model: &crate::model::Model, op: &Op) -> Option<String> {
    let Op::Read { proc, map, span } = *op else {
        return None;
    };
    let size = model.block_size(proc, map)?;
    let (start, end) = alloc_bytes(span, size);
    let mut parts = Vec::new();
    let mut at = start;
    while at < end && parts.len() < 3 {
        let stop = ((at / crate::program::ALLOC_UNIT + 1) * crate::program::ALLOC_UNIT).min(end);
        let bytes = model.block_bytes(proc, map, at, stop)?;
        parts.push(format!(
            "bytes {at}..{stop}: {}",
            crate::report::describe_bytes(&bytes)
        ));
        at = stop;
    }
    if at < end {
        parts.push("…".into());
    }
    Some(parts.join("; "))
}

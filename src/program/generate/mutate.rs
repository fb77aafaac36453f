//! Fuzz inputs as the fuzzer's mutator sees them (`fuzz/src/lib.rs`): their grain, the
//! mutations that keep it, and the inputs a kernel can run. Here, not in the fuzz crate, so that
//! `cargo test` checks them on stable without libFuzzer.
//!
//! An input is a run of 9-byte raw ops (the first dialect), or a 10-byte dialect prefix
//! ([`DIALECT_2`], [`DIALECT_3`], [`DIALECT_4`]) and then (tag, raw op) units of 10 bytes that
//! reach the later op families (threads and racing ops, vfork and CLONE_VM, the allocator,
//! huge-page backings). A structural mutation works on whole units after the prefix and never
//! touches it, so a tagged input keeps its dialect; [`lift`] turns a first-dialect input into the
//! newest dialect with the same ops; a tag mutation turns an op to a later family.
//!
//! An input means one program everywhere: the fuzzer decodes with every feature
//! (`GenConfig::default()`). Where the kernel lacks something, or hugetlb was not asked for,
//! [`skip`] says which inputs to skip, and [`fresh_program_bytes`] draws fresh programs that
//! need none of it.

use super::{
    DIALECT_2, DIALECT_3, DIALECT_4, Family, GenConfig, SplitMix, from_bytes, random_program_bytes,
};
use crate::program::features::Features;
use crate::program::{Op, Program};

/// Bytes per raw op of the first dialect (`RawOp` as `arbitrary` reads it).
pub const RAW_OP_BYTES: usize = 9;

/// Bytes of a dialect prefix.
pub const PREFIX_BYTES: usize = 10;

/// Bytes per tagged raw op (dialects 2 and 3): the tag, then the raw op.
pub const TAGGED_OP_BYTES: usize = 10;

/// Number of structural mutations that [`structural`] numbers (`roll` in `0..ROLLS`); a roll
/// it declines is left to byte-level mutation.
pub const ROLLS: usize = 14;

/// The dialect of `bytes`: 4, 3 or 2 after their prefix, 1 otherwise.
pub fn dialect(bytes: &[u8]) -> u8 {
    if bytes.starts_with(DIALECT_4) {
        4
    } else if bytes.starts_with(DIALECT_3) {
        3
    } else if bytes.starts_with(DIALECT_2) {
        2
    } else {
        1
    }
}

/// Where the ops of `bytes` start and how many bytes each takes: `(0, 9)` in the first
/// dialect, `(10, 10)` after a prefix. Byte-level mutations belong after the start.
pub fn layout(bytes: &[u8]) -> (usize, usize) {
    if dialect(bytes) > 1 {
        (PREFIX_BYTES, TAGGED_OP_BYTES)
    } else {
        (0, RAW_OP_BYTES)
    }
}

/// A tag that chooses a later family ([`Family::of_tag`]), from any byte.
pub fn family_tag(r: u8) -> u8 {
    // 11 to 15 of 16 are the families' tags; `of_tag` reads them modulo 16.
    let tag = 11 + r % 5;
    debug_assert!(Family::of_tag(tag).is_some());
    tag
}

/// Structural mutation number `roll` of `data[..size]`, within `cap` bytes: 0-5 insert 1 to 8
/// random ops, 6-7 repeat a run of 1 to 4 ops after itself, 8 drops an op, 9-10 replace one
/// by random bytes, 11 turns a tag to a later family (tagged input) or lifts the input into
/// the newest dialect ([`lift`], first dialect). Always at op boundaries after the prefix, which
/// stays as it is. The new size, or `None` where the roll does not apply (12, 13, an empty input,
/// no room).
pub fn structural(
    data: &mut [u8],
    size: usize,
    cap: usize,
    roll: usize,
    rng: &mut SplitMix,
) -> Option<usize> {
    let cap = cap.min(data.len());
    let size = size.min(cap);
    let (start, unit) = layout(&data[..size]);
    let mut below = |n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    // The ops: `data[start..]`, `size` and `cap` counted from there.
    let (body, size, cap) = (&mut data[start..], size - start, cap - start);
    let ops = size / unit;
    // Whole ops only: the inputs keep their grain.
    let room = |bytes: usize| bytes / unit * unit;
    let new_size = match roll {
        0..=5 => {
            let at = below(ops + 1) * unit;
            let add = ((1 + below(8)) * unit).min(room(cap - size));
            if add == 0 {
                return None;
            }
            body.copy_within(at..size, at + add);
            for b in &mut body[at..at + add] {
                *b = below(256) as u8;
            }
            size + add
        }
        6 | 7 if ops > 0 => {
            let first = below(ops);
            let len = 1 + below((ops - first).min(4));
            let (from, run) = (first * unit, len * unit);
            let add = run.min(room(cap - size));
            if add == 0 {
                return None;
            }
            let at = from + run;
            body.copy_within(at..size, at + add);
            body.copy_within(from..from + add, at);
            size + add
        }
        8 if ops > 1 => {
            let at = below(ops) * unit;
            body.copy_within(at + unit..size, at);
            size - unit
        }
        9 | 10 if ops > 0 => {
            let at = below(ops) * unit;
            for b in &mut body[at..at + unit] {
                *b = below(256) as u8;
            }
            size
        }
        11 if ops > 0 && start > 0 => {
            body[below(ops) * unit] = family_tag(below(256) as u8);
            size
        }
        // `start` is 0: the lift writes its own prefix.
        11 if start == 0 => return lift(body, size, cap, || below(256) as u8),
        _ => return None,
    };
    Some(start + new_size)
}

/// `data[..size]` (first dialect) as bytes of the newest dialect (4) of the same raw ops, each with
/// a classic tag (0 to 10) drawn from `tags`: the same program (the classic ops decode alike in
/// every dialect), and a later tag mutation can turn any op to a family. Written over `data` within
/// `cap` bytes; the new size, or `None` if it does not fit or `data` is tagged already.
pub fn lift(
    data: &mut [u8],
    size: usize,
    cap: usize,
    mut tags: impl FnMut() -> u8,
) -> Option<usize> {
    let size = size.min(data.len());
    if dialect(&data[..size]) > 1 {
        return None;
    }
    let ops = size / RAW_OP_BYTES;
    let mut out = DIALECT_4.to_vec();
    for k in 0..ops {
        out.push(tags() % 11);
        out.extend_from_slice(&data[k * RAW_OP_BYTES..(k + 1) * RAW_OP_BYTES]);
    }
    // The decoder keeps an op only if input is left after it (or it is the first): the same
    // tail keeps the same ops.
    out.extend_from_slice(&data[ops * RAW_OP_BYTES..size]);
    if out.len() > cap.min(data.len()) {
        return None;
    }
    data[..out.len()].copy_from_slice(&out);
    Some(out.len())
}

/// Why a fuzz input is not run here: its program needs what the kernel lacks, or hugetlb,
/// which was not asked for (the pool is the machine's, docs/SEMANTICS.md L9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    Absent,
    Hugetlb,
}

/// Whether and why to skip `program` (what `bytes` decode to with every feature,
/// `GenConfig::default()`) on a kernel with features `kernel`, where hugetlb maps may be made
/// only if `hugetlb`.
pub fn skip(bytes: &[u8], program: &Program, kernel: Features, hugetlb: bool) -> Option<Skip> {
    if !hugetlb && uses_hugetlb(program) {
        Some(Skip::Hugetlb)
    } else if needs_absent(bytes, program, kernel) {
        Some(Skip::Absent)
    } else {
        None
    }
}

/// Whether `program` makes a MAP_HUGETLB map (every hugetlb op needs one).
pub fn uses_hugetlb(program: &Program) -> bool {
    program
        .ops
        .iter()
        .any(|o| matches!(o, Op::Map { args, .. } if args.hugetlb))
}

/// Whether `program` (what `bytes` decode to with every feature) needs something that `kernel`
/// lacks: the generator told what the kernel has makes another program of the same bytes. It
/// gates every op on the features it needs, so an equal program uses nothing absent; an
/// unequal one may, and is skipped (a needless skip costs an input; a run of what the kernel
/// lacks could pass the environment off as a divergence).
pub fn needs_absent(bytes: &[u8], program: &Program, kernel: Features) -> bool {
    kernel != Features::ALL
        && from_bytes(
            bytes,
            GenConfig {
                features: kernel,
                ..GenConfig::default()
            },
        ) != *program
}

/// The bytes of a fresh program as `cowcheck run` draws them (the newest dialect, 4,
/// [`random_program_bytes`] of campaign `seed`), redrawn (program 0, 1, ... of the campaign, 8
/// at most) while [`skip`] would skip it.
pub fn fresh_program_bytes(seed: u64, kernel: Features, hugetlb: bool) -> Vec<u8> {
    let config = GenConfig::default();
    let mut bytes = Vec::new();
    for index in 0..8 {
        bytes = random_program_bytes(seed, index, config);
        if skip(&bytes, &from_bytes(&bytes, config), kernel, hugetlb).is_none() {
            break;
        }
    }
    bytes
}

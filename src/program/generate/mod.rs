//! Random programs. One decoder serves every front end: bytes -> program, where every byte
//! string decodes to a valid program (handles are resolved against what exists at that point,
//! and an op that cannot stand is turned into one that can). `cowcheck run` feeds it bytes from
//! a seeded generator, proptest feeds it byte vectors, the fuzzer feeds it its inputs through
//! `arbitrary`.
//!
//! Two dialects of bytes. The first (every fuzz artifact committed before the op families that
//! came later) is a sequence of [`RawOp`]s. The second starts with [`DIALECT_2`] and is a
//! sequence of `(tag, RawOp)` pairs: the tag chooses between the classic ops and each later
//! [`Family`] (allocator ops, threads, huge-page backings), each decoded by its own file in
//! this directory. Bytes without the prefix decode as they always did, so old artifacts keep
//! their programs. The third ([`DIALECT_3`]) is laid out as the second and adds the race kinds
//! that came after it, so that dialect-2 bytes keep their programs too, and the fourth
//! ([`DIALECT_4`]) adds the race kinds after those; `cowcheck run` draws dialect-4 bytes
//! whenever a family is enabled.

mod alloc;
mod backings;
mod clone_vm;
mod family;
mod hugetlb;
pub mod mutate;
mod racers;
mod thread_ops;
mod threads;

use arbitrary::{Arbitrary, Unstructured};

use super::op::{
    Advice, At, BadArg, MapArgs, MapId, MapKind, Offset, Op, PageRange, Pattern, PlaceHow, ProcId,
    Program, Prot, RemapFlags, Span, Syscall, Validator, Via, caps,
};
use crate::program::features::Features;
pub use family::{DIALECT_2, DIALECT_3, DIALECT_4, Families, Family};

/// One op's worth of raw choices; `build` resolves it against the program so far.
///
/// The verb is `verb % 64`; its top two bits (`RawOp::extra`) choose the forms of the mmap
/// interface that came after the first seeds (lengths in bytes, a map's fd and offset, both
/// MAP_FIXED flags, unaligned addresses, zero-length advice): 0 never does, so that every byte
/// string that decoded before still decodes to the same program.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawOp {
    pub verb: u8,
    pub who: u8,
    pub what: u8,
    pub a: u16,
    pub b: u16,
    pub c: u8,
    pub d: u8,
}

/// Knobs of the generator.
#[derive(Clone, Copy, Debug)]
pub struct GenConfig {
    /// Most ops in one program.
    pub max_ops: usize,
    /// What the kernel under test supports: the generator never makes what it lacks.
    pub features: Features,
    /// Only the core ops (map, write, read, fork, exit, unmap).
    pub core_only: bool,
    /// The later op families that dialect-2 bytes may draw (never with `core_only`).
    pub families: Families,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            max_ops: 40,
            features: Features::ALL,
            core_only: false,
            families: Families::ALL,
        }
    }
}

impl RawOp {
    /// The top two bits of `verb`: which later form, if any, the op takes (0: none).
    fn extra(&self) -> u8 {
        self.verb >> 6
    }
}

/// Bytes of a length's last page, for lengths that end inside a page: `sizeof(int)` first.
const TAILS: [u16; 8] = [4, 1, 8, 100, 1000, 2048, 4095, caps::MAX_BYTE_OFFSET];

/// Bytes into a page for an unaligned address or offset.
const UNALIGNED: [u16; 4] = [1, 4, 100, caps::MAX_BYTE_OFFSET - 1];

/// Static knowledge while building: which processes live, which mappings each one holds.
struct Builder {
    v: Validator,
    ops: Vec<Op>,
    /// Live process handles in creation order.
    live: Vec<ProcId>,
    next_proc: u8,
    next_map: u8,
    /// Per process: mapping handles it mapped or inherited (bit set), a static guess that
    /// ignores deaths.
    holds: [u32; caps::MAX_PROCS],
    sizes: [u16; caps::MAX_MAPS],
    kinds: [MapKind; caps::MAX_MAPS],
    config: GenConfig,
    /// The size of the allocation freed last (`alloc.rs`), 0 for none.
    freed: u32,
    /// The dialect of the bytes (1, 2, 3 or 4): what a later dialect added, an earlier one never
    /// draws.
    dialect: u8,
}

impl Builder {
    fn new(config: GenConfig, dialect: u8) -> Builder {
        Builder {
            dialect,
            kinds: [MapKind::Private; caps::MAX_MAPS],
            config,
            v: Validator::new(),
            ops: Vec::new(),
            live: vec![ProcId::ROOT],
            next_proc: 1,
            next_map: 0,
            holds: [0; caps::MAX_PROCS],
            sizes: [0; caps::MAX_MAPS],
            freed: 0,
        }
    }

    fn push(&mut self, op: Op) -> bool {
        let ok = self.v.admit(&op).is_ok();
        if ok {
            self.ops.push(op);
        }
        ok
    }

    /// Records a handle that `op` created for `p`.
    fn created(&mut self, p: ProcId, m: MapId, kind: MapKind, pages: u16) {
        self.next_map += 1;
        self.sizes[m.0 as usize] = pages;
        self.kinds[m.0 as usize] = kind;
        self.holds[p.0 as usize] |= 1 << m.0;
    }

    /// A live process: half the time the one that did the previous op (processes work in
    /// bursts, which is also what makes batching in the executor pay), else mostly one of the
    /// newest (deep trees), sometimes any.
    fn pick_proc(&self, who: u8) -> ProcId {
        let n = self.live.len();
        let previous = self
            .ops
            .last()
            .map(|o| o.proc())
            .filter(|p| self.live.contains(p));
        match (who >> 6, previous) {
            (1 | 2, Some(p)) => p,
            (3, _) => self.live[n - 1 - (who as usize & 1).min(n - 1)],
            _ => self.live[who as usize % n],
        }
    }

    /// A mapping for `p`: mostly one it holds, sometimes any that exists.
    fn pick_map(&self, p: ProcId, what: u8) -> Option<MapId> {
        if self.next_map == 0 {
            return None;
        }
        let held = self.holds[p.0 as usize];
        if held != 0 && !what.is_multiple_of(8) {
            let n = held.count_ones() as usize;
            let k = (what as usize / 8) % n;
            let bit = (0..32).filter(|b| held & 1 << b != 0).nth(k)?;
            return Some(MapId(bit as u8));
        }
        // An allocation handle (dialect 2) is no mapping.
        Some(MapId(what % self.next_map)).filter(|m| !self.v.allocs().is_alloc(*m))
    }

    fn range(&self, m: MapId, a: u16, b: u16) -> PageRange {
        let pages = self.sizes[m.0 as usize];
        let start = a % pages;
        // Short ranges are the common case; whole mappings happen too.
        let len = if b & 0x8000 != 0 {
            pages - start
        } else {
            1 + (b % (pages - start).min(4))
        };
        PageRange::new(start, start + len)
    }

    fn span(&self, m: MapId, r: &RawOp) -> Span {
        let pages = self.sizes[m.0 as usize];
        if r.c.is_multiple_of(4) {
            let page = r.a % pages;
            let start = r.b % caps::MAX_BYTE_OFFSET;
            let end = (start + 1 + (r.d as u16 * 16)).min(caps::MAX_BYTE_OFFSET);
            Span::Bytes { page, start, end }
        } else {
            Span::Pages(self.range(m, r.a, r.b))
        }
    }

    fn map(&mut self, p: ProcId, r: &RawOp) {
        if self.next_map as usize >= caps::MAX_MAPS {
            return;
        }
        let kind = MapKind::ALL[r.c as usize % 4];
        // Mostly small mappings (snapshots digest every page), sometimes up to the cap.
        let pages = if r.d < 224 {
            1 + r.a % 8
        } else {
            1 + r.a % caps::CLASSIC_MAP_PAGES
        };
        let m = MapId(self.next_map);
        // The later forms (`RawOp::extra`): a length in bytes; the program's /dev/zero fd, an
        // offset (aligned, or not: EINVAL); both MAP_FIXED flags, or an unaligned address.
        let extra = if self.config.core_only { 0 } else { r.extra() };
        let choice = r.c >> 2;
        let tail = if extra == 3 {
            TAILS[choice as usize % TAILS.len()]
        } else {
            0
        };
        let mut args = MapArgs::default();
        if extra == 2 {
            args.fd = choice & 1 != 0;
            if !kind.uses_dev_zero() {
                args.offset = match choice >> 1 & 7 {
                    o @ 1..=3 => Offset {
                        pages: o as u16,
                        bytes: 0,
                    },
                    4 => Offset { pages: 0, bytes: 1 },
                    5 => Offset { pages: 1, bytes: 4 },
                    _ => Offset::default(),
                };
            }
        }
        // A quarter of the maps, once there is something to aim at, ask for a place.
        let op = if !self.config.core_only && self.next_map > 0 && r.b.is_multiple_of(4) {
            let target = MapId(r.what % self.next_map);
            // (An allocation handle has no pages: the validator refuses the op.)
            let tpages = self.sizes[target.0 as usize].max(1);
            let page = r.b / 4 % tpages;
            let mut how = match r.d % 4 {
                0 | 1 => PlaceHow::Fixed,
                2 if self.config.features.noreplace => PlaceHow::NoReplace,
                _ => PlaceHow::Hint,
            };
            let mut at = At::page(target, page);
            if extra == 1 {
                match choice & 3 {
                    1 if self.config.features.noreplace => how = PlaceHow::FixedNoReplace,
                    2 => at.byte = UNALIGNED[(choice >> 2) as usize % UNALIGNED.len()],
                    _ => {}
                }
            }
            Op::MapAt {
                proc: p,
                map: m,
                kind,
                pages: pages.min(tpages - page).max(1),
                tail,
                args,
                how,
                at,
            }
        } else {
            Op::Map {
                proc: p,
                map: m,
                kind,
                pages,
                tail,
                args,
            }
        };
        let pages = match op {
            Op::MapAt { pages, .. } | Op::Map { pages, .. } => pages,
            _ => pages,
        };
        if self.push(op) {
            self.created(p, m, kind, pages);
        }
    }

    /// An advice that the kernel supports for this kind of mapping; most of the time one that
    /// the kind accepts, sometimes one that it rejects (its errno is checked too).
    fn advice(&self, kind: MapKind, pick: u8) -> Advice {
        let f = self.config.features;
        let all: Vec<Advice> = Advice::ALL
            .into_iter()
            .filter(|a| f.allows(*a, kind) && *a != Advice::Collapse)
            .collect();
        let fitting: Vec<Advice> = all
            .iter()
            .copied()
            .filter(|a| match a {
                Advice::Free | Advice::WipeOnFork => kind == MapKind::Private,
                Advice::Remove => kind.is_shared(),
                _ => true,
            })
            .collect();
        let from = if pick.is_multiple_of(8) || fitting.is_empty() {
            &all
        } else {
            &fitting
        };
        from[(pick as usize / 8) % from.len()]
    }

    fn remap(&mut self, p: ProcId, m: MapId, r: &RawOp) {
        if self.next_map as usize >= caps::MAX_MAPS {
            return;
        }
        let pages = self.sizes[m.0 as usize];
        let kind = self.kinds[m.0 as usize];
        let start = r.a % pages;
        let f = self.config.features;
        let mut flags = RemapFlags {
            maymove: r.c % 10 < 7,
            ..RemapFlags::default()
        };
        let old_len = if kind.is_shared() && r.d.is_multiple_of(8) {
            0 // old_size 0: an alias of the shared object (G7)
        } else {
            1 + r.b % (pages - start).min(8)
        };
        let mut new_pages = match r.d % 3 {
            0 => old_len.max(1) / 2,
            1 => old_len,
            _ => old_len + 1 + r.b / 8 % 4,
        }
        .clamp(1, caps::CLASSIC_MAP_PAGES);
        if old_len > 0
            && r.c % 10 == 9
            && (if kind.is_shared() {
                f.dontunmap_shared
            } else {
                f.dontunmap
            })
        {
            flags.maymove = true;
            flags.dontunmap = true;
            new_pages = old_len;
        }
        let extra = if self.config.core_only { 0 } else { r.extra() };
        if r.what.is_multiple_of(7) && self.next_map > 0 {
            let target = MapId(r.what / 7 % self.next_map);
            let tpages = self.sizes[target.0 as usize].max(1);
            let page = r.b % tpages;
            flags.maymove = true;
            let mut at = At::page(target, page);
            if extra == 2 {
                at.byte = UNALIGNED[r.c as usize / 10 % UNALIGNED.len()];
            }
            flags.fixed = Some(at);
            new_pages = new_pages.min(tpages - page);
            if flags.dontunmap {
                flags.dontunmap = new_pages == old_len;
            }
        }
        // Sizes in bytes (`RawOp::extra`).
        let (old_tail, new_tail) = match extra {
            3 => (
                if old_len > 0 {
                    TAILS[r.c as usize / 10 % TAILS.len()]
                } else {
                    0
                },
                TAILS[r.d as usize / 8 % TAILS.len()],
            ),
            _ => (0, 0),
        };
        let result = MapId(self.next_map);
        let op = Op::Remap {
            proc: p,
            map: m,
            old: PageRange {
                start,
                end: start + old_len,
            },
            old_tail,
            new_pages,
            new_tail,
            flags,
            result,
        };
        if self.push(op) {
            self.created(p, result, kind, new_pages);
        }
    }

    fn add(&mut self, r: &RawOp) {
        let p = self.pick_proc(r.who);
        // Lengths in bytes, zero-length advice (`RawOp::extra`).
        let extra = if self.config.core_only { 0 } else { r.extra() };
        // Weights out of 64: map 9, write 17, read 13, fork 10, exit 4, unmap 5, and (unless
        // core_only, when these fall back to writes and reads) protect 2, advise 2, remap 1,
        // invalid 1 each scaled by 2.
        let mut verb = r.verb % 64;
        if self.config.core_only && verb >= 58 {
            verb = 9 + verb % 30;
        }
        let m = self.pick_map(p, r.what);
        match (verb, m) {
            (0..=8, _) | (_, None) => self.map(p, r),
            (9..=25, Some(m)) => {
                let pattern = if r.d & 1 == 0 {
                    Pattern::Fill(r.c | 1)
                } else {
                    Pattern::Ramp(r.c)
                };
                let span = self.span(m, r);
                // One write in eight goes through the kernel instead (/proc/self/mem or
                // process_vm_writev), unless only the core ops are wanted.
                let op = if !self.config.core_only && r.what % 8 == 7 {
                    Op::Poke {
                        proc: p,
                        map: m,
                        span,
                        pattern,
                        via: if r.b.is_multiple_of(2) {
                            Via::Mem
                        } else {
                            Via::Vm
                        },
                    }
                } else {
                    Op::Write {
                        proc: p,
                        map: m,
                        span,
                        pattern,
                    }
                };
                self.push(op);
            }
            (37, Some(m)) if !self.config.core_only => {
                let page = r.a % self.sizes[m.0 as usize];
                self.push(Op::Vmsplice {
                    proc: p,
                    map: m,
                    page,
                });
            }
            (38, _) if !self.config.core_only => {
                self.push(Op::PipeRead { proc: p });
            }
            (26..=38, Some(m)) => {
                let span = self.span(m, r);
                self.push(Op::Read {
                    proc: p,
                    map: m,
                    span,
                });
            }
            (39..=48, _) => {
                if self.live.len() >= caps::MAX_LIVE || self.next_proc as usize >= caps::MAX_PROCS {
                    return;
                }
                let child = ProcId(self.next_proc);
                self.push(Op::Fork { proc: p, child });
                self.next_proc += 1;
                self.live.push(child);
                self.holds[child.0 as usize] = self.holds[p.0 as usize];
            }
            (49..=52, _) => {
                if self.live.len() > 1 {
                    self.push(Op::Exit { proc: p });
                    self.live.retain(|x| *x != p);
                }
            }
            (53..=57, Some(m)) => {
                let range = self.range(m, r.a, r.b);
                self.push(Op::Unmap {
                    proc: p,
                    map: m,
                    pages: range,
                    tail: if extra == 3 {
                        TAILS[r.c as usize % 8]
                    } else {
                        0
                    },
                });
                if range.start == 0 && range.end == self.sizes[m.0 as usize] {
                    self.holds[p.0 as usize] &= !(1 << m.0);
                }
            }
            (58..=59, Some(m)) => {
                let pages = self.range(m, r.a, r.b);
                let prot = Prot::ALL[r.c as usize % 4];
                self.push(Op::Protect {
                    proc: p,
                    map: m,
                    pages,
                    tail: if extra == 3 {
                        TAILS[r.d as usize % 8]
                    } else {
                        0
                    },
                    prot,
                });
            }
            (60..=61, Some(m)) => {
                let mut pages = self.range(m, r.a, r.b);
                let advice = self.advice(self.kinds[m.0 as usize], r.c);
                let tail = match extra {
                    3 => TAILS[r.d as usize % 8],
                    // A length of 0 (F14).
                    2 => {
                        pages.end = pages.start;
                        0
                    }
                    _ => 0,
                };
                self.push(Op::Advise {
                    proc: p,
                    map: m,
                    pages,
                    tail,
                    advice,
                });
            }
            (62, Some(m)) => self.remap(p, m, r),
            (_, Some(m)) => {
                let call = Syscall::ALL[r.c as usize % 5];
                let bads: Vec<BadArg> = BadArg::ALL
                    .into_iter()
                    .filter(|b| b.applies_to(call))
                    .collect();
                let bad = bads[r.d as usize % bads.len()];
                self.push(Op::Invalid {
                    proc: p,
                    map: m,
                    call,
                    bad,
                });
            }
        }
    }
}

/// Builds a valid program from raw ops (the first dialect: classic ops only).
pub fn build(raws: &[RawOp], config: GenConfig) -> Program {
    let mut b = Builder::new(config, 1);
    for r in raws {
        if b.ops.len() >= config.max_ops.min(caps::MAX_OPS) {
            break;
        }
        b.add(r);
    }
    Program::new(b.ops)
}

/// Builds a valid program from tagged raw ops (the second dialect): each tag chooses the classic
/// ops or a later family ([`Family::of_tag`]); a family that `config` does not enable falls
/// back to the classic op.
pub fn build_tagged(raws: &[(u8, RawOp)], config: GenConfig) -> Program {
    build_tagged_in(4, raws, config)
}

/// [`build_tagged`] as dialect `dialect` (2, 3 or 4) decodes it.
fn build_tagged_in(dialect: u8, raws: &[(u8, RawOp)], config: GenConfig) -> Program {
    let mut b = Builder::new(config, dialect);
    for (tag, r) in raws {
        if b.ops.len() >= config.max_ops.min(caps::MAX_OPS) {
            break;
        }
        match Family::of_tag(*tag) {
            Some(f) if !config.core_only && config.families.contains(f) => b.add_family(f, r),
            _ => b.add(r),
        }
    }
    Program::new(b.ops)
}

/// Decodes any byte string into a valid program: dialect 4 after the [`DIALECT_4`] prefix,
/// dialect 3 after the [`DIALECT_3`] prefix, dialect 2 after the [`DIALECT_2`] prefix, the first
/// dialect otherwise.
pub fn from_bytes(bytes: &[u8], config: GenConfig) -> Program {
    let tagged = [(DIALECT_4, 4), (DIALECT_3, 3), (DIALECT_2, 2)]
        .into_iter()
        .find_map(|(prefix, dialect)| Some((bytes.strip_prefix(prefix)?, dialect)));
    if let Some((rest, dialect)) = tagged {
        let mut u = Unstructured::new(rest);
        let mut raws = Vec::new();
        while raws.len() < config.max_ops {
            let Ok(tag) = u8::arbitrary(&mut u) else {
                break;
            };
            match RawOp::arbitrary(&mut u) {
                Ok(r) if !u.is_empty() || raws.is_empty() => raws.push((tag, r)),
                _ => break,
            }
        }
        return build_tagged_in(dialect, &raws, config);
    }
    let mut u = Unstructured::new(bytes);
    let mut raws = Vec::new();
    while raws.len() < config.max_ops {
        match RawOp::arbitrary(&mut u) {
            Ok(r) if !u.is_empty() || raws.is_empty() => raws.push(r),
            _ => break,
        }
    }
    build(&raws, config)
}

/// A small deterministic generator (splitmix64), so that `--seed S` means the same programs on
/// every machine and every version of every dependency.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Program number `index` of the campaign with seed `seed`: dialect-4 bytes when `config`
/// enables a later family, the first dialect otherwise (`--core`).
pub fn random_program(seed: u64, index: u64, config: GenConfig) -> Program {
    from_bytes(&random_program_bytes(seed, index, config), config)
}

/// The bytes behind [`random_program`] (the fuzzer's fresh programs are these too).
pub fn random_program_bytes(seed: u64, index: u64, config: GenConfig) -> Vec<u8> {
    let mut rng = SplitMix::new(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    if config.core_only || config.families.is_empty() {
        return random_bytes(&mut rng, config.max_ops);
    }
    let mut bytes = DIALECT_4.to_vec();
    bytes.extend(random_bytes(&mut rng, config.max_ops));
    // A tag byte per op on top of the ten of a raw op.
    bytes.extend(random_bytes(&mut rng, config.max_ops / 10 + 1));
    bytes
}

/// The bytes behind a random program of `cowcheck run`: enough for between 1 and `max_ops`
/// raw ops (at most 10 bytes each). The fuzzer's "fresh program" mutation uses it too.
pub fn random_bytes(rng: &mut SplitMix, max_ops: usize) -> Vec<u8> {
    let n = 1 + (rng.next_u64() % max_ops.max(1) as u64) as usize;
    let mut bytes = Vec::with_capacity(n * 10 + 16);
    while bytes.len() < n * 10 + 10 {
        bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests;

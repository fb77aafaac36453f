//! Random programs. One decoder serves every front end: bytes -> program, where every byte
//! string decodes to a valid program (handles are resolved against what exists at that point,
//! and an op that cannot stand is turned into one that can). `cowcheck run` feeds it bytes from
//! a seeded generator, proptest feeds it byte vectors, the fuzzer feeds it its inputs through
//! `arbitrary`.

use arbitrary::{Arbitrary, Unstructured};

use super::op::{
    MapId, MapKind, Op, PageRange, Pattern, ProcId, Program, Span, Validator, caps,
};

/// One op's worth of raw choices; `build` resolves it against the program so far.
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
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig { max_ops: 40 }
    }
}

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
}

impl Builder {
    fn new() -> Builder {
        Builder {
            v: Validator::new(),
            ops: Vec::new(),
            live: vec![ProcId::ROOT],
            next_proc: 1,
            next_map: 0,
            holds: [0; caps::MAX_PROCS],
            sizes: [0; caps::MAX_MAPS],
        }
    }

    fn push(&mut self, op: Op) {
        if self.v.admit(&op).is_ok() {
            self.ops.push(op);
        }
    }

    /// A live process: half the time the one that did the previous op (processes work in
    /// bursts, which is also what makes batching in the executor pay), else mostly one of the
    /// newest (deep trees), sometimes any.
    fn pick_proc(&self, who: u8) -> ProcId {
        let n = self.live.len();
        let previous = self.ops.last().map(|o| o.proc()).filter(|p| self.live.contains(p));
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
        if held != 0 && what % 8 != 0 {
            let n = held.count_ones() as usize;
            let k = (what as usize / 8) % n;
            let bit = (0..32).filter(|b| held & 1 << b != 0).nth(k)?;
            return Some(MapId(bit as u8));
        }
        Some(MapId(what % self.next_map))
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
        if r.c % 4 == 0 {
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
            1 + r.a % caps::MAX_MAP_PAGES
        };
        let m = MapId(self.next_map);
        self.push(Op::Map {
            proc: p,
            map: m,
            kind,
            pages,
        });
        self.next_map += 1;
        self.sizes[m.0 as usize] = pages;
        self.holds[p.0 as usize] |= 1 << m.0;
    }

    fn add(&mut self, r: &RawOp) {
        let p = self.pick_proc(r.who);
        // Weights out of 32: map 5, write 9, read 7, fork 6, exit 2, unmap 3.
        let verb = r.verb % 32;
        let m = self.pick_map(p, r.what);
        match (verb, m) {
            (0..=4, _) | (_, None) => self.map(p, r),
            (5..=13, Some(m)) => {
                let pattern = if r.d & 1 == 0 {
                    Pattern::Fill(r.c | 1)
                } else {
                    Pattern::Ramp(r.c)
                };
                let span = self.span(m, r);
                self.push(Op::Write {
                    proc: p,
                    map: m,
                    span,
                    pattern,
                });
            }
            (14..=20, Some(m)) => {
                let span = self.span(m, r);
                self.push(Op::Read { proc: p, map: m, span });
            }
            (21..=26, _) => {
                if self.live.len() >= caps::MAX_LIVE || self.next_proc as usize >= caps::MAX_PROCS
                {
                    return;
                }
                let child = ProcId(self.next_proc);
                self.push(Op::Fork { proc: p, child });
                self.next_proc += 1;
                self.live.push(child);
                self.holds[child.0 as usize] = self.holds[p.0 as usize];
            }
            (27..=28, _) => {
                if self.live.len() > 1 {
                    self.push(Op::Exit { proc: p });
                    self.live.retain(|x| *x != p);
                }
            }
            (_, Some(m)) => {
                let range = self.range(m, r.a, r.b);
                self.push(Op::Unmap {
                    proc: p,
                    map: m,
                    pages: range,
                });
                if range.start == 0 && range.end == self.sizes[m.0 as usize] {
                    self.holds[p.0 as usize] &= !(1 << m.0);
                }
            }
        }
    }
}

/// Builds a valid program from raw ops.
pub fn build(raws: &[RawOp], config: GenConfig) -> Program {
    let mut b = Builder::new();
    for r in raws {
        if b.ops.len() >= config.max_ops.min(caps::MAX_OPS) {
            break;
        }
        b.add(r);
    }
    Program::new(b.ops)
}

/// Decodes any byte string into a valid program.
pub fn from_bytes(bytes: &[u8], config: GenConfig) -> Program {
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

/// Program number `index` of the campaign with seed `seed`.
pub fn random_program(seed: u64, index: u64, config: GenConfig) -> Program {
    let mut rng = SplitMix::new(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    // Between 1 and max_ops raw ops, each 10 bytes.
    let n = 1 + (rng.next_u64() % config.max_ops as u64) as usize;
    let mut bytes = Vec::with_capacity(n * 10 + 10);
    while bytes.len() < n * 10 + 10 {
        bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    from_bytes(&bytes, config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_string_gives_a_valid_program() {
        let mut rng = SplitMix::new(7);
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let p = from_bytes(&bytes, GenConfig::default());
            assert!(p.validate().is_ok(), "{p:?}");
        }
    }

    #[test]
    fn campaigns_reach_deep_trees_and_many_live_processes() {
        let mut depth_max = 0;
        let mut live_max = 0;
        for i in 0..2000 {
            let p = random_program(1, i, GenConfig { max_ops: 80 });
            let mut depth = [0usize; caps::MAX_PROCS];
            let mut live = 1usize;
            for op in &p.ops {
                match op {
                    Op::Fork { proc, child } => {
                        depth[child.0 as usize] = depth[proc.0 as usize] + 1;
                        depth_max = depth_max.max(depth[child.0 as usize]);
                        live += 1;
                        live_max = live_max.max(live);
                    }
                    Op::Exit { .. } => live -= 1,
                    _ => {}
                }
            }
        }
        assert!(depth_max >= 4, "deepest tree {depth_max}");
        assert!(live_max >= 8, "most live {live_max}");
    }
}

//! Front (the `cowcheck` process) <-> executor: frames over the executor's stdin and stdout,
//! each a little-endian u32 length and then that many bytes, encoded with `Enc` and decoded
//! with `Dec` (little-endian; a string or byte string is a u32 length and its bytes; a list
//! is a u32 count and its items). The messages, each laid out beside its code:
//!
//! - executor -> front, once when it starts: `Hello` (`Enc::hello`);
//! - front -> executor: `FrontRequest`, a run (a program, as its text trace) or a fork
//!   yardstick (`encode_request`, `encode_fork_bench`, `decode_request`);
//! - executor -> front, one per request in order: a `KernelRun` (`Enc::run`), or the
//!   yardstick's samples (`Enc::samples`).
//!
//! This module only encodes and decodes (and moves frames through the given reader and
//! writer); it holds no `unsafe`.

use std::io::{Read, Write};

use crate::program::features::Features;
use crate::program::outcome::{Death, DumpRequest, KernelRun, Outcome, ProcView, Snapshot};
use crate::program::physical::Channels;
use crate::program::{MapId, ProcId, Program, trace};

use super::region::{region_flags, region_from_words};

/// The largest frame either side accepts.
const MAX_FRAME: usize = 64 << 20;

/// Writes one frame: the payload's length (u32), then the payload.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&(payload.len() as u32).to_le_bytes())?;
    w.write_all(payload)?;
    w.flush()
}

/// One frame, or `None` at a clean end of file.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other("frame too large"));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

/// What the front asks of the executor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrontRequest {
    /// Run a program in a fresh process tree, and dump the pages asked for.
    Run {
        program: Program,
        dumps: Vec<DumpRequest>,
    },
    /// Measure the executor's bare fork + _exit + waitpid, `samples` times.
    ForkBench { samples: u32 },
}

/// A request's first byte.
mod request {
    pub const RUN: u8 = 0;
    pub const FORK_BENCH: u8 = 1;
}

/// Dump requests a run request may carry (the rest of the frame is then read as the trace).
const MAX_DUMPS: usize = 1024;

/// A run request: `[RUN][u32 n][n dump requests][the program's text trace, to the end]`.
pub fn encode_request(program: &Program, dumps: &[DumpRequest]) -> Vec<u8> {
    let mut enc = Enc::default();
    enc.u8(request::RUN);
    enc.u32(dumps.len() as u32);
    for d in dumps {
        enc.dump_request(d);
    }
    enc.buf.extend_from_slice(program.to_string().as_bytes());
    enc.buf
}

/// A fork yardstick request: `[FORK_BENCH][u32 samples]`.
pub fn encode_fork_bench(samples: u32) -> Vec<u8> {
    let mut enc = Enc::default();
    enc.u8(request::FORK_BENCH);
    enc.u32(samples);
    enc.buf
}

/// The request a frame carries; the error says why it is none (the executor replies with it
/// as the run's harness error). A yardstick request cut short asks for no samples.
pub fn decode_request(frame: &[u8]) -> Result<FrontRequest, String> {
    let bad = |e: DecodeError| e.to_string();
    let mut dec = Dec::new(frame);
    match dec.u8().map_err(bad)? {
        request::FORK_BENCH => Ok(FrontRequest::ForkBench {
            samples: dec.u32().unwrap_or(0),
        }),
        request::RUN => {
            let n = dec.u32().map_err(bad)? as usize;
            let mut dumps = Vec::new();
            for _ in 0..n.min(MAX_DUMPS) {
                dumps.push(dec.dump_request().map_err(bad)?);
            }
            let program = trace::parse(dec.rest())
                .map_err(|e| format!("executor could not parse the program: {e}"))?;
            Ok(FrontRequest::Run { program, dumps })
        }
        other => Err(format!("unknown request {other}")),
    }
}

/// What the executor says when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub page_size: u64,
    pub release: String,
    pub machine: String,
    /// What the kernel (or emulator) under the executor supports, probed by trying.
    pub features: Features,
    /// Which parts of the physical channel run (probed likewise; `--no-physical` turns all
    /// off).
    pub physical: Channels,
}

/// The hello's feature bits: one per field of `Features`.
mod feature_bit {
    pub const GUARD: u32 = 1 << 0;
    pub const GUARD_SHARED: u32 = 1 << 1;
    pub const POPULATE: u32 = 1 << 2;
    pub const COLD_PAGEOUT: u32 = 1 << 3;
    pub const WIPEONFORK: u32 = 1 << 4;
    pub const FREE: u32 = 1 << 5;
    pub const DONTUNMAP: u32 = 1 << 6;
    pub const DONTUNMAP_SHARED: u32 = 1 << 7;
    pub const NOREPLACE: u32 = 1 << 8;
    pub const FORCE_WRITE: u32 = 1 << 9;
    pub const MOVE_MULTI_VMA: u32 = 1 << 10;
    pub const COLLAPSE: u32 = 1 << 11;
    pub const THP_ALIGN: u32 = 1 << 12;
    pub const GLIBC_MALLOC: u32 = 1 << 13;
    pub const GLIBC_DYNAMIC_THRESHOLD: u32 = 1 << 14;
    pub const HUGETLB: u32 = 1 << 15;
    pub const CLONE_VM: u32 = 1 << 19;
    /// Every bit above.
    pub const ALL: u32 = ((1 << 16) - 1) | CLONE_VM;
}

/// Features as the hello's bit set.
pub fn features_bits(f: &Features) -> u32 {
    // Destructured, so that a new field cannot be forgotten here.
    let Features {
        guard,
        guard_shared,
        populate,
        cold_pageout,
        wipeonfork,
        free,
        dontunmap,
        dontunmap_shared,
        noreplace,
        force_write,
        move_multi_vma,
        collapse,
        thp_align,
        glibc_malloc,
        glibc_dynamic_threshold,
        clone_vm,
        hugetlb,
    } = *f;
    let bit = |on: bool, b: u32| if on { b } else { 0 };
    bit(guard, feature_bit::GUARD)
        | bit(guard_shared, feature_bit::GUARD_SHARED)
        | bit(populate, feature_bit::POPULATE)
        | bit(cold_pageout, feature_bit::COLD_PAGEOUT)
        | bit(wipeonfork, feature_bit::WIPEONFORK)
        | bit(free, feature_bit::FREE)
        | bit(dontunmap, feature_bit::DONTUNMAP)
        | bit(dontunmap_shared, feature_bit::DONTUNMAP_SHARED)
        | bit(noreplace, feature_bit::NOREPLACE)
        | bit(force_write, feature_bit::FORCE_WRITE)
        | bit(move_multi_vma, feature_bit::MOVE_MULTI_VMA)
        | bit(collapse, feature_bit::COLLAPSE)
        | bit(thp_align, feature_bit::THP_ALIGN)
        | bit(glibc_malloc, feature_bit::GLIBC_MALLOC)
        | bit(
            glibc_dynamic_threshold,
            feature_bit::GLIBC_DYNAMIC_THRESHOLD,
        )
        | bit(clone_vm, feature_bit::CLONE_VM)
        | bit(hugetlb, feature_bit::HUGETLB)
}

/// The features of a bit set; `None` if it has a bit no feature has.
pub fn features_from_bits(b: u32) -> Option<Features> {
    if b & !feature_bit::ALL != 0 {
        return None;
    }
    let on = |bit: u32| b & bit != 0;
    Some(Features {
        guard: on(feature_bit::GUARD),
        guard_shared: on(feature_bit::GUARD_SHARED),
        populate: on(feature_bit::POPULATE),
        cold_pageout: on(feature_bit::COLD_PAGEOUT),
        wipeonfork: on(feature_bit::WIPEONFORK),
        free: on(feature_bit::FREE),
        dontunmap: on(feature_bit::DONTUNMAP),
        dontunmap_shared: on(feature_bit::DONTUNMAP_SHARED),
        noreplace: on(feature_bit::NOREPLACE),
        force_write: on(feature_bit::FORCE_WRITE),
        move_multi_vma: on(feature_bit::MOVE_MULTI_VMA),
        collapse: on(feature_bit::COLLAPSE),
        thp_align: on(feature_bit::THP_ALIGN),
        glibc_malloc: on(feature_bit::GLIBC_MALLOC),
        glibc_dynamic_threshold: on(feature_bit::GLIBC_DYNAMIC_THRESHOLD),
        clone_vm: on(feature_bit::CLONE_VM),
        hugetlb: on(feature_bit::HUGETLB),
    })
}

/// An `Outcome`'s first byte.
mod outcome {
    pub const SKIPPED: u8 = 0;
    pub const MAPPED: u8 = 1;
    pub const FAILED: u8 = 2;
    pub const DONE: u8 = 3;
    pub const READ: u8 = 4;
    pub const KILLED: u8 = 5;
    pub const HUNG: u8 = 6;
    pub const STOPPED: u8 = 7;
    pub const FORKED: u8 = 8;
    pub const ALLOCATED: u8 = 9;
    pub const WATCHED: u8 = 14;
}

/// Whether an optional item follows.
mod present {
    pub const NO: u8 = 0;
    pub const YES: u8 = 1;
}

/// Little-endian encoder of the executor's messages.
#[derive(Default)]
pub struct Enc {
    pub buf: Vec<u8>,
}

impl Enc {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.u32(v as u32);
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
    }
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// `[u64 page size][str release][str machine][u32 feature bits][u32 physical channels]`.
    pub fn hello(&mut self, h: &Hello) {
        self.u64(h.page_size);
        self.str(&h.release);
        self.str(&h.machine);
        self.u32(features_bits(&h.features));
        self.u32(h.physical.to_words());
    }

    /// `[u32 k][k u64 samples, in nanoseconds]`.
    pub fn samples(&mut self, samples: &[u64]) {
        self.u32(samples.len() as u32);
        for s in samples {
            self.u64(*s);
        }
    }

    /// `[u8 kind]` and by kind: mapped `[u64 addr]`, failed `[i32 errno]`, read
    /// `[digests]`, killed `[i32 signal][i32 si_code][u64 page][digests]`, stopped
    /// `[u64 rounds]`, forked `[u64 before][u64 after]`, allocated `[u64 addr][u64 appeared][u64
    /// vanished]`; skipped, done and hung nothing. Digests are `[u32 n][n u64]`.
    pub fn outcome(&mut self, o: &Outcome) {
        match o {
            Outcome::Skipped => self.u8(outcome::SKIPPED),
            Outcome::Mapped { addr } => {
                self.u8(outcome::MAPPED);
                self.u64(*addr);
            }
            Outcome::Failed { errno } => {
                self.u8(outcome::FAILED);
                self.i32(*errno);
            }
            Outcome::Done => self.u8(outcome::DONE),
            Outcome::Read { digests } => {
                self.u8(outcome::READ);
                self.digests(digests);
            }
            Outcome::Hung => self.u8(outcome::HUNG),
            Outcome::Stopped { rounds } => {
                self.u8(outcome::STOPPED);
                self.u64(*rounds);
            }
            Outcome::Watched {
                rounds,
                first,
                last,
                drops,
            } => {
                self.u8(outcome::WATCHED);
                for w in [rounds, first, last, drops] {
                    self.u64(*w);
                }
            }
            Outcome::Forked { before, after } => {
                self.u8(outcome::FORKED);
                self.u64(*before);
                self.u64(*after);
            }
            Outcome::Allocated {
                addr,
                appeared,
                vanished,
            } => {
                self.u8(outcome::ALLOCATED);
                self.u64(*addr);
                self.u64(*appeared);
                self.u64(*vanished);
            }
            Outcome::Killed { death, digests } => {
                self.u8(outcome::KILLED);
                self.i32(death.signal);
                self.i32(death.code);
                self.u64(death.page);
                self.digests(digests);
            }
        }
    }

    fn digests(&mut self, d: &[u64]) {
        self.u32(d.len() as u32);
        for x in d {
            self.u64(*x);
        }
    }

    /// `[u32 n]` processes, each `[u8 handle][u32 r][r × (u64 start, u64 end, u64 flags)]
    /// [u32 p][p × (u64 address, u64 digest)][u32 q][q × u64 pagemap word]` (flags as
    /// `region`).
    pub fn snapshot(&mut self, s: &Snapshot) {
        self.u32(s.procs.len() as u32);
        for p in &s.procs {
            self.u8(p.proc.0);
            self.u32(p.regions.len() as u32);
            for r in &p.regions {
                self.u64(r.start);
                self.u64(r.end);
                self.u64(region_flags(r));
            }
            self.u32(p.pages.len() as u32);
            for (a, d) in &p.pages {
                self.u64(*a);
                self.u64(*d);
            }
            self.u32(p.phys.len() as u32);
            for w in &p.phys {
                self.u64(*w);
            }
        }
    }

    /// `[u32 after op][u8 process][u8 mapping][u32 page]`.
    pub fn dump_request(&mut self, d: &DumpRequest) {
        self.u32(d.after_op);
        self.u8(d.proc.0);
        self.u8(d.map.0);
        self.u32(d.page as u32);
    }

    /// `[u32 n][n outcomes][u32 s][s × ([u32 after op][snapshot])]
    /// [u32 d][d × ([dump request][u8 present][bytes if present])][u8 present][str harness
    /// error if present]`.
    pub fn run(&mut self, r: &KernelRun) {
        self.u32(r.outcomes.len() as u32);
        for o in &r.outcomes {
            self.outcome(o);
        }
        self.u32(r.snapshots.len() as u32);
        for (i, s) in &r.snapshots {
            self.u32(*i as u32);
            self.snapshot(s);
        }
        self.u32(r.dumps.len() as u32);
        for (d, bytes) in &r.dumps {
            self.dump_request(d);
            match bytes {
                Some(b) => {
                    self.u8(present::YES);
                    self.bytes(b);
                }
                None => self.u8(present::NO),
            }
        }
        match &r.harness_error {
            Some(e) => {
                self.u8(present::YES);
                self.str(e);
            }
            None => self.u8(present::NO),
        }
    }
}

/// Little-endian decoder; every read is bounds-checked, and anything `Enc` never writes is a
/// `DecodeError`.
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed message from the executor at byte {0}")]
pub struct DecodeError(pub usize);

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Dec<'a> {
        Dec { buf, pos: 0 }
    }

    /// Everything not yet read.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError(self.pos))?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError(self.pos))?;
        self.pos = end;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(self.u32()? as i32)
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn string(&mut self) -> Result<String, DecodeError> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
    /// A count of items each at least `min` bytes long, checked against what is left so a
    /// corrupt count cannot make us allocate wildly.
    fn count(&mut self, min: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.buf.len() - self.pos {
            return Err(DecodeError(self.pos));
        }
        Ok(n)
    }
    /// `present::YES` or `present::NO`.
    fn present(&mut self) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.u8()? {
            present::YES => Ok(true),
            present::NO => Ok(false),
            _ => Err(DecodeError(at)),
        }
    }

    /// As `Enc::hello`.
    pub fn hello(&mut self) -> Result<Hello, DecodeError> {
        let page_size = self.u64()?;
        let release = self.string()?;
        let machine = self.string()?;
        let at = self.pos;
        let features = features_from_bits(self.u32()?).ok_or(DecodeError(at))?;
        let at = self.pos;
        let physical = Channels::from_words(self.u32()?).ok_or(DecodeError(at))?;
        Ok(Hello {
            page_size,
            release,
            machine,
            features,
            physical,
        })
    }

    /// As `Enc::samples`.
    pub fn samples(&mut self) -> Result<Vec<u64>, DecodeError> {
        let n = self.count(8)?;
        (0..n).map(|_| self.u64()).collect()
    }

    fn digests(&mut self) -> Result<Vec<u64>, DecodeError> {
        let n = self.count(8)?;
        (0..n).map(|_| self.u64()).collect()
    }

    /// As `Enc::outcome`.
    pub fn outcome(&mut self) -> Result<Outcome, DecodeError> {
        let at = self.pos;
        Ok(match self.u8()? {
            outcome::SKIPPED => Outcome::Skipped,
            outcome::MAPPED => Outcome::Mapped { addr: self.u64()? },
            outcome::FAILED => Outcome::Failed { errno: self.i32()? },
            outcome::DONE => Outcome::Done,
            outcome::READ => Outcome::Read {
                digests: self.digests()?,
            },
            outcome::KILLED => {
                let death = Death {
                    signal: self.i32()?,
                    code: self.i32()?,
                    page: self.u64()?,
                };
                Outcome::Killed {
                    death,
                    digests: self.digests()?,
                }
            }
            outcome::HUNG => Outcome::Hung,
            outcome::STOPPED => Outcome::Stopped {
                rounds: self.u64()?,
            },
            outcome::WATCHED => Outcome::Watched {
                rounds: self.u64()?,
                first: self.u64()?,
                last: self.u64()?,
                drops: self.u64()?,
            },
            outcome::FORKED => Outcome::Forked {
                before: self.u64()?,
                after: self.u64()?,
            },
            outcome::ALLOCATED => Outcome::Allocated {
                addr: self.u64()?,
                appeared: self.u64()?,
                vanished: self.u64()?,
            },
            _ => return Err(DecodeError(at)),
        })
    }

    /// As `Enc::snapshot`.
    pub fn snapshot(&mut self) -> Result<Snapshot, DecodeError> {
        let n = self.count(9)?;
        let mut procs = Vec::with_capacity(n);
        for _ in 0..n {
            let proc = ProcId(self.u8()?);
            let nr = self.count(24)?;
            let mut regions = Vec::with_capacity(nr);
            for _ in 0..nr {
                let at = self.pos;
                let (s, e, f) = (self.u64()?, self.u64()?, self.u64()?);
                regions.push(region_from_words(s, e, f).ok_or(DecodeError(at))?);
            }
            let np = self.count(16)?;
            let mut pages = Vec::with_capacity(np);
            for _ in 0..np {
                pages.push((self.u64()?, self.u64()?));
            }
            let nq = self.count(8)?;
            let phys = (0..nq).map(|_| self.u64()).collect::<Result<Vec<_>, _>>()?;
            procs.push(ProcView {
                proc,
                regions,
                pages,
                phys,
            });
        }
        Ok(Snapshot { procs })
    }

    /// As `Enc::dump_request`.
    pub fn dump_request(&mut self) -> Result<DumpRequest, DecodeError> {
        let after_op = self.u32()?;
        let proc = ProcId(self.u8()?);
        let map = MapId(self.u8()?);
        let at = self.pos;
        let page = u16::try_from(self.u32()?).map_err(|_| DecodeError(at))?;
        Ok(DumpRequest {
            after_op,
            proc,
            map,
            page,
        })
    }

    /// As `Enc::run`.
    pub fn run(&mut self) -> Result<KernelRun, DecodeError> {
        let n = self.count(1)?;
        let outcomes = (0..n)
            .map(|_| self.outcome())
            .collect::<Result<Vec<_>, _>>()?;
        let n = self.count(8)?;
        let mut snapshots = Vec::with_capacity(n);
        for _ in 0..n {
            let i = self.u32()? as usize;
            snapshots.push((i, self.snapshot()?));
        }
        let n = self.count(11)?;
        let mut dumps = Vec::with_capacity(n);
        for _ in 0..n {
            let d = self.dump_request()?;
            let bytes = match self.present()? {
                true => Some(self.bytes()?.to_vec()),
                false => None,
            };
            dumps.push((d, bytes));
        }
        let harness_error = match self.present()? {
            true => Some(self.string()?),
            false => None,
        };
        Ok(KernelRun {
            outcomes,
            snapshots,
            dumps,
            harness_error,
        })
    }
}

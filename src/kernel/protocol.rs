//! Wire formats of the kernel side.
//!
//! Two links:
//! - coordinator <-> worker: messages of fixed-size requests (`REQ_WORDS` u64 words each: one
//!   per op, plus AWAIT and PASS of turns) and messages of replies (a head of `REPLY_HEAD` words
//!   whose word 5 is the payload's length, then the payload), over a `SOCK_SEQPACKET` socket
//!   pair per worker (message boundaries kept, end of file when the other side is gone, and a
//!   child's socket passed to its parent with the FORK). Fixed words because workers allocate
//!   nothing. The order between workers is kept by turns on the tree's shared board
//!   (`worker::Turn`), not by the coordinator.
//! - front (the `cowcheck` process) <-> executor: length-prefixed frames over the executor's
//!   stdin and stdout; a request carries the program as its text trace (the one format), the
//!   reply carries outcomes, snapshots and page dumps in a small binary encoding.

use crate::program::outcome::{Backing, Death, Outcome, ProcView, Region, Snapshot};
pub use crate::program::outcome::{DumpRequest, KernelRun};
use crate::program::{MapId, ProcId};

pub const REQ_WORDS: usize = 10;
/// Request word: bit i set means word i names a mapping rather than an address, as
/// `(handle + 1) << 32 | page`, which the worker resolves through the tree's table of mapping
/// addresses (the coordinator sends requests before the maps they name have run).
pub const REQ_RELOC: usize = 8;
/// Request word: the handle + 1 whose address the op's result is (map, map at, remap), which
/// the worker enters in the table; 0 for none.
pub const REQ_CREATES: usize = 9;
/// Reply header words before the payload.
pub const REPLY_HEAD: usize = 6;
/// Payload words a reply may carry (a snapshot of ~8000 pages, or a 64 KiB page dump).
pub const REPLY_PAYLOAD: usize = 16 * 1024;

/// Request words: `[verb, a1, a2, ...]`. For `WRITE`/`READ`/`UNMAP`: `a1` is the mapping's
/// base, `a2` the first page, `a3` pages, `a4..a5` the byte range in each page, `a6` the
/// pattern (fill byte, or 1 << 8 | ramp base). `MAP`: `a1` kind, `a2` length in bytes.
pub mod verb {
    pub const MAP: u64 = 1;
    pub const WRITE: u64 = 2;
    pub const READ: u64 = 3;
    pub const FORK: u64 = 4;
    pub const EXIT: u64 = 5;
    pub const UNMAP: u64 = 6;
    pub const SNAPSHOT: u64 = 7;
    pub const DUMP: u64 = 8;
    /// `[MAP_AT, kind, len, addr, how (1 fixed, 2 noreplace, 3 hint)]`.
    pub const MAP_AT: u64 = 9;
    /// `[PROTECT, base, first page, pages, prot bits]`.
    pub const PROTECT: u64 = 10;
    /// `[ADVISE, base, first page, pages, MADV_*]`.
    pub const ADVISE: u64 = 11;
    /// `[REMAP, base, first page, old pages, new pages, MREMAP_* flags, new address]`.
    pub const REMAP: u64 = 12;
    /// `[INVALID, base, call, bad argument]` (`Syscall` and `BadArg` order).
    pub const INVALID: u64 = 13;
    /// `[POKE, base, first page, pages, lo, hi, pattern, via (0 /proc/self/mem, 1 vm)]`.
    pub const POKE: u64 = 14;
    /// `[VMSPLICE, base, page]`: one page into the program's pipe.
    pub const VMSPLICE: u64 = 15;
    /// `[PIPE_READ]`: one page out of the program's pipe.
    pub const PIPE_READ: u64 = 16;
    /// `[SPAWN_ROOT]`, to the zygote: fork the root of a program; the reply carries its pid
    /// and passes the coordinator's end of its socket.
    pub const SPAWN_ROOT: u64 = 17;
    /// `[AWAIT, t]`: wait until the tree's turn reaches t (`worker::Turn`); no reply.
    pub const AWAIT: u64 = 18;
    /// `[PASS, t]`: make the turn t and wake whoever waits; no reply.
    pub const PASS: u64 = 19;
}

pub mod status {
    pub const OK: u64 = 1;
    /// The call returned -1; word 1 is errno.
    pub const ERR: u64 = 2;
    /// The worker took a fatal signal; words 1..4 are signal, si_code, address, and word 4 the
    /// number of payload words it had produced.
    pub const FAULT: u64 = 3;
    /// The worker could not do what was asked (a cap, a bad request): a harness error.
    pub const REFUSED: u64 = 4;
    /// The op names a mapping that was never made (its map failed or never ran): not run.
    pub const SKIPPED: u64 = 5;
}

/// Region flag word: prot bits 0..3, shared bit 3, backing from bit 4.
pub fn region_flags(r: &Region) -> u64 {
    r.prot as u64 | (r.shared as u64) << 3 | (backing_code(r.backing) << 4)
}

pub fn backing_code(b: Backing) -> u64 {
    match b {
        Backing::Anon => 0,
        Backing::DevZero => 1,
        Backing::Shmem => 2,
        Backing::Other => 3,
    }
}

pub fn region_from_words(start: u64, end: u64, flags: u64) -> Region {
    Region {
        start,
        end,
        prot: (flags & 7) as u8,
        shared: flags & 8 != 0,
        backing: match flags >> 4 {
            0 => Backing::Anon,
            1 => Backing::DevZero,
            2 => Backing::Shmem,
            _ => Backing::Other,
        },
    }
}

/// What the executor says when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub page_size: u64,
    pub release: String,
    pub machine: String,
    /// What the kernel (or emulator) under the executor supports, probed by trying.
    pub features: crate::program::features::Features,
}

/// Features as a bit set on the wire, in `Features::list` order.
pub fn features_bits(f: &crate::program::features::Features) -> u32 {
    f.list()
        .iter()
        .enumerate()
        .map(|(i, (_, on))| (*on as u32) << i)
        .sum()
}

pub fn features_from_bits(b: u32) -> crate::program::features::Features {
    let bit = |i: u32| b & (1 << i) != 0;
    crate::program::features::Features {
        guard: bit(0),
        guard_shared: bit(1),
        populate: bit(2),
        cold_pageout: bit(3),
        wipeonfork: bit(4),
        free: bit(5),
        dontunmap: bit(6),
        dontunmap_shared: bit(7),
        noreplace: bit(8),
        force_write: bit(9),
    }
}

/// Little-endian encoder.
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

    pub fn hello(&mut self, h: &Hello) {
        self.u64(h.page_size);
        self.str(&h.release);
        self.str(&h.machine);
        self.u32(features_bits(&h.features));
    }

    pub fn outcome(&mut self, o: &Outcome) {
        match o {
            Outcome::Skipped => self.u8(0),
            Outcome::Mapped { addr } => {
                self.u8(1);
                self.u64(*addr);
            }
            Outcome::Failed { errno } => {
                self.u8(2);
                self.i32(*errno);
            }
            Outcome::Done => self.u8(3),
            Outcome::Read { digests } => {
                self.u8(4);
                self.digests(digests);
            }
            Outcome::Hung => self.u8(6),
            Outcome::Killed { death, digests } => {
                self.u8(5);
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
        }
    }

    pub fn dump_request(&mut self, d: &DumpRequest) {
        self.u32(d.after_op);
        self.u8(d.proc.0);
        self.u8(d.map.0);
        self.u32(d.page as u32);
    }

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
                    self.u8(1);
                    self.bytes(b);
                }
                None => self.u8(0),
            }
        }
        match &r.harness_error {
            Some(e) => {
                self.u8(1);
                self.str(e);
            }
            None => self.u8(0),
        }
    }
}

/// Little-endian decoder; every read is bounds-checked.
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

    pub fn hello(&mut self) -> Result<Hello, DecodeError> {
        Ok(Hello {
            page_size: self.u64()?,
            release: self.string()?,
            machine: self.string()?,
            features: features_from_bits(self.u32()?),
        })
    }

    fn digests(&mut self) -> Result<Vec<u64>, DecodeError> {
        let n = self.count(8)?;
        (0..n).map(|_| self.u64()).collect()
    }

    pub fn outcome(&mut self) -> Result<Outcome, DecodeError> {
        let at = self.pos;
        Ok(match self.u8()? {
            0 => Outcome::Skipped,
            1 => Outcome::Mapped { addr: self.u64()? },
            2 => Outcome::Failed { errno: self.i32()? },
            3 => Outcome::Done,
            4 => Outcome::Read {
                digests: self.digests()?,
            },
            5 => {
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
            6 => Outcome::Hung,
            _ => return Err(DecodeError(at)),
        })
    }

    pub fn snapshot(&mut self) -> Result<Snapshot, DecodeError> {
        let n = self.count(9)?;
        let mut procs = Vec::with_capacity(n);
        for _ in 0..n {
            let proc = ProcId(self.u8()?);
            let nr = self.count(24)?;
            let mut regions = Vec::with_capacity(nr);
            for _ in 0..nr {
                let (s, e, f) = (self.u64()?, self.u64()?, self.u64()?);
                regions.push(region_from_words(s, e, f));
            }
            let np = self.count(16)?;
            let mut pages = Vec::with_capacity(np);
            for _ in 0..np {
                pages.push((self.u64()?, self.u64()?));
            }
            procs.push(ProcView {
                proc,
                regions,
                pages,
            });
        }
        Ok(Snapshot { procs })
    }

    pub fn dump_request(&mut self) -> Result<DumpRequest, DecodeError> {
        Ok(DumpRequest {
            after_op: self.u32()?,
            proc: ProcId(self.u8()?),
            map: MapId(self.u8()?),
            page: self.u32()? as u16,
        })
    }

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
            let bytes = match self.u8()? {
                1 => Some(self.bytes()?.to_vec()),
                _ => None,
            };
            dumps.push((d, bytes));
        }
        let harness_error = match self.u8()? {
            1 => Some(self.string()?),
            _ => None,
        };
        Ok(KernelRun {
            outcomes,
            snapshots,
            dumps,
            harness_error,
        })
    }
}

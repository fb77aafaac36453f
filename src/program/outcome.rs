//! What an op did and what a process looks like: the common vocabulary of the model (what may
//! be) and the kernel executor (what is). `check` compares values of these types and nothing else.

use crate::program::ProcId;

pub use crate::program::tables::{BUS_ADRERR, SEGV_ACCERR, SEGV_MAPERR, SIGBUS, SIGSEGV};

/// The digest a snapshot gives a page that could not be read (a guard page, a page past a
/// shared object's end): no real page digests to it in practice, and both sides use it.
pub const UNREADABLE: u64 = u64::MAX;

/// How a process died inside an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Death {
    /// The signal, or 0 when the executor saw the process vanish without a report.
    pub signal: i32,
    /// `si_code`.
    pub code: i32,
    /// The faulting address, rounded down to its page: within a page the order in which a
    /// store loop touches bytes is the libc's business, the page is not.
    pub page: u64,
}

impl Death {
    pub fn describe(&self) -> String {
        let sig = match self.signal {
            SIGSEGV => "SIGSEGV",
            SIGBUS => "SIGBUS",
            0 => "vanished",
            _ => "signal",
        };
        let code = match (self.signal, self.code) {
            (SIGSEGV, SEGV_MAPERR) => "SEGV_MAPERR",
            (SIGSEGV, SEGV_ACCERR) => "SEGV_ACCERR",
            (SIGBUS, BUS_ADRERR) => "BUS_ADRERR",
            _ => "",
        };
        if self.signal == 0 {
            return "vanished without a report".to_string();
        }
        format!(
            "killed by {sig}({}) {code}(si_code {}) at page {:#x}",
            self.signal, self.code, self.page
        )
    }
}

/// The result of one op in one process.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The process was not alive (it exited or was killed before), so nothing ran.
    Skipped,
    /// `map`: the address the kernel chose.
    Mapped { addr: u64 },
    /// A call returned -1 with this errno.
    Failed { errno: i32 },
    /// `write`, `fork`, `exit`, `unmap` completed.
    Done,
    /// `read`: one digest per page touched (for a byte span, of those bytes only).
    Read { digests: Vec<u64> },
    /// The process died in the op; `digests` holds what a `read` saw before the fault.
    Killed { death: Death, digests: Vec<u64> },
    /// The process did not answer within the op deadline, and was killed. Linux never does
    /// this; an emulator that deadlocks does.
    Hung,
    /// `stop`: how many rounds the racing thread ran (a writer's last stored value).
    Stopped { rounds: u64 },
    /// `stop` of a `read` thread (docs/SEMANTICS.md T10): its rounds, the first and the last
    /// value it loaded from the page's last word, and how many loads were smaller than the one
    /// before.
    Watched {
        rounds: u64,
        first: u64,
        last: u64,
        drops: u64,
    },
    /// `fork` in a process whose thread races: the thread's published counter read just before
    /// the fork and just after it returned in the parent (docs/SEMANTICS.md T2).
    Forked { before: u64, after: u64 },
    /// An allocator op that succeeded (`malloc`..., `free`): the block's address (0 for free),
    /// the length of the range that appeared during the call and begins 16 bytes before the
    /// block (glibc's chunk in a mapping of its own; 0: none), and the bytes of the ranges
    /// that went away during the call (docs/SEMANTICS.md M8, M9).
    Allocated {
        addr: u64,
        appeared: u64,
        vanished: u64,
    },
}

impl Outcome {
    pub fn death(&self) -> Option<Death> {
        match self {
            Outcome::Killed { death, .. } => Some(*death),
            _ => None,
        }
    }
}

/// Protection bits as `/proc/PID/maps` shows them.
pub const PROT_R: u8 = 1;
pub const PROT_W: u8 = 2;
pub const PROT_X: u8 = 4;

/// What backs a region, as `/proc/PID/maps` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Backing {
    /// Private anonymous memory: no name.
    Anon,
    /// A private mapping of /dev/zero: `/dev/zero`.
    DevZero,
    /// A shmem object (shared anonymous or shared /dev/zero): `/dev/zero (deleted)`.
    Shmem,
    /// Anything else that appeared: a finding in itself.
    Other,
    /// A hugetlb mapping, private or shared: `/anon_hugepage (deleted)` (docs/SEMANTICS.md L8).
    Hugetlb,
}

/// A run of pages with the same attributes (normalised: neighbours with equal attributes are
/// one region whatever the kernel's VMA boundaries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub prot: u8,
    pub shared: bool,
    pub backing: Backing,
}

impl Region {
    pub fn describe(&self) -> String {
        format!(
            "{:#x}-{:#x} {}{}{}{} {:?} ({} KiB)",
            self.start,
            self.end,
            if self.prot & PROT_R != 0 { 'r' } else { '-' },
            if self.prot & PROT_W != 0 { 'w' } else { '-' },
            if self.prot & PROT_X != 0 { 'x' } else { '-' },
            if self.shared { 's' } else { 'p' },
            self.backing,
            (self.end - self.start) / 1024
        )
    }

    /// Whether `next` continues this region with the same attributes.
    pub fn joins(&self, next: &Region) -> bool {
        self.end == next.start
            && self.prot == next.prot
            && self.shared == next.shared
            && self.backing == next.backing
    }
}

/// Appends `r` to a sorted list of regions, merging it with the last one when they join.
pub fn push_region(regions: &mut Vec<Region>, r: Region) {
    if let Some(last) = regions.last_mut()
        && last.joins(&r)
    {
        last.end = r.end;
        return;
    }
    regions.push(r);
}

/// The whole observable state of one live process: its layout outside the harness's own
/// mappings, and a digest of every readable page in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProcView {
    pub proc: ProcId,
    pub regions: Vec<Region>,
    /// `(page address, digest)`, ascending.
    pub pages: Vec<(u64, u64)>,
    /// The physical channel: one pagemap word (`physical::pm`) per page of `regions`, in
    /// order, read before the pages were digested; empty when the channel did not run here.
    pub phys: Vec<u64>,
}

/// Every live process, ascending by handle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Snapshot {
    pub procs: Vec<ProcView>,
}

/// Whether `bytes` are all zero, a block of 64 at a time (the compiler makes each block one
/// vector OR), not byte by byte.
pub fn all_zero(bytes: &[u8]) -> bool {
    let blocks = bytes.chunks_exact(64);
    let rest = blocks.remainder();
    blocks
        .map(|b| b.iter().fold(0u8, |acc, &x| acc | x))
        .chain(rest.iter().copied())
        .all(|x| x == 0)
}

/// The 64-bit digest of a page (or of a byte span) that both sides compute. Four independent
/// multiply lanes over little-endian words: fast enough that digesting every page after every
/// fork costs little next to the fork itself. Not cryptographic; collisions only hide a
/// divergence, never invent one. A 4 KiB page of zeros (most pages a view reads are untouched
/// or zeroed) is told by `all_zero` and given its digest without the multiplies: the same
/// value, worked out once (the executor's digests were 7% of a campaign's CPU, `perf`).
pub fn digest(bytes: &[u8]) -> u64 {
    const PAGE: usize = 4096;
    static ZERO_PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    if bytes.len() == PAGE && all_zero(bytes) {
        return *ZERO_PAGE.get_or_init(|| lanes(&[0u8; PAGE]));
    }
    lanes(bytes)
}

/// `digest`'s four lanes.
fn lanes(bytes: &[u8]) -> u64 {
    const K: [u64; 4] = [
        0x9E37_79B9_7F4A_7C15,
        0xC2B2_AE3D_27D4_EB4F,
        0x1656_67B1_9E37_79F9,
        0x85EB_CA77_C2B2_AE63,
    ];
    let mut h = [K[0] ^ bytes.len() as u64, K[1], K[2], K[3]];
    let mut chunks = bytes.chunks_exact(32);
    for c in &mut chunks {
        for lane in 0..4 {
            let mut w = [0u8; 8];
            w.copy_from_slice(&c[lane * 8..lane * 8 + 8]);
            let w = u64::from_le_bytes(w);
            h[lane] = (h[lane] ^ w).wrapping_mul(K[lane]).rotate_left(31);
        }
    }
    let rest = chunks.remainder();
    for (i, b) in rest.iter().enumerate() {
        h[i % 4] = (h[i % 4] ^ *b as u64).wrapping_mul(K[(i + 1) % 4]);
    }
    let mut x = h[0] ^ h[1].rotate_left(17) ^ h[2].rotate_left(34) ^ h[3].rotate_left(51);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x
}

/// The digests of `bytes` (a page: a multiple of 32 bytes) with its last 8 bytes replaced by
/// each candidate word in turn, in constant time per word: a racing writer's page learnt from
/// an observed digest among a range of counters (docs/SEMANTICS.md T2). Equals `digest` of
/// the page with that word (a test checks).
pub fn last_word_digests(bytes: &[u8]) -> impl Fn(u64) -> u64 + use<> {
    const K: [u64; 4] = [
        0x9E37_79B9_7F4A_7C15,
        0xC2B2_AE3D_27D4_EB4F,
        0x1656_67B1_9E37_79F9,
        0x85EB_CA77_C2B2_AE63,
    ];
    assert!(bytes.len() >= 32 && bytes.len().is_multiple_of(32));
    let mut h = [K[0] ^ bytes.len() as u64, K[1], K[2], K[3]];
    let chunks: Vec<&[u8]> = bytes.chunks_exact(32).collect();
    for (i, c) in chunks.iter().enumerate() {
        let lanes = if i + 1 == chunks.len() { 3 } else { 4 };
        for lane in 0..lanes {
            let mut w = [0u8; 8];
            w.copy_from_slice(&c[lane * 8..lane * 8 + 8]);
            let w = u64::from_le_bytes(w);
            h[lane] = (h[lane] ^ w).wrapping_mul(K[lane]).rotate_left(31);
        }
    }
    move |word: u64| {
        let h3 = (h[3] ^ word).wrapping_mul(K[3]).rotate_left(31);
        let mut x = h[0] ^ h[1].rotate_left(17) ^ h[2].rotate_left(34) ^ h3.rotate_left(51);
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^= x >> 33;
        x
    }
}

/// One line for an outcome.
pub fn describe_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Skipped => "skipped (process not alive, or mapping never made)".into(),
        Outcome::Mapped { addr } => format!("mapped at {addr:#x}"),
        Outcome::Failed { errno } => format!(
            "failed: {} ({errno})",
            nix::errno::Errno::from_raw(*errno).desc()
        ),
        Outcome::Done => "ok".into(),
        Outcome::Hung => "no answer within the op deadline (hung; killed)".into(),
        Outcome::Stopped { rounds } => format!("stopped after {rounds} round(s)"),
        Outcome::Watched {
            rounds,
            first,
            last,
            drops,
        } => format!(
            "stopped after {rounds} load(s): first {first}, last {last}, {drops} smaller than the one before"
        ),
        Outcome::Allocated {
            addr,
            appeared,
            vanished,
        } => {
            let mut s = if *addr == 0 {
                "ok".to_string()
            } else {
                format!("allocated at {addr:#x}")
            };
            if *appeared > 0 {
                s += &format!(", in a fresh mapping of {appeared} bytes from 16 bytes before it");
            }
            if *vanished > 0 {
                s += &format!(", {vanished} bytes unmapped");
            }
            s
        }
        Outcome::Forked { before, after } => {
            format!("ok (the racing thread's counter was {before} before, {after} after)")
        }
        Outcome::Read { digests } => format!(
            "read {} page(s), digests {}",
            digests.len(),
            short_digests(digests)
        ),
        Outcome::Killed { death, digests } => {
            if digests.is_empty() {
                death.describe()
            } else {
                format!(
                    "{} after reading {} page(s), digests {}",
                    death.describe(),
                    digests.len(),
                    short_digests(digests)
                )
            }
        }
    }
}

fn short_digests(d: &[u64]) -> String {
    let mut s: Vec<String> = d.iter().take(4).map(|x| format!("{x:016x}")).collect();
    if d.len() > 4 {
        s.push("…".into());
    }
    s.join(" ")
}

/// A page whose full bytes the front wants after an op (for a divergence report): named by
/// handles, never by address, so it means the same in every run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DumpRequest {
    pub after_op: u32,
    pub proc: ProcId,
    pub map: crate::program::MapId,
    pub page: u16,
}

/// Everything one program did on the kernel: what the executor hands the checker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelRun {
    /// One per op, in order; shorter than the program if the run was cut off by a harness error.
    pub outcomes: Vec<Outcome>,
    /// `(index of the op after which it was taken, snapshot)`.
    pub snapshots: Vec<(usize, Snapshot)>,
    /// Requested dumps; `None` when the page was not readable then.
    pub dumps: Vec<(DumpRequest, Option<Vec<u8>>)>,
    /// Set when the executor had to abandon the program (timeout, protocol, resources).
    pub harness_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The zero page's short cut gives what the lanes give, and a page that is not all zero
    /// takes the lanes.
    #[test]
    fn zero_page_digest_is_the_lanes_digest() {
        let zero = vec![0u8; 4096];
        assert_eq!(digest(&zero), lanes(&zero));
        assert_eq!(digest(&zero), digest(&zero));
        for i in [0usize, 63, 64, 4095] {
            let mut p = zero.clone();
            p[i] = 9;
            assert_eq!(digest(&p), lanes(&p), "byte {i}");
            assert_ne!(digest(&p), digest(&zero), "byte {i}");
            assert!(!all_zero(&p));
        }
        assert!(all_zero(&zero) && all_zero(&[]) && all_zero(&[0; 100]));
        assert!(!all_zero(&[0, 0, 1]));
    }

    #[test]
    fn digest_sees_every_byte_and_the_length() {
        let zero = vec![0u8; 4096];
        let base = digest(&zero);
        for i in [0usize, 7, 8, 31, 32, 4000, 4095] {
            let mut p = zero.clone();
            p[i] = 1;
            assert_ne!(digest(&p), base, "byte {i}");
        }
        assert_ne!(digest(&zero[..4095]), base);
        assert_ne!(digest(&[0u8; 3]), digest(&[0u8; 4]));
    }

    #[test]
    fn last_word_digests_are_digests() {
        let mut page: Vec<u8> = (0..4096).map(|i| (i * 7) as u8).collect();
        let f = last_word_digests(&page);
        for w in [0u64, 1, 2, 0xdead_beef, u64::MAX] {
            page[4088..].copy_from_slice(&w.to_le_bytes());
            assert_eq!(f(w), digest(&page), "word {w}");
        }
    }
}

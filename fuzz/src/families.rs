//! The later op families in the fuzzer: threads and racing ops, vfork and CLONE_VM children,
//! the allocator, huge-page backings (dialects 2 to 4 of `generate`, tagged raw ops after a
//! 10-byte prefix).
//!
//! - **One program everywhere.** An input decodes with every feature (`crate::decode`:
//!   `GenConfig::default()`, `Features::ALL`), whatever the kernel probed, so that an artifact
//!   replays to the same program on any machine.
//! - **What the kernel lacks is skipped.** An input whose program the generator would not make
//!   for this kernel (`generate::mutate::skip`: it decodes to another program under the
//!   features the executor probed) is not run: libFuzzer is told to reject it (no cells, no
//!   crash, never a divergence), and it is counted in the stats line.
//! - **hugetlb only when asked.** MAP_HUGETLB maps take pages from the machine's pool
//!   (docs/SEMANTICS.md L9), so, like `cowcheck run --hugetlb`, the fuzzer runs programs with a
//!   hugetlb map only under `COWCHECK_FUZZ_HUGETLB=1` (and where the executor probed hugetlb);
//!   otherwise they are skipped, and fresh programs are drawn without them.
//! - **Mutations keep the dialect** (`generate::mutate`, `crate::mutate`). A tagged input keeps
//!   its prefix: the structure-aware mutations work on its 10-byte (tag, raw op) units,
//!   libFuzzer's byte mutations on the bytes after the prefix; a first-dialect input can be
//!   lifted into the newest dialect (4) with the same ops (classic tags), and a tag can be turned
//!   to a family.
//!
//! This file holds the skip rule's inputs (what is allowed here) and the stats line.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use cowcheck::check::Tally;
use cowcheck::program::features::Features;
use cowcheck::program::generate::mutate::{self as mutation, Skip, dialect};
use cowcheck::program::{Op, OpKind, Program};

/// The dialects of `generate` the stats count (the newest is 4).
const DIALECTS: usize = 4;

/// Whether hugetlb programs may run: `COWCHECK_FUZZ_HUGETLB=1`.
pub fn hugetlb_asked() -> bool {
    static ASKED: OnceLock<bool> = OnceLock::new();
    *ASKED.get_or_init(|| std::env::var("COWCHECK_FUZZ_HUGETLB").as_deref() == Ok("1"))
}

/// What programs may use here: the kernel's features, and hugetlb maps if asked for and
/// probed.
#[derive(Clone, Copy, Debug)]
pub struct Allowed {
    pub kernel: Features,
    pub hugetlb: bool,
}

impl Allowed {
    pub fn on(kernel: Features) -> Allowed {
        Allowed {
            kernel,
            hugetlb: kernel.hugetlb && hugetlb_asked(),
        }
    }

    /// Why `program` (of `data`) is not run here, if it is not.
    pub fn skip(&self, data: &[u8], program: &Program) -> Option<Skip> {
        mutation::skip(data, program, self.kernel, self.hugetlb)
    }
}

/// What the `ops` target's executor said it has, once it said it; the mutator draws fresh
/// programs for it. Unset (the `model` target): everything.
static ALLOWED: OnceLock<Allowed> = OnceLock::new();

/// Records what programs may use here (first call wins: one executor's probe per process).
pub fn set_allowed(allowed: Allowed) {
    let _ = ALLOWED.set(allowed);
}

/// What programs may use here, as set by [`set_allowed`]; every feature if unset.
pub fn allowed_here() -> Allowed {
    ALLOWED.get().copied().unwrap_or(Allowed {
        kernel: Features::ALL,
        hugetlb: true,
    })
}

// ---------------------------------------------------------------------------------------------
// What ran: a stats line, so that a campaign shows which families it reached.

/// Counters of the `ops` target.
struct Stats {
    inputs: AtomicU64,
    skipped: AtomicU64,
    skipped_hugetlb: AtomicU64,
    /// Inputs that ran, by dialect (1 to [`DIALECTS`]).
    dialect: [AtomicU64; DIALECTS],
    threads: AtomicU64,
    races: AtomicU64,
    races_started: AtomicU64,
    thread_ops: AtomicU64,
    clones: AtomicU64,
    alloc: AtomicU64,
    thp: AtomicU64,
    hugetlb: AtomicU64,
}

static STATS: Stats = Stats {
    inputs: AtomicU64::new(0),
    skipped: AtomicU64::new(0),
    skipped_hugetlb: AtomicU64::new(0),
    dialect: [const { AtomicU64::new(0) }; DIALECTS],
    threads: AtomicU64::new(0),
    races: AtomicU64::new(0),
    races_started: AtomicU64::new(0),
    thread_ops: AtomicU64::new(0),
    clones: AtomicU64::new(0),
    alloc: AtomicU64::new(0),
    thp: AtomicU64::new(0),
    hugetlb: AtomicU64::new(0),
};

fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

/// An input skipped because its program needs what the kernel lacks (or hugetlb, not asked).
pub fn note_skipped(why: Skip) {
    bump(
        match why {
            Skip::Absent => &STATS.skipped,
            Skip::Hugetlb => &STATS.skipped_hugetlb,
        },
        1,
    );
    note_input();
}

/// A program of `data` that ran and agreed with the model, with the comparison's tally.
pub fn note_ran(data: &[u8], program: &Program, tally: &Tally) {
    // A dialect newer than the table counts as the newest (never an index out of bounds: the
    // first CI run after dialect 4 panicked here).
    bump(&STATS.dialect[(dialect(data) as usize).clamp(1, DIALECTS) - 1], 1);
    let has = |kinds: &[OpKind]| program.ops.iter().any(|o| kinds.contains(&o.kind()));
    let races: usize = tally.races.iter().sum();
    bump(
        &STATS.threads,
        u64::from(tally.thread_ops > 0 || has(&[OpKind::Thread])),
    );
    bump(&STATS.races, u64::from(races > 0));
    bump(&STATS.races_started, races as u64);
    bump(&STATS.thread_ops, tally.thread_ops as u64);
    bump(
        &STATS.clones,
        u64::from(has(&[OpKind::Vfork, OpKind::CloneVm])),
    );
    bump(
        &STATS.alloc,
        u64::from(program.ops.iter().any(|o| o.kind().is_alloc())),
    );
    bump(
        &STATS.thp,
        u64::from(
            program.ops.iter().any(
                |o| matches!(o, Op::Map { pages, args, .. } if *pages >= 256 && !args.hugetlb),
            ),
        ),
    );
    bump(&STATS.hugetlb, u64::from(mutation::uses_hugetlb(program)));
    note_input();
}

/// Counts an input; prints the stats line at 1024 inputs and each doubling after (unless
/// `COWCHECK_FUZZ_QUIET`), and registers the line for the process's exit.
fn note_input() {
    static AT_EXIT: OnceLock<()> = OnceLock::new();
    AT_EXIT.get_or_init(|| {
        // SAFETY: registers a function without arguments that only reads atomics and writes
        // to stderr; libFuzzer leaves through exit() after -max_total_time and -runs.
        unsafe { libc::atexit(print_at_exit) };
    });
    let n = STATS.inputs.fetch_add(1, Ordering::Relaxed) + 1;
    if n >= 1024 && n.is_power_of_two() && std::env::var_os("COWCHECK_FUZZ_QUIET").is_none() {
        eprintln!("{}", stats_line());
    }
}

extern "C" fn print_at_exit() {
    if STATS.inputs.load(Ordering::Relaxed) > 0 {
        eprintln!("{}", stats_line());
    }
}

/// `cowcheck-fuzz: N inputs: ...`, what ran of the later families.
pub fn stats_line() -> String {
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let s = &STATS;
    let ran: u64 = s.dialect.iter().map(g).sum();
    format!(
        "cowcheck-fuzz: {} inputs: {ran} ran (dialect 1/2/3/4: {}/{}/{}/{}), skipped: {} need a \
         feature the kernel lacks, {} hugetlb maps (COWCHECK_FUZZ_HUGETLB=1 runs them); \
         programs that ran with: threads {}, races {} ({} races started, {} thread ops), vfork/clone {}, \
         allocator {}, THP-sized maps {}, hugetlb {}",
        g(&s.inputs),
        g(&s.dialect[0]),
        g(&s.dialect[1]),
        g(&s.dialect[2]),
        g(&s.dialect[3]),
        g(&s.skipped),
        g(&s.skipped_hugetlb),
        g(&s.threads),
        g(&s.races),
        g(&s.races_started),
        g(&s.thread_ops),
        g(&s.clones),
        g(&s.alloc),
        g(&s.thp),
        g(&s.hugetlb),
    )
}

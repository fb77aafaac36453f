//! What the fuzz targets share: the decoder from fuzz input to program, the one long-lived
//! executor that the `ops` target sends every program to, and the semantic-coverage counters
//! that libFuzzer reads as extra coverage.
//!
//! The fuzzing process never forks workers itself: libFuzzer may run threads, and fork under
//! AddressSanitizer is slow. It starts one executor process (`cowcheck __executor`, a normal,
//! uninstrumented build) and reuses it for every input; the executor forks a fresh process tree
//! per program. Environment:
//!
//! - `COWCHECK_BIN`: the cowcheck binary that runs the executor. Default: a `cowcheck` next to
//!   the fuzz target (ClusterFuzzLite and OSS-Fuzz builds put it there), else the workspace's
//!   `target/release/cowcheck`, built with `cargo build --release` when it is missing or older
//!   than the sources.
//! - `COWCHECK_UNDER`: a command to start the executor through, like `cowcheck --under`; for
//!   example `env COWCHECK_FAULT=private-shared LD_PRELOAD=/abs/path/libfault.so`. It applies to
//!   the executor only, never to the fuzzing process.
//! - `COWCHECK_DEADLINE`: seconds one program may take before the executor counts as hung
//!   (default 60).
//! - `COWCHECK_FUZZ_QUIET`: set to anything to stop the lines that announce new semantic cells.
//! - `COWCHECK_FUZZ_CELLS=0`: count the cells but do not feed them to libFuzzer (to measure what
//!   the feedback is worth).
//! - `COWCHECK_FUZZ_KEEP_GOING=1`: on a divergence, print the shrunk report (once per shape) and
//!   go on instead of crashing; no artifact is saved. For measurements; for long campaigns,
//!   libFuzzer's `-fork=N -ignore_crashes=1` keeps going and keeps the artifacts.
//! - `COWCHECK_FUZZ_HUGETLB=1`: also run programs with MAP_HUGETLB maps, where the executor
//!   probed hugetlb (like `cowcheck run --hugetlb`; the pool is the machine's, docs/SEMANTICS.md
//!   L9). Without it they are skipped, and fresh programs are drawn without them ([`families`]).

pub mod families;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use cowcheck::campaign;
use cowcheck::check::coverage::{CELLS, CONFIGS, Cell, CellSet};
use cowcheck::check::{self, Verdict};
use cowcheck::kernel::{Executor, ExecutorConfig};
use cowcheck::program::Program;
use cowcheck::program::generate::{self, GenConfig, mutate as mutation};
use cowcheck::report;

/// The program a fuzz input stands for: the same decoder as `cowcheck decode`, so an artifact
/// means the same program to the fuzzer and to the command line, on every machine (every
/// feature assumed; what the kernel lacks is skipped by [`check_input`], never decoded away).
pub fn decode(data: &[u8]) -> Program {
    generate::from_bytes(data, GenConfig::default())
}

// ---------------------------------------------------------------------------------------------
// Semantic cells as libFuzzer extra counters.

/// One counter per cell, then one per page configuration (`coverage::CONFIGS`).
const COUNTER_BYTES: usize = (CELLS + CONFIGS).next_multiple_of(64);

/// One 8-bit counter per semantic cell. libFuzzer finds this section on Linux through the
/// linker's `__start___libfuzzer_extra_counters`/`__stop___libfuzzer_extra_counters`, clears it
/// before every input (word by word, hence the alignment and the padding to whole words) and
/// reads it after, like its own edge counters.
#[repr(C, align(64))]
struct Counters([AtomicU8; COUNTER_BYTES]);

#[cfg_attr(
    target_os = "linux",
    unsafe(link_section = "__libfuzzer_extra_counters")
)]
#[used]
static COUNTERS: Counters = Counters([const { AtomicU8::new(0) }; COUNTER_BYTES]);

/// Every cell this fuzzing process has reached, for the progress lines.
static REACHED: Mutex<Option<CellSet>> = Mutex::new(None);

/// Per-input tally of cells: call [`CellHits::hit`] for each cell an op reaches, then
/// [`CellHits::publish`] once per input.
pub struct CellHits {
    hits: Vec<u8>,
    /// Page configurations present after some op (stepping stones, not counted as cells).
    configs: Vec<u8>,
}

impl Default for CellHits {
    fn default() -> Self {
        CellHits {
            hits: vec![0; CELLS],
            configs: vec![0; CONFIGS],
        }
    }
}

impl check::CoverageSink for CellHits {
    fn cell(&mut self, _op_index: usize, cell: Cell) {
        self.hit(cell);
    }
    fn config(&mut self, _op_index: usize, config: usize) {
        self.present(config);
    }
}

impl CellHits {
    pub fn hit(&mut self, cell: Cell) {
        let h = &mut self.hits[cell.index()];
        *h = h.saturating_add(1);
    }

    /// A page configuration exists (`coverage::configs_after`).
    pub fn present(&mut self, config: usize) {
        if let Some(c) = self.configs.get_mut(config) {
            *c = 1;
        }
    }

    /// Hands the cells to libFuzzer and announces the ones this process had not seen.
    ///
    /// A counter holds how many ops reached its cell, capped at 3: libFuzzer buckets counts
    /// (1, 2, 3, 4-7, ...), so "reached once, twice, three or more times" are distinct features
    /// and the corpus does not fill up with mere repetitions.
    pub fn publish(&self) {
        static FEED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let feed = *FEED.get_or_init(|| std::env::var("COWCHECK_FUZZ_CELLS").as_deref() != Ok("0"));
        let mut new = Vec::new();
        let mut reached = REACHED.lock().unwrap_or_else(|e| e.into_inner());
        let reached = reached.get_or_insert_with(CellSet::new);
        for (i, &h) in self.hits.iter().enumerate() {
            if h == 0 {
                continue;
            }
            if feed {
                COUNTERS.0[i].store(h.min(3), Ordering::Relaxed);
            }
            if let Some(cell) = Cell::from_index(i)
                && reached.insert(cell)
            {
                new.push(cell.to_string());
            }
        }
        if feed {
            for (i, &c) in self.configs.iter().enumerate() {
                if c != 0 {
                    COUNTERS.0[CELLS + i].store(1, Ordering::Relaxed);
                }
            }
        }
        scheduler::reward(new.len());
        if !new.is_empty() && std::env::var_os("COWCHECK_FUZZ_QUIET").is_none() {
            eprintln!(
                "cowcheck-fuzz: {} of {CELLS} semantic cells reached; new: {}",
                reached.len(),
                new.join(", ")
            );
        }
    }
}

/// Records the cells that `program` reaches (on a model run alone) as this input's coverage.
pub fn publish_program_cells(program: &Program, page_size: usize) {
    let mut hits = CellHits::default();
    cowcheck::check::coverage::walk_covered(program, page_size, &mut hits);
    hits.publish();
}

// ---------------------------------------------------------------------------------------------
// The executor.

/// The cowcheck binary that runs the executor (see the module doc).
pub fn executor_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("COWCHECK_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            fatal(&format!(
                "COWCHECK_BIN={} is not a file; point it at a cowcheck binary \
                 (cargo build --release makes target/release/cowcheck)",
                bin.display()
            ));
        }
        return bin;
    }
    if let Ok(me) = std::env::current_exe() {
        let beside = me.with_file_name("cowcheck");
        if beside.is_file() {
            return beside;
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ sits inside the workspace")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_relative() { root.join(t) } else { t })
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release").join("cowcheck");
    let why = if !bin.is_file() {
        Some("is missing")
    } else if newer_sources(&root, &bin) {
        Some("is older than the sources")
    } else {
        None
    };
    if let Some(why) = why {
        eprintln!(
            "cowcheck-fuzz: the executor binary {} {why}; building it with \
             `cargo build --release --bin cowcheck` in {} (set COWCHECK_BIN to use another)",
            bin.display(),
            root.display()
        );
        // The fuzz build's flags and toolchain (sanitizers, coverage, nightly) must not leak
        // into the executor: it is a plain release build.
        let status = std::process::Command::new("cargo")
            .args(["build", "--release", "--bin", "cowcheck"])
            .current_dir(&root)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO_BUILD_TARGET")
            .stdout(std::process::Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() && bin.is_file() => {}
            Ok(s) => fatal(&format!(
                "building the executor failed ({s}); run `cargo build --release` in {} and look",
                root.display()
            )),
            Err(e) => fatal(&format!(
                "cannot run cargo to build the executor ({e}); build it yourself and set \
                 COWCHECK_BIN to target/release/cowcheck"
            )),
        }
    }
    bin
}

/// Whether any source file of the cowcheck package is newer than `bin`.
fn newer_sources(root: &Path, bin: &Path) -> bool {
    fn newest(path: &Path) -> Option<SystemTime> {
        let meta = std::fs::metadata(path).ok()?;
        if !meta.is_dir() {
            return meta.modified().ok();
        }
        std::fs::read_dir(path)
            .ok()?
            .flatten()
            .filter_map(|e| newest(&e.path()))
            .max()
    }
    let Some(built) = std::fs::metadata(bin).and_then(|m| m.modified()).ok() else {
        return true;
    };
    ["src", "Cargo.toml", "Cargo.lock"]
        .iter()
        .filter_map(|p| newest(&root.join(p)))
        .any(|t| t > built)
}

/// How the fuzz targets start their executor.
pub fn executor_config() -> ExecutorConfig {
    let mut config = ExecutorConfig::new(executor_binary());
    if let Ok(under) = std::env::var("COWCHECK_UNDER") {
        config.under = under.split_whitespace().map(String::from).collect();
    }
    let secs = std::env::var("COWCHECK_DEADLINE")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(60);
    config.program_deadline = Duration::from_secs(secs);
    config
}

fn fatal(msg: &str) -> ! {
    eprintln!("cowcheck-fuzz: {msg}");
    std::process::exit(2);
}

/// The executor of this fuzzing process, started on first use.
static EXECUTOR: Mutex<Option<Executor>> = Mutex::new(None);

/// Runs `f` with the long-lived executor, starting it if needed.
pub fn with_executor<R>(f: impl FnOnce(&mut Executor) -> R) -> R {
    let mut slot = EXECUTOR.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        let config = executor_config();
        match Executor::start(&config) {
            Ok(ex) => {
                eprintln!(
                    "cowcheck-fuzz: executor `{}` ready: kernel {} {}, page size {}",
                    config.command_line(),
                    ex.hello.release,
                    ex.hello.machine,
                    ex.page_size()
                );
                *slot = Some(ex);
            }
            Err(e) => fatal(&format!("cannot start the executor: {e}")),
        }
    }
    f(slot.as_mut().expect("started above"))
}

/// Drops the executor (it is killed and reaped); the next use starts a new one.
fn restart_executor() {
    let mut slot = EXECUTOR.lock().unwrap_or_else(|e| e.into_inner());
    *slot = None;
}

/// The `ops` check: runs `program` on the kernel through the executor and on the model. On a
/// divergence, shrinks it and panics with the readable trace. A harness failure (the executor
/// died or hung) restarts the executor and retries once; a second one panics too, as a bug of
/// cowcheck rather than of the kernel.
///
/// The program's semantic cells (and page configurations) are read off the comparison's own
/// model run and handed to libFuzzer (`CellHits::publish`): one model run per input, not two
/// (measured under AddressSanitizer: a separate model walk took 18% of the fuzzer's time).
pub fn check_program(program: &Program) -> Option<check::Tally> {
    static KEEP_GOING: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    static SHAPES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let keep_going = *KEEP_GOING
        .get_or_init(|| std::env::var_os("COWCHECK_FUZZ_KEEP_GOING").is_some_and(|v| v != "0"));
    for attempt in 0..2 {
        let mut hits = CellHits::default();
        let mut tally = None;
        let result = with_executor(|ex| {
            let checked = cowcheck::trial::run(ex, program, Some(&mut hits));
            match checked {
                Ok((Verdict::Agreed(t), _)) => {
                    tally = Some(t);
                    Ok(None)
                }
                Ok((Verdict::Diverged(d), _)) if keep_going => {
                    let shape = d.signature(program);
                    let mut shapes = SHAPES.lock().unwrap_or_else(|e| e.into_inner());
                    if !shapes.contains(&shape) {
                        shapes.push(shape);
                        eprintln!("{}", divergence_report(ex, program, d));
                    }
                    Ok(None)
                }
                Ok((Verdict::Diverged(d), _)) => Ok(Some(divergence_report(ex, program, d))),
                Err(e) => Err(e),
            }
        });
        if result.is_ok() {
            hits.publish();
        }
        match result {
            Ok(None) => return tally,
            Ok(Some(report)) => panic!("{report}"),
            Err(e) if attempt == 0 => {
                eprintln!(
                    "cowcheck-fuzz: harness error ({e}); restarting the executor and retrying"
                );
                restart_executor();
            }
            Err(e) => panic!(
                "cowcheck harness error, not a kernel divergence: {e}\n\
                 the program (it failed twice, with a fresh executor the second time):\n{program}"
            ),
        }
    }
    None
}

/// The `ops` target on one input: decodes it, skips it (rejected: libFuzzer keeps nothing of
/// it) when its program needs what this kernel lacks or hugetlb was not asked for
/// (`generate::mutate::skip`), else checks it ([`check_program`]) and counts what ran.
pub fn check_input(data: &[u8]) -> libfuzzer_sys::Corpus {
    let program = decode(data);
    let allowed = with_executor(|ex| families::Allowed::on(ex.hello.features));
    families::set_allowed(allowed);
    if let Some(why) = allowed.skip(data, &program) {
        families::note_skipped(why);
        scheduler::reward(0);
        return libfuzzer_sys::Corpus::Reject;
    }
    if let Some(tally) = check_program(&program) {
        families::note_ran(data, &program, &tally);
    }
    libfuzzer_sys::Corpus::Keep
}

/// Shrinks a divergence and renders it the way `cowcheck run` does.
fn divergence_report(ex: &mut Executor, program: &Program, d: check::Divergence) -> String {
    let mut out = String::new();
    match campaign::explain(ex, 0, program, d.clone()) {
        Ok(f) => {
            out += &format!(
                "cowcheck: kernel and model diverge ({})\n\
                 kernel {} {}, page size {}, executor `{}`\n\
                 shrunk from {} to {} ops; first seen after op {}\n\n",
                f.signature,
                ex.hello.release,
                ex.hello.machine,
                ex.page_size(),
                ex.config().command_line(),
                f.original.ops.len(),
                f.shrunk.ops.len(),
                f.divergence.op_index + 1
            );
            out += &f.shrunk.to_string();
            out += "\n";
            out += &report::divergence_text(&f.shrunk, &f.divergence, &f.pages);
        }
        Err(e) => {
            out += &format!(
                "cowcheck: kernel and model diverge ({}), and shrinking failed ({e}); \
                 the unshrunk program:\n\n{program}",
                d.signature(program)
            );
        }
    }
    out += "\nthe crash artifact decodes to the unshrunk program: `cowcheck decode ARTIFACT` \
            prints it, `cowcheck replay --artifact ARTIFACT` reruns it, \
            `cowcheck shrink --artifact ARTIFACT` shrinks it (add the same --under as the \
            fuzzer's COWCHECK_UNDER, if any)\n";
    out
}

// ---------------------------------------------------------------------------------------------
// Mutations that know the input's grain.

/// Which kind of mutation to spend the next input on: a fresh random program (what `cowcheck
/// run` does every time) or a mutation of a corpus input (what feedback is for). Random
/// programs reach new cells fast at first and slowly later, mutations the other way round
/// (measured: without fresh programs the fuzzer had 558 cells after 1,000 inputs where the
/// random campaign had 914, and caught up only after some 25,000). So each kind is an arm of a
/// bandit: its reward is the number of semantic cells that inputs made by it reached first,
/// averaged over a sliding window, and fresh programs get the share of inputs that their
/// recent yield earns, between 5% and 95%.
mod scheduler {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU8, Ordering};

    /// Decayed (inputs, new cells) per arm: [mutation, fresh]. The priors favour fresh
    /// programs (80%) until the first few hundred inputs have spoken: at first the corpus is
    /// the small seeds, whose mutations reach little.
    static ARMS: Mutex<[(f64, f64); 2]> = Mutex::new([(10.0, 2.0), (10.0, 8.0)]);
    /// What made the input about to run: 0 none (an input of the corpus, run as is), 1 a
    /// mutation, 2 a fresh program somewhere in libFuzzer's chain of mutations.
    static LAST: AtomicU8 = AtomicU8::new(0);
    /// Weight kept per input: a window of about 500 inputs.
    const DECAY: f64 = 0.998;

    /// `u` uniform in [0, 1): true for a fresh program.
    pub fn choose_fresh(u: f64) -> bool {
        let arms = ARMS.lock().unwrap_or_else(|e| e.into_inner());
        let rate = |(n, gain): (f64, f64)| gain / n.max(1e-9);
        let (m, f) = (rate(arms[0]), rate(arms[1]));
        let p = (f / (f + m).max(1e-12)).clamp(0.05, 0.95);
        let fresh = u < p;
        let kind = if fresh { 2 } else { 1 };
        // A chain with a fresh program in it counts as fresh.
        LAST.fetch_max(kind, Ordering::Relaxed);
        fresh
    }

    /// The input made by the last chain of mutations reached `new_cells` cells first.
    pub fn reward(new_cells: usize) {
        let arm = match LAST.swap(0, Ordering::Relaxed) {
            0 => return,
            1 => 0,
            _ => 1,
        };
        let mut arms = ARMS.lock().unwrap_or_else(|e| e.into_inner());
        for a in arms.iter_mut() {
            a.0 *= DECAY;
            a.1 *= DECAY;
        }
        arms[arm].0 += 1.0;
        arms[arm].1 += new_cells as f64;
    }
}

/// Structure-aware mutation on top of libFuzzer's own (`generate::mutate::structural`): an
/// input is a run of raw ops of 9 bytes each (first dialect), or a dialect
/// prefix and then (tag, raw op) units of 10 bytes (dialects 2 and 3: the later op families),
/// so more than half the time the input gains fresh random ops (6 in 14), repeats a run of its
/// own (fork after fork, write after write; 10%), loses one (5%) or has one replaced (10%),
/// always at op boundaries and never touching the prefix. One time in 14 a tagged input has a
/// tag turned to a later family, and a first-dialect input is lifted into the newest dialect (4)
/// with the same ops; otherwise libFuzzer mutates bytes as usual (after the prefix, if any). Or, as
/// often as the [`scheduler`] says, it is replaced by a fresh random program drawn like those of
/// `cowcheck run` (the newest dialect, 4, without what the kernel lacks:
/// `families::allowed_here`). Longer, op-shaped programs reach the deep process trees and sharing
/// patterns that single-byte mutations rarely build.
pub fn mutate(data: &mut [u8], size: usize, max_size: usize, seed: u32) -> usize {
    let mut rng = generate::SplitMix::new(u64::from(seed) ^ 0x5eed_f0c0_c0a0_u64);
    let cap = max_size.min(data.len());
    let size = size.min(cap);
    // Fresh program or mutation of this one: the scheduler's choice, by what each has been
    // earning lately.
    let u = (rng.next_u64() % (1 << 20)) as f64 / (1 << 20) as f64;
    if scheduler::choose_fresh(u) {
        // A fresh program, drawn exactly as `cowcheck run` draws one: the feedback-guided
        // search never explores less widely than the random campaign it competes with.
        let seed = ((rng.next_u64() % (1 << 30)) << 32) ^ u64::from(seed);
        let here = families::allowed_here();
        let fresh = mutation::fresh_program_bytes(seed, here.kernel, here.hugetlb);
        let n = fresh.len().min(cap);
        data[..n].copy_from_slice(&fresh[..n]);
        if n > 0 {
            return n;
        }
    }
    let roll = (rng.next_u64() % mutation::ROLLS as u64) as usize;
    if let Some(n) = mutation::structural(data, size, cap, roll, &mut rng) {
        return n;
    }
    let start = mutation::layout(&data[..size]).0;
    start + libfuzzer_sys::fuzzer_mutate(&mut data[start..], size - start, cap - start)
}

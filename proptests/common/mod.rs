//! What every property run shares: the fixed-seed configuration, the program strategy (the
//! crate's own byte decoder), and the report of a failure as a replayable cowcheck trace.
//!
//! Each `proptests/*.rs` target includes this module with `mod common;`. Nothing here knows a
//! property; it only runs one and explains a failure.
//!
//! Environment (parsed here and nowhere else):
//! - `COWCHECK_PROPTEST_CASES=N`: run N cases of every property instead of its default (to run
//!   more locally); it wins over `PROPTEST_CASES`.
//! - `PROPTEST_CASES=N`: proptest's own case count, honoured when the variable above is unset.
//! - `PROPTEST_RNG_SEED=S`: replace the property's fixed seed (printed on failure) by `S`.
//! - `PROPTEST_DISABLE_FAILURE_PERSISTENCE`: do not read or write `proptests/regressions/`.
//! - `PROPTEST_MAX_SHRINK_ITERS`, `PROPTEST_MAX_SHRINK_TIME`: proptest's own shrink limits.

#![allow(dead_code)]

use std::cell::Cell;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cowcheck::program::Program;
use cowcheck::program::generate::{GenConfig, from_bytes};
use proptest::prelude::*;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngAlgorithm, RngSeed, TestCaseError, TestError, TestRunner,
};

/// A generated program together with the bytes it was decoded from. Its `Debug` form (what
/// proptest writes after `# shrinks to` in the regression file) is the trace as one escaped
/// string, so the regression file stays one line per seed and still says what failed.
#[derive(Clone)]
pub struct Generated {
    pub bytes: Vec<u8>,
    pub program: Program,
}

impl fmt::Debug for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.program.to_string())
    }
}

/// Programs from the crate's own generator: any byte string decodes to a valid program, so
/// proptest's shrinking of the bytes always shrinks to a valid program too.
pub fn programs() -> impl Strategy<Value = Generated> {
    proptest::collection::vec(any::<u8>(), 0..600).prop_map(|bytes| Generated {
        program: from_bytes(&bytes, GenConfig::default()),
        bytes,
    })
}

/// One property: its name (which names its regression file and its trace file), its default
/// case count and its fixed seed.
#[derive(Clone, Debug)]
pub struct Property {
    pub name: &'static str,
    pub cases: u32,
    pub seed: u64,
    /// Most shrink steps proptest takes after a failure (each one reruns the property).
    pub shrink_iters: u32,
}

/// How a run ended.
#[derive(Debug)]
pub enum Ran<V> {
    Passed {
        cases: u32,
        elapsed: Duration,
    },
    /// `value` is the smallest failing input proptest found; `reason` is what the property said
    /// about it.
    Failed {
        reason: String,
        value: V,
        elapsed: Duration,
    },
}

impl Property {
    /// A property with `default_cases` cases, unless the environment asks for another count.
    /// The seed is a hash of the name: fixed, and different for every property.
    pub fn new(name: &'static str, default_cases: u32) -> Property {
        let env_u32 = |var: &str| std::env::var(var).ok().and_then(|v| v.trim().parse().ok());
        let cases = env_u32("COWCHECK_PROPTEST_CASES")
            .or_else(|| env_u32("PROPTEST_CASES"))
            .unwrap_or(default_cases);
        let seed = std::env::var("PROPTEST_RNG_SEED")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| fnv1a(name.as_bytes()));
        Property {
            name,
            cases,
            seed,
            shrink_iters: 2048,
        }
    }

    /// The same property with another case count (counter-tests stop at the first failure, so
    /// they only need an upper bound).
    pub fn with_cases(mut self, cases: u32) -> Property {
        self.cases = cases;
        self
    }

    /// The same property with at most `n` shrink steps (for properties whose cases are slow).
    pub fn with_shrink_iters(mut self, n: u32) -> Property {
        self.shrink_iters = n;
        self
    }

    /// The same property (same seed and cases) under another name, so that its files do not
    /// collide with the original's (counter-tests run in parallel with the real run).
    pub fn renamed(mut self, name: String) -> Property {
        self.name = Box::leak(name.into_boxed_str());
        self
    }

    /// Where proptest persists the seeds of failing cases; they are replayed before any new case.
    pub fn regression_file(&self) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("proptests/regressions")
            .join(format!("{}.txt", self.name))
    }

    /// Where the failing program is written as a trace.
    pub fn trace_file(&self, suffix: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("cowcheck-proptests")
            .join(format!("{}{suffix}.trace", self.name))
    }

    /// proptest's configuration: ChaCha with the fixed seed, the case count, and failures
    /// persisted (unless `persist` is false, as in counter-tests, whose failures are expected).
    pub fn config(&self, persist: bool) -> Config {
        let base = Config::default();
        let persistence = if persist && base.failure_persistence.is_some() {
            let path: &'static str = Box::leak(
                self.regression_file()
                    .display()
                    .to_string()
                    .into_boxed_str(),
            );
            Some(Box::new(FileFailurePersistence::Direct(path)) as _)
        } else {
            None
        };
        Config {
            cases: self.cases,
            rng_algorithm: RngAlgorithm::ChaCha,
            rng_seed: RngSeed::Fixed(self.seed),
            failure_persistence: persistence,
            // Shrinking is bounded so that even a failing CI run ends in bounded time.
            max_shrink_iters: base.max_shrink_iters.min(self.shrink_iters),
            max_shrink_time: if base.max_shrink_time == 0 {
                60_000
            } else {
                base.max_shrink_time
            },
            ..base
        }
    }

    /// Runs `test` on values of `strategy` and says how it ended; never panics on a failure.
    pub fn run<S: Strategy>(
        &self,
        persist: bool,
        strategy: &S,
        test: impl Fn(S::Value) -> Result<(), TestCaseError>,
    ) -> Ran<S::Value> {
        let start = Instant::now();
        let cases = Cell::new(0u32);
        let mut runner = TestRunner::new(self.config(persist));
        let result = runner.run(strategy, |v| {
            cases.set(cases.get() + 1);
            test(v)
        });
        let elapsed = start.elapsed();
        match result {
            Ok(()) => Ran::Passed {
                cases: cases.get(),
                elapsed,
            },
            Err(TestError::Fail(reason, value)) => Ran::Failed {
                reason: reason.message().to_string(),
                value,
                elapsed,
            },
            Err(TestError::Abort(reason)) => panic!("{}: proptest aborted: {reason}", self.name),
        }
    }

    /// The failure report: the reason, then each program as a trace (also written to a file),
    /// then how to replay it.
    pub fn failure_report(
        &self,
        reason: &str,
        programs: &[(&str, &Program)],
        replay: &str,
    ) -> String {
        let mut out = format!(
            "property `{}` failed (seed {}, {} cases)\n{reason}\n",
            self.name, self.seed, self.cases
        );
        for (label, program) in programs {
            let suffix = if label.is_empty() {
                String::new()
            } else {
                format!("-{label}")
            };
            let path = self.trace_file(&suffix);
            let saved = std::fs::create_dir_all(path.parent().expect("has a parent"))
                .and_then(|()| std::fs::write(&path, program.to_string()));
            let whence = match &saved {
                Ok(()) => format!("saved to {}", path.display()),
                Err(e) => format!("not saved to {}: {e}", path.display()),
            };
            out.push_str(&format!(
                "\n{} as a cowcheck trace ({whence}):\n{program}",
                if label.is_empty() {
                    "failing program"
                } else {
                    label
                }
            ));
            if saved.is_ok() {
                out.push_str(&format!("replay: {replay} {}\n", path.display()));
            }
        }
        if self.regression_file().exists() {
            out.push_str(&format!(
                "\nrerun: the seed is persisted in {} and replays first on the next `cargo test --release`",
                self.regression_file().display()
            ));
        }
        out.push_str(
            "\nrerun with other seeds: PROPTEST_RNG_SEED=<u64> COWCHECK_PROPTEST_CASES=<n>\n",
        );
        out
    }
}

/// Prints the case count and time of a passing run (visible with `--nocapture`).
pub fn passed(name: &str, seed: u64, cases: u32, elapsed: Duration) {
    eprintln!(
        "{name}: {cases} cases passed in {:.2} s (seed {seed})",
        elapsed.as_secs_f64()
    );
}

/// 64-bit FNV-1a: a stable hash, so that a name gives the same seed on every machine.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Turns a `Result<(), String>` check into a proptest case result.
pub fn verdict(r: Result<(), String>) -> Result<(), TestCaseError> {
    r.map_err(TestCaseError::fail)
}

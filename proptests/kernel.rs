//! Property run of the model against the kernel: every generated program, run for real by an
//! executor (`cowcheck __executor`, a separate single-threaded process that forks one fresh
//! process tree per program) and compared op by op with the model by `cowcheck::check::check`,
//! must give `Verdict::Agreed`.
//!
//! Counter-tests start executors with a deliberate fault (`private-as-shared`: private maps are
//! made `MAP_SHARED`; `drop-child-write`: writes by any process but the root store nothing) and
//! run the very same property: it must report a divergence within its bounded cases, and the
//! report must carry the failing program as a trace that reads back.
//!
//! # Replaying a failure
//!
//! Runs are deterministic in the programs they try: the property has a fixed ChaCha seed (a
//! hash of its name, printed on failure). On a failure:
//! - the program proptest shrank to is printed as a cowcheck trace with the divergence report,
//!   then shrunk further with cowcheck's own shrinker; both traces are written to
//!   `target/tmp/cowcheck-proptests/kernel_agrees-*.trace`, and `cowcheck replay FILE` reruns
//!   one on the kernel and the model and prints each op's observation;
//! - proptest persists the failing case's seed in `proptests/regressions/kernel_agrees.txt`;
//!   the next `cargo test --release --test proptest_kernel` replays it before any new case
//!   (commit the file to keep the case in CI);
//! - `COWCHECK_PROPTEST_CASES=N` (or proptest's own `PROPTEST_CASES=N`) runs N cases instead
//!   of the default, `PROPTEST_RNG_SEED=S` runs another seed.

mod common;

use std::cell::RefCell;
use std::path::PathBuf;

use common::{Generated, Property, Ran, passed, programs};
use cowcheck::campaign;
use cowcheck::check::Verdict;
use cowcheck::kernel::{Executor, ExecutorConfig};
use cowcheck::program::Program;
use cowcheck::report;
use proptest::test_runner::TestCaseError;

fn executor_config(inject: &[&str]) -> ExecutorConfig {
    let mut config = ExecutorConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_cowcheck")));
    config.inject = inject.iter().map(|s| s.to_string()).collect();
    config
}

fn start(config: &ExecutorConfig) -> Executor {
    Executor::start(config)
        .unwrap_or_else(|e| panic!("cannot start the executor `{}`: {e}", config.command_line()))
}

/// Checks one program; on a divergence, the reason carries the trace and the report.
fn agrees(executor: &mut Executor, program: &Program) -> Result<(), String> {
    match cowcheck::trial::run(executor, program, None) {
        Ok((Verdict::Agreed(_), _)) => Ok(()),
        Ok((Verdict::Diverged(d), run)) => {
            let pages = cowcheck::trial::page_diffs(executor, program, &run, &d);
            Err(format!(
                "divergence ({}):\n{}program:\n{program}",
                d.signature(program),
                report::divergence_text(program, &d, &pages)
            ))
        }
        Err(e) => Err(format!(
            "harness error (not a divergence): {e}\nprogram:\n{program}"
        )),
    }
}

/// Runs the property with one executor for the whole run (restarted if the harness fails).
fn kernel_run(property: &Property, persist: bool, config: &ExecutorConfig) -> Ran<Generated> {
    let executor = RefCell::new(start(config));
    property.run(persist, &programs(), |g| {
        let mut ex = executor.borrow_mut();
        let result = agrees(&mut ex, &g.program);
        if result
            .as_ref()
            .is_err_and(|r| r.starts_with("harness error"))
        {
            *ex = start(config);
        }
        result.map_err(TestCaseError::fail)
    })
}

/// The full report of a failure: proptest's minimal program with its divergence, then the same
/// program shrunk by cowcheck's shrinker, with the bytes that differ.
fn kernel_report(
    property: &Property,
    config: &ExecutorConfig,
    reason: &str,
    program: &Program,
) -> String {
    let mut executor = start(config);
    let mut programs: Vec<(&str, Program)> = vec![("proptest-minimal", program.clone())];
    let mut text = reason.to_string();
    if let Ok((Verdict::Diverged(d), _)) = cowcheck::trial::run(&mut executor, program, None) {
        match campaign::explain(&mut executor, 0, program, d) {
            Ok(finding) => {
                text.push_str(&format!(
                    "\nshrunk by cowcheck from {} to {} ops ({}):\n{}",
                    program.ops.len(),
                    finding.shrunk.ops.len(),
                    finding.signature,
                    report::divergence_text(&finding.shrunk, &finding.divergence, &finding.pages)
                ));
                programs.push(("shrunk", finding.shrunk));
            }
            Err(e) => text.push_str(&format!("\n(cowcheck's shrinker failed: {e})")),
        }
    }
    let labelled: Vec<(&str, &Program)> = programs.iter().map(|(l, p)| (*l, p)).collect();
    property.failure_report(&text, &labelled, "cowcheck replay")
}

#[test]
fn kernel_agrees_with_the_model() {
    let property = Property::new("kernel_agrees", 1000).with_shrink_iters(400);
    let config = executor_config(&[]);
    match kernel_run(&property, true, &config) {
        Ran::Passed { cases, elapsed } => passed(property.name, property.seed, cases, elapsed),
        Ran::Failed { reason, value, .. } => {
            panic!(
                "{}",
                kernel_report(&property, &config, &reason, &value.program)
            )
        }
    }
}

/// The counter-tests: a broken executor must be caught within the property's bounded cases,
/// as a divergence (not a harness error), with a report whose traces read back.
fn expect_caught(inject: &str) {
    let property = Property::new("kernel_agrees", 1000)
        .with_shrink_iters(400)
        .renamed(format!("kernel_agrees-{inject}"));
    let config = executor_config(&[inject]);
    match kernel_run(&property, false, &config) {
        Ran::Failed {
            reason,
            value,
            elapsed,
        } => {
            assert!(
                reason.starts_with("divergence"),
                "{inject}: not a divergence: {reason}"
            );
            let report = kernel_report(&property, &config, &reason, &value.program);
            eprintln!(
                "{inject} caught in {:.2} s (shrinking included):\n{report}",
                elapsed.as_secs_f64()
            );
            assert!(report.contains(&value.program.to_string()), "{report}");
            for label in ["proptest-minimal", "shrunk"] {
                let path = property.trace_file(&format!("-{label}"));
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let back: Program = text.parse().expect("the saved trace reads back");
                assert!(!back.ops.is_empty());
                let _ = std::fs::remove_file(&path);
            }
        }
        Ran::Passed { cases, .. } => {
            panic!("executor with --inject={inject} agreed with the model on all {cases} cases")
        }
    }
}

#[test]
fn counter_private_as_shared_is_caught() {
    expect_caught("private-as-shared");
}

#[test]
fn counter_drop_child_write_is_caught() {
    expect_caught("drop-child-write");
}

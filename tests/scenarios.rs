//! Every scenario of `scenarios/` is one test, named after its file (`fork-classic/...`): it
//! runs on the kernel and the model, and each inline expectation must hold on both sides.
//! A scenario whose feature is missing here is ignored, with the reason in its name.
//!
//! `cargo test --test scenarios -- fork-classic` runs one topic.

use std::path::Path;

use cowcheck::corpus::{self, Verdict};
use cowcheck::env::Environment;
use cowcheck::kernel::{Executor, ExecutorConfig};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let scenarios = corpus::discover(&dir).expect("the scenarios directory has scenarios");
    let env = Environment::detect();
    let trials = scenarios
        .into_iter()
        .map(|s| {
            let env = env.clone();
            // Decide skips up front, so that they show as ignored rather than passed.
            match corpus::load(&s.path, &env) {
                Err(Verdict::Skip(reason)) => {
                    Trial::test(format!("{} ({reason})", s.name), || Ok(())).with_ignored_flag(true)
                }
                _ => Trial::test(s.name.clone(), move || run(&s.path, &env)),
            }
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn run(path: &Path, env: &Environment) -> Result<(), Failed> {
    let program = match corpus::load(path, env) {
        Ok(p) => p,
        Err(Verdict::Fail(reasons)) => return Err(reasons.join("\n").into()),
        Err(Verdict::Skip(_)) | Err(Verdict::Pass) => return Ok(()),
    };
    // Scenario files are canonical traces: print(parse(t)) == t.
    let text = std::fs::read_to_string(path).map_err(|e| Failed::from(e.to_string()))?;
    if program.to_string() != text {
        return Err(format!("not in canonical form; it prints as:\n{program}").into());
    }
    let config = ExecutorConfig::new(env!("CARGO_BIN_EXE_cowcheck").into());
    let mut executor = Executor::start(&config).map_err(|e| Failed::from(e.to_string()))?;
    match corpus::check_program(&mut executor, &program) {
        Ok(Verdict::Pass) => Ok(()),
        Ok(Verdict::Fail(reasons)) => Err(reasons.join("\n").into()),
        Ok(Verdict::Skip(reason)) => Err(format!("unexpected skip: {reason}").into()),
        Err(e) => Err(format!("harness error: {e}").into()),
    }
}

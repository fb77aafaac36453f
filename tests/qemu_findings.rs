//! Every divergence of qemu-user from Linux that `cowcheck run --under qemu-x86_64
//! --keep-going` found (tests/qemu-findings/, each shrunk to a few ops) is one test: under
//! qemu-user the trace must still diverge, in the same way (its shape is in the file's first
//! comment), and natively kernel and model must agree on it. The first half says the emulator
//! still differs (a fixed qemu shows up here as a failure to update the list); the second says
//! the finding is about the emulator, not about cowcheck or the kernel.
//!
//! Ignored where `qemu-x86_64` is not on PATH (.ci/run installs Debian's qemu-user).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cowcheck::check::Verdict;
use cowcheck::kernel::{Executor, ExecutorConfig};
use cowcheck::program::trace;
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/qemu-findings");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/qemu-findings exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "trace"))
        .collect();
    files.sort();
    let qemu = has_qemu();
    let trials = files
        .into_iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if qemu {
                Trial::test(name, move || check_finding(&path))
            } else {
                Trial::test(format!("{name} (qemu-x86_64 not installed)"), || Ok(()))
                    .with_ignored_flag(true)
            }
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn has_qemu() -> bool {
    std::process::Command::new("qemu-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn executor(under: &[&str]) -> Result<Executor, Failed> {
    let mut config = ExecutorConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_cowcheck")));
    config.under = under.iter().map(|s| s.to_string()).collect();
    // One finding is a hang: a short deadline keeps it to seconds.
    config.op_deadline = Duration::from_secs(3);
    Executor::start(&config).map_err(|e| e.to_string().into())
}

fn check_finding(path: &Path) -> Result<(), Failed> {
    let text = std::fs::read_to_string(path)?;
    let program = trace::parse_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let shape = text
        .lines()
        .find_map(|l| l.strip_prefix("# qemu-user finding "))
        .and_then(|l| l.split_once(": "))
        .map(|(_, s)| s.trim().to_string())
        .ok_or("the file must say its shape in `# qemu-user finding N: SHAPE`")?;

    let mut qemu = executor(&["qemu-x86_64"])?;
    match cowcheck::trial::run(&mut qemu, &program, None)? {
        (Verdict::Diverged(d), _) => {
            let got = d.signature(&program);
            if got != shape {
                return Err(format!("under qemu it diverges as `{got}`, not `{shape}`").into());
            }
        }
        (Verdict::Agreed(_), _) => {
            return Err("qemu-user now agrees with Linux on this trace: update the list".into());
        }
    }

    let mut native = executor(&[])?;
    match cowcheck::trial::run(&mut native, &program, None)? {
        (Verdict::Agreed(_), _) => Ok(()),
        (Verdict::Diverged(d), _) => Err(format!(
            "natively the kernel and the model disagree: {}",
            d.signature(&program)
        )
        .into()),
    }
}

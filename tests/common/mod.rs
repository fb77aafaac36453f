//! Shared helpers for the integration tests: run the real `cowcheck` binary with a deadline,
//! write traces into a private temporary directory, read `cowcheck model` predictions and
//! `--json` reports, and build the misbehaving libc shim (tests/faults/libfault.c).
//!
//! Every test binary compiles this module separately and uses only part of it.
#![allow(dead_code)]

pub mod tree;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The classic private-memory trace: a child's write to a private page, then the parent's
/// read (which must not see it). Tests inject a fault into it to get a divergence.
pub const PRIVATE: &str = "cowcheck-trace 1\n\
p0 map m0 private 1\n\
p0 write m0 0[0..4] fill 0x01\n\
p0 fork p1\n\
p1 write m0 0[0..4] fill 0x02\n\
p0 read m0 0[0..4]\n";

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cowcheck");

/// How long any single command may take before the test declares it hung: a guard against a
/// hang, never a measurement. Generous: CI runs on two loaded cores, and the slowest commands in
/// the suite (a seeded `run --cases 20000` under a fault, which stops at its first divergence:
/// program ~4600 for the latest-caught fault) take about 25 s on an idle machine.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);

/// A fresh, empty directory for one test: `$CARGO_TARGET_TMPDIR/cowcheck-tests/<pid>-<n>-<name>`.
pub fn tmpdir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cowcheck-tests")
        .join(format!("{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// What one command did.
#[derive(Debug)]
pub struct Run {
    /// The command line, for failure messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The exit code; panics (with the output) if the process died by a signal.
    pub fn code(&self) -> i32 {
        match self.status.code() {
            Some(c) => c,
            None => panic!(
                "{} died by a signal ({})\n{}",
                self.command,
                self.status,
                self.dump()
            ),
        }
    }

    /// Everything the command printed, for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "--- command: {}\n--- status: {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    /// Asserts the exit code, showing the whole output when it is not the expected one.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code(), code, "unexpected exit code\n{}", self.dump());
        self.no_panic();
        self
    }

    /// Asserts that nothing the command printed looks like a Rust panic or backtrace.
    pub fn no_panic(&self) -> &Run {
        for text in [&self.stdout, &self.stderr] {
            for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
                assert!(
                    !text.contains(bad),
                    "output mentions {bad:?}\n{}",
                    self.dump()
                );
            }
        }
        self
    }

    /// The stdout parsed as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.dump()))
    }

    /// Asserts a usage, input or environment error: exit status 2, nothing on stdout, no panic,
    /// and exactly one line on stderr that says `error:` (clap may add usage lines around it).
    /// Returns that line.
    pub fn expect_usage_error(&self) -> String {
        self.expect_code(2);
        assert!(
            self.stdout.trim().is_empty(),
            "an error must not print to stdout\n{}",
            self.dump()
        );
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.contains("error:"))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "expected exactly one error line on stderr\n{}",
            self.dump()
        );
        let line = errors[0].trim();
        assert!(
            line.starts_with("error:") || line.starts_with("cowcheck: error:"),
            "the error line should start with `error:` or `cowcheck: error:`: {line:?}\n{}",
            self.dump()
        );
        assert!(
            line.len() > "cowcheck: error: ".len() + 5,
            "the error line says too little: {line:?}"
        );
        line.to_string()
    }
}

/// Runs `cowcheck ARGS` with the default deadline.
pub fn cowcheck<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    cowcheck_with(args, DEFAULT_DEADLINE)
}

/// Runs `cowcheck ARGS`; if it has not ended after `deadline`, kills it and fails the test.
pub fn cowcheck_with<S: AsRef<std::ffi::OsStr>>(args: &[S], deadline: Duration) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    run_command(cmd, deadline)
}

/// Runs a command with piped output and a deadline. On a timeout the command is killed (its
/// executor follows through PR_SET_PDEATHSIG) and the test fails with what it printed so far.
pub fn run_command(mut cmd: Command, deadline: Duration) -> Run {
    let command = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > deadline => {
                let _ = child.kill();
                let status = child.wait().expect("wait for a killed child");
                let stdout =
                    String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
                let stderr =
                    String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
                panic!(
                    "{command} did not end within {deadline:?}; killed it\n{}",
                    Run {
                        command: command.clone(),
                        status,
                        stdout,
                        stderr
                    }
                    .dump()
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for {command}: {e}"),
        }
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Run {
        command,
        status,
        stdout,
        stderr,
    }
}

/// One line of `cowcheck model` output: the op as printed and what the model predicts.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub index: usize,
    pub op: String,
    pub outcome: String,
}

/// Reads the per-op lines (`  N  OP  => OUTCOME`) of `cowcheck model` output.
pub fn predictions(stdout: &str) -> Vec<Prediction> {
    stdout
        .lines()
        .filter_map(|line| {
            let (left, outcome) = line.split_once(" => ")?;
            let left = left.trim();
            let (index, op) = left.split_once(char::is_whitespace)?;
            Some(Prediction {
                index: index.parse().ok()?,
                op: op.trim().to_string(),
                outcome: outcome.trim().to_string(),
            })
        })
        .collect()
}

/// Runs `cowcheck model FILE [EXTRA]`, expects exit 0 and one prediction per op line of the file,
/// in order, and returns them.
pub fn model(path: &Path, extra: &[&str]) -> Vec<Prediction> {
    let mut args = vec!["model".to_string(), path.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let run = cowcheck(&args);
    run.expect_code(0);
    let preds = predictions(&run.stdout);
    let text = std::fs::read_to_string(path).expect("read back the trace");
    let ops = op_lines(&text);
    assert_eq!(
        preds.len(),
        ops.len(),
        "one prediction per op expected\n{}",
        run.dump()
    );
    for (k, (p, op)) in preds.iter().zip(&ops).enumerate() {
        assert_eq!(
            p.index,
            k + 1,
            "predictions are numbered from 1\n{}",
            run.dump()
        );
        assert_eq!(
            normalize(&p.op),
            normalize(op),
            "prediction {} is for another op\n{}",
            k + 1,
            run.dump()
        );
    }
    preds
}

/// Tokens separated by single spaces.
pub fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The op lines of a trace: not the header, not blank, not comments; inline comments removed.
pub fn op_lines(trace: &str) -> Vec<String> {
    trace
        .lines()
        .skip(1)
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// `cowcheck replay FILE --json [EXTRA]`: the exit code and the report.
pub fn replay_json(path: &Path, extra: &[String]) -> (i32, serde_json::Value, Run) {
    let mut args = vec![
        "replay".to_string(),
        path.display().to_string(),
        "--json".to_string(),
    ];
    args.extend(extra.iter().cloned());
    let run = cowcheck(&args);
    let code = run.code();
    run.no_panic();
    let json = run.json();
    (code, json, run)
}

/// The kernel's observation of each op in a `replay --json` report.
pub fn kernel_outcomes(report: &serde_json::Value) -> Vec<String> {
    report["ops"]
        .as_array()
        .unwrap_or_else(|| panic!("replay JSON has no ops array: {report}"))
        .iter()
        .map(|o| {
            o["kernel"]
                .as_str()
                .unwrap_or_else(|| panic!("op without a kernel outcome: {o}"))
                .to_string()
        })
        .collect()
}

/// The hex address after `prefix` in an outcome such as `mapped at 0x7f..` or
/// `killed by SIGSEGV(11) ... at page 0x7f..`.
pub fn hex_after(text: &str, prefix: &str) -> Option<u64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let hex = rest.trim_start().strip_prefix("0x")?;
    let digits: String = hex.chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&digits, 16).ok()
}

/// The shared object of tests/faults/`name`.c (an interposed libc of deliberate faults), built
/// once per test binary with `cc`; `None` (after printing a note) when no C compiler is
/// installed.
pub fn shim(name: &str) -> Option<PathBuf> {
    static BUILT: std::sync::Mutex<Vec<(String, Option<PathBuf>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, lib)) = built.iter().find(|(n, _)| n == name) {
        return lib.clone();
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/faults")
        .join(format!("{name}.c"));
    let lib = tmpdir(name).join(format!("{name}.so"));
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&source)
        .arg("-ldl")
        .output();
    let lib = match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: no `cc` on PATH; skipping the {name} tests");
            None
        }
        Err(e) => panic!("cannot run cc: {e}"),
        Ok(out) => {
            assert!(
                out.status.success(),
                "building {name}.so failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = lib.display().to_string();
            assert!(
                !text.contains(char::is_whitespace),
                "--under splits on whitespace; the library path must have none: {text}"
            );
            Some(lib)
        }
    };
    built.push((name.to_string(), lib.clone()));
    lib
}

/// tests/faults/libfault.c, the misbehaving libc of tests/faults.rs (`shim`).
pub fn libfault() -> Option<PathBuf> {
    shim("libfault")
}

/// The `--under` value that loads libfault with `COWCHECK_FAULT=mode` into the executor.
pub fn under_libfault(lib: &Path, mode: &str) -> String {
    format!("env COWCHECK_FAULT={mode} LD_PRELOAD={}", lib.display())
}

/// True if `name` is an executable file on PATH.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(name);
            std::fs::metadata(&p).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    })
}

/// This machine's page size.
pub fn host_page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    assert!(ps > 0, "sysconf(_SC_PAGESIZE) failed");
    ps as u64
}

/// A small deterministic generator (xorshift64*), so that "random" inputs are the same on
/// every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn byte(&mut self) -> u8 {
        (self.next() >> 32) as u8
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A divergence that a seeded campaign under a deliberate fault found, shrunk and saved.
pub struct Caught {
    /// The divergence object of `run --json`.
    pub divergence: serde_json::Value,
    /// The shrunk trace, and its op lines.
    pub trace: String,
    pub ops: Vec<String>,
    /// Where the campaign saved it.
    pub saved: PathBuf,
}

/// Runs `cowcheck run --seed 1 --cases 20000 --json --out DIR --under UNDER`, which must find
/// a divergence (exit 1) shrunk to 1 to `max_ops` ops. The bound is a case count, not a time:
/// a loaded machine runs fewer programs in a minute, and CI must not depend on its speed (how
/// long each fault takes to be caught on a quiet machine is measured by `run --time 60`, in the
/// docs); then the saved trace must replay to a
/// divergence under the same fault and agree without it. `what` names the fault in messages.
pub fn caught_and_shrunk(what: &str, under: &str, max_ops: usize) -> Caught {
    caught_and_shrunk_with(what, under, max_ops, &[])
}

/// `caught_and_shrunk`, with more `run` arguments (`--hugetlb`).
pub fn caught_and_shrunk_with(what: &str, under: &str, max_ops: usize, more: &[&str]) -> Caught {
    let dir = tmpdir(&what.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
    let mut args = vec![
        "run",
        "--seed",
        "1",
        "--cases",
        "20000",
        "--json",
        "--out",
        dir.to_str().expect("utf-8 path"),
        "--under",
        under,
    ];
    args.extend_from_slice(more);
    let run = cowcheck(&args);
    run.expect_code(1);
    let report = run.json();
    let divergence = report["divergence"].clone();
    assert!(divergence.is_object(), "{what}: no divergence: {report}");
    let trace = divergence["trace"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no trace: {report}"))
        .to_string();
    let ops = op_lines(&trace);
    assert!(
        !ops.is_empty() && ops.len() <= max_ops,
        "{what}: the shrunk trace has {} ops, want 1 to {max_ops}:\n{trace}",
        ops.len()
    );
    let saved = PathBuf::from(divergence["saved_to"].as_str().expect("saved"));
    let (code, _, rerun) = replay_json(&saved, &["--under".to_string(), under.to_string()]);
    assert_eq!(
        code,
        1,
        "{what}: must replay to a divergence under the fault\n{}",
        rerun.dump()
    );
    cowcheck(&["replay", saved.to_str().expect("utf-8 path")]).expect_code(0);
    Caught {
        divergence,
        trace,
        ops,
        saved,
    }
}

/// `cowcheck repro-c --build -o C TRACE`, which must succeed: the built binary's path (C
/// without its extension).
pub fn built_reproducer(c: &Path, trace: &Path) -> PathBuf {
    cowcheck(&[
        "repro-c".as_ref(),
        "--build".as_ref(),
        "-o".as_ref(),
        c.as_os_str(),
        trace.as_os_str(),
    ])
    .expect_code(0);
    c.with_extension("")
}

/// The `--json` summary of a one-program run (`run --seed 1 --cases 1`): what ran here (its
/// `channels` and the environment's `probes`), for tests that skip where something does not.
pub fn one_program_summary(name: &str) -> serde_json::Value {
    let dir = tmpdir(name);
    let run = cowcheck(&[
        "run",
        "--seed",
        "1",
        "--cases",
        "1",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    run.expect_code(0);
    run.json()
}

/// Whether every channel of `channels` ran in `summary` (`one_program_summary`).
pub fn channels_ran(summary: &serde_json::Value, channels: &[&str]) -> bool {
    channels
        .iter()
        .all(|c| summary["channels"][c]["ran"].as_bool() == Some(true))
}

/// Whether the physical channel's pagemap and PFN parts run here (as root); prints a note
/// where they do not, for the tests that then skip.
pub fn pfns_run(probe: &str) -> bool {
    let ok = channels_ran(&one_program_summary(probe), &["pagemap", "pfn"]);
    if !ok {
        eprintln!("note: the physical channel's PFNs are not read here; skipping");
    }
    ok
}

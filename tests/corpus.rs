//! `cowcheck corpus DIR --tap` speaks KTAP and exits as kselftest does.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cowcheck() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cowcheck"))
}

/// One test line of KTAP output.
#[derive(Debug)]
struct TestLine {
    ok: bool,
    number: usize,
    name: String,
    skip: Option<String>,
}

/// Parses KTAP version 1 strictly enough to catch a malformed stream: the version line first,
/// the plan `1..N` next (diagnostics aside), then exactly N result lines numbered 1..N in
/// order; every other line is a diagnostic (`#`). Returns the results.
fn parse_ktap(text: &str) -> Result<Vec<TestLine>, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, "KTAP version 1")) => {}
        other => return Err(format!("first line is not \"KTAP version 1\": {other:?}")),
    }
    let mut plan = None;
    let mut tests = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(count) = line.strip_prefix("1..") {
            if plan.is_some() || !tests.is_empty() {
                return Err(format!("line {n}: plan after results or twice"));
            }
            plan = Some(
                count
                    .parse::<usize>()
                    .map_err(|e| format!("line {n}: bad plan: {e}"))?,
            );
            continue;
        }
        let (ok, rest) = if let Some(r) = line.strip_prefix("not ok ") {
            (false, r)
        } else if let Some(r) = line.strip_prefix("ok ") {
            (true, r)
        } else {
            return Err(format!(
                "line {n}: neither a result, a plan nor a diagnostic: {line:?}"
            ));
        };
        if plan.is_none() {
            return Err(format!("line {n}: a result before the plan"));
        }
        let (number, rest) = rest
            .split_once(' ')
            .ok_or_else(|| format!("line {n}: no test name: {line:?}"))?;
        let number: usize = number
            .parse()
            .map_err(|e| format!("line {n}: bad number: {e}"))?;
        let (name, directive) = match rest.split_once(" # ") {
            Some((name, d)) => (name, Some(d)),
            None => (rest, None),
        };
        let skip = match directive {
            None => None,
            Some(d) => Some(
                d.strip_prefix("SKIP")
                    .ok_or_else(|| format!("line {n}: unknown directive {d:?}"))?
                    .trim()
                    .to_string(),
            ),
        };
        if skip.is_some() && !ok {
            return Err(format!("line {n}: a SKIP must be \"ok\""));
        }
        if number != tests.len() + 1 {
            return Err(format!(
                "line {n}: test {number} where {} was due",
                tests.len() + 1
            ));
        }
        if name.is_empty() {
            return Err(format!("line {n}: empty test name"));
        }
        tests.push(TestLine {
            ok,
            number,
            name: name.to_string(),
            skip,
        });
    }
    match plan {
        Some(p) if p == tests.len() => Ok(tests),
        Some(p) => Err(format!("plan says {p} tests, {} reported", tests.len())),
        None => Err("no plan line".into()),
    }
}

#[test]
fn the_parser_rejects_malformed_ktap() {
    assert!(parse_ktap("KTAP version 1\n1..1\nok 1 a\n").is_ok());
    assert!(parse_ktap("TAP version 13\n1..1\nok 1 a\n").is_err());
    assert!(parse_ktap("KTAP version 1\n1..2\nok 1 a\n").is_err());
    assert!(parse_ktap("KTAP version 1\n1..2\nok 1 a\nok 3 b\n").is_err());
    assert!(parse_ktap("KTAP version 1\nok 1 a\n1..1\n").is_err());
    assert!(parse_ktap("KTAP version 1\n1..1\nnot ok 1 a # SKIP x\n").is_err());
    assert!(parse_ktap("KTAP version 1\n1..1\nok 1 a # TODO x\n").is_err());
    assert!(parse_ktap("KTAP version 1\n1..1\nbanana\nok 1 a\n").is_err());
}

fn scenario_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable").flatten() {
        let p = e.path();
        if p.is_dir() {
            scenario_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "trace") {
            out.push(p);
        }
    }
}

#[test]
fn the_corpus_passes_as_ktap() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let out = cowcheck()
        .args(["corpus", "--tap"])
        .arg(&dir)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let tests = parse_ktap(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut files = Vec::new();
    scenario_files(&dir, &mut files);
    assert_eq!(tests.len(), files.len(), "one result per scenario file");
    assert!(tests.len() >= 60, "only {} scenarios", tests.len());
    let failed: Vec<&str> = tests
        .iter()
        .filter(|t| !t.ok)
        .map(|t| t.name.as_str())
        .collect();
    assert!(failed.is_empty(), "failed: {failed:?}\n{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    // The environment report leads the output, as diagnostics.
    for key in [
        "# kernel",
        "# page size",
        "# THP",
        "# KSM run",
        "# libc",
        "# feature",
    ] {
        assert!(text.contains(key), "{key} missing");
    }
    assert!(tests.iter().all(|t| t.number >= 1 && !t.name.contains(' ')));
}

/// A private scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    // Under the target directory, not the machine's /tmp: nothing is left there.
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cowcheck-corpus-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

const GOOD: &str =
    "cowcheck-trace 1\n# source: man:mmap(2)\np0 map m0 private 1\np0 read m0 0 => 0x00\n";
const WRONG: &str = "cowcheck-trace 1\n# source: a deliberately wrong expectation\np0 map m0 private 1\np0 read m0 0 => 0xaa\n";
const NEEDS_DEV_ZERO: &str =
    "cowcheck-trace 1\n# source: man:zero(4)\n# needs: dev-zero\np0 map m0 private-zero 1 => ok\n";

fn run_corpus(dir: &Path, pretend_missing: &str) -> (Option<i32>, Vec<TestLine>, String) {
    let out = cowcheck()
        .args(["corpus", "--tap"])
        .arg(dir)
        .env("COWCHECK_PRETEND_MISSING", pretend_missing)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let tests = parse_ktap(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (out.status.code(), tests, text)
}

#[test]
fn exit_codes_follow_kselftest() {
    let dir = scratch("codes");
    std::fs::write(dir.join("good.trace"), GOOD).unwrap();
    std::fs::write(dir.join("zero.trace"), NEEDS_DEV_ZERO).unwrap();
    let (code, tests, text) = run_corpus(&dir, "");
    assert_eq!(code, Some(0), "{text}");
    assert!(tests.iter().all(|t| t.ok && t.skip.is_none()));

    // A missing feature is a SKIP with the reason; a pass beside it keeps the exit at 0.
    let (code, tests, text) = run_corpus(&dir, "dev-zero");
    assert_eq!(code, Some(0), "{text}");
    let skip = tests.iter().find(|t| t.name == "zero").expect("zero");
    assert!(
        skip.skip.as_deref().is_some_and(|r| r.contains("dev-zero")),
        "{text}"
    );

    // All skipped: 4.
    std::fs::remove_file(dir.join("good.trace")).unwrap();
    let (code, _, text) = run_corpus(&dir, "dev-zero");
    assert_eq!(code, Some(4), "{text}");

    // A wrong expectation fails on both sides and says so: 1.
    std::fs::write(dir.join("wrong.trace"), WRONG).unwrap();
    let (code, tests, text) = run_corpus(&dir, "");
    assert_eq!(code, Some(1), "{text}");
    let wrong = tests.iter().find(|t| t.name == "wrong").expect("wrong");
    assert!(!wrong.ok);
    assert!(text.contains("model: expected every byte 0xaa"), "{text}");
    assert!(text.contains("kernel: expected every byte 0xaa"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scenarios_must_cite_a_source_and_expect_something() {
    let dir = scratch("meta");
    std::fs::write(
        dir.join("uncited.trace"),
        "cowcheck-trace 1\np0 map m0 private 1 => ok\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("silent.trace"),
        "cowcheck-trace 1\n# source: x\np0 map m0 private 1\n",
    )
    .unwrap();
    let (code, tests, text) = run_corpus(&dir, "");
    assert_eq!(code, Some(1), "{text}");
    assert!(tests.iter().all(|t| !t.ok), "{text}");
    assert!(
        text.contains("cites no source") && text.contains("no expectation"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_empty_or_missing_corpus_is_a_usage_error() {
    let dir = scratch("empty");
    let out = cowcheck()
        .args(["corpus", "--tap"])
        .arg(&dir)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let out = cowcheck()
        .args(["corpus", "/nonexistent/cowcheck"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Under a libc that makes private anonymous mappings shared, the corpus fails: the checker
/// is not blind (the counter-test of `the_corpus_passes_as_ktap`).
#[test]
fn the_corpus_fails_under_a_broken_libc() {
    let Some(built) = build_libfault() else {
        eprintln!("no C compiler: skipped");
        return;
    };
    let lib = built.0.clone();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let under = format!(
        "env COWCHECK_FAULT=private-shared LD_PRELOAD={}",
        lib.display()
    );
    let out = cowcheck()
        .args(["corpus", "--tap", "--under", &under])
        .arg(&dir)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let tests = parse_ktap(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(out.status.code(), Some(1));
    let failed: Vec<&str> = tests
        .iter()
        .filter(|t| !t.ok)
        .map(|t| t.name.as_str())
        .collect();
    for must in [
        "fork-classic/basic-cow-no-leak-into-child",
        "fork-classic/child-write-invisible-to-parent",
    ] {
        assert!(failed.contains(&must), "{must} passed under private-shared");
    }
    // Scenarios with no private anonymous memory do not notice.
    assert!(!failed.contains(&"fork-classic/shared-child-write-visible"));
    // The test leaves nothing behind in the temporary directory.
    drop(built);
    assert!(!lib.exists(), "{} left behind", lib.display());
}

/// A library built for one test, removed when the test ends (however it ends).
struct Built(PathBuf);

impl Drop for Built {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn build_libfault() -> Option<Built> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/libfault.c");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cowcheck-libfault-corpus-{}.so",
        std::process::id()
    ));
    let built = Built(out);
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&built.0)
        .arg(&src)
        .arg("-ldl")
        .status()
        .ok()?
        .success();
    ok.then_some(built)
}

/// The LAVA test definition's KTAP converter (ci/lava/ktap-to-lava.sh) turns the corpus's KTAP
/// into one `lava-test-case` per scenario with its result, and fails when a scenario failed.
#[test]
fn the_lava_converter_reports_each_scenario() {
    let dir = scratch("lava");
    // A stand-in for LAVA's lava-test-case that records its arguments.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("lava-test-case");
    std::fs::write(&fake, "#!/bin/sh\necho \"$@\" >> \"$LAVA_LOG\"\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ktap = "KTAP version 1\n1..3\n# kernel x\nok 1 fork-classic/basic-cow\nnot ok 2 mremap/argument-errors\nok 3 madvise/guard-install-maperr # SKIP missing feature: MADV_GUARD_INSTALL\n";
    let file = dir.join("c.ktap");
    std::fs::write(&file, ktap).unwrap();
    let log = dir.join("log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/lava/ktap-to-lava.sh");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let status = Command::new("sh")
        .arg(&script)
        .arg(&file)
        .env("PATH", path)
        .env("LAVA_LOG", &log)
        .status()
        .expect("runs");
    assert_eq!(status.code(), Some(1), "a failed scenario fails the step");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "fork-classic_basic-cow --result pass\nmremap_argument-errors --result fail\nmadvise_guard-install-maperr --result skip\n"
    );
}

//! The C reproducer of every scenario compiles with `cc -Wall -Wextra -Werror`, passes on this
//! kernel, and fails under a libc that makes private anonymous mappings shared exactly when the
//! scenario's outcome depends on copy-on-write (counter-test).

use std::path::{Path, PathBuf};
use std::process::Command;

use cowcheck::kernel::{Executor, ExecutorConfig};
use cowcheck::model::Model;
use cowcheck::program::features::Features;
use cowcheck::program::outcome::Outcome;
use cowcheck::program::{MapKind, Op, Program, trace};
use cowcheck::report::repro_c;

/// `cowcheck repro-c --build -o C TRACE`, then the binary it built (C without its extension):
/// its KTAP output, after checking that both succeeded.
fn build_and_run(trace: &Path, c: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cowcheck"))
        .args(["repro-c", "--build", "-o"])
        .arg(c)
        .arg(trace)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(c.with_extension(""))
        .output()
        .expect("built binary runs");
    let text = String::from_utf8_lossy(&run.stdout).into_owned();
    assert_eq!(run.status.code(), Some(0), "{text}");
    text
}

fn have_cc() -> bool {
    Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as usize
}

fn scenarios() -> Vec<(String, Program)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    cowcheck::corpus::discover(&dir)
        .expect("scenarios")
        .into_iter()
        .map(|s| {
            let bytes = std::fs::read(&s.path).expect("readable");
            (s.name, trace::parse(&bytes).expect("parses"))
        })
        // Racing programs run in rounds (tests/repro_c_race.rs); a vfork child that dies is
        // not expressed yet (repro_c::plan refuses it).
        .filter(|(_, p)| {
            !p.ops.iter().any(|o| matches!(o, Op::Race { .. }))
                && (!p.ops.iter().any(|o| matches!(o, Op::Vfork { .. }))
                    || repro_c::generate(p, page_size(), "probe").is_ok())
        })
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    // Under the target directory, not the machine's /tmp: nothing is left there.
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cowcheck-repro-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Generates and compiles every scenario's reproducer (two at a time); (name, binary).
fn build_all(dir: &Path) -> Vec<(String, PathBuf)> {
    let ps = page_size();
    let all = scenarios();
    let jobs: Vec<(String, PathBuf, String)> = all
        .iter()
        .map(|(name, program)| {
            let c = repro_c::generate(program, ps, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let file = dir.join(format!("{}.c", name.replace('/', "__")));
            (name.clone(), file, c)
        })
        .collect();
    let halves: Vec<&[(String, PathBuf, String)]> = jobs.chunks(jobs.len().div_ceil(2)).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = halves
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|(name, file, c)| {
                            std::fs::write(file, c).expect("write C");
                            let bin = repro_c::binary_path(file);
                            repro_c::build(file, &bin).unwrap_or_else(|e| panic!("{name}: {e}"));
                            (name.clone(), bin)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("builder"))
            .collect()
    })
}

/// What this kernel's executor probed (its hello): the model that judges `depends_on_cow`
/// must have the campaign's features, not `Model::new`'s every one. On a kernel with guard
/// regions on private memory but not on shmem (6.13, 6.14), or MREMAP_DONTUNMAP likewise
/// (5.7 to 5.12), an op that succeeds on private memory fails on shared, which makes the
/// scenario depend on the mapping's kind; the every-feature model saw both succeed.
/// (A MADV_COLLAPSE's result is learnt from the kernel's answer, not predicted: with none,
/// the model has it succeed on both kinds, so a collapse that fails on shared memory only
/// (`shmem_enabled` never, as here) goes unseen by this helper; a scenario that depends on
/// copy-on-write must show it with another op, as collapse-pieces-split-to-zero-page does.)
fn kernel_features() -> Features {
    static FEATURES: std::sync::OnceLock<Features> = std::sync::OnceLock::new();
    *FEATURES.get_or_init(|| {
        let config = ExecutorConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_cowcheck")));
        Executor::start(&config)
            .expect("the executor starts")
            .hello
            .features
    })
}

/// Whether the scenario's observations change when private anonymous maps become shared,
/// according to the model: then its reproducer must fail under libfault's private-shared.
fn depends_on_cow(program: &Program, ps: usize) -> bool {
    let mut broken = program.clone();
    for op in &mut broken.ops {
        if let Op::Map { kind, .. } = op
            && *kind == MapKind::Private
        {
            *kind = MapKind::Shared;
        }
    }
    let features = kernel_features();
    let (mut a, mut b) = (
        Model::with_features(ps, features),
        Model::with_features(ps, features),
    );
    let last = program.ops.len().saturating_sub(1);
    for (i, (x, y)) in program.ops.iter().zip(&broken.ops).enumerate() {
        let (oa, ob) = (
            a.apply(x, None).expect("model"),
            b.apply(y, None).expect("model"),
        );
        let same = match (&oa, &ob) {
            (Outcome::Mapped { .. }, Outcome::Mapped { .. }) => true,
            _ => oa == ob,
        };
        if !same {
            return true;
        }
        if x.snapshot_after() || i == last {
            let pages = |m: &mut Model| -> Vec<Vec<(u64, u64)>> {
                m.snapshot().procs.into_iter().map(|v| v.pages).collect()
            };
            if pages(&mut a) != pages(&mut b) {
                return true;
            }
        }
    }
    false
}

fn parse_results(stdout: &str) -> (usize, usize) {
    let ok = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    let not_ok = stdout.lines().filter(|l| l.starts_with("not ok ")).count();
    (ok, not_ok)
}

#[test]
fn every_reproducer_compiles_passes_and_catches_a_broken_libc() {
    if !have_cc() {
        eprintln!("no C compiler (cc): skipped");
        return;
    }
    let dir = scratch("all");
    let built = build_all(&dir);
    assert!(built.len() >= 60, "only {} reproducers", built.len());
    for (name, bin) in &built {
        let out = Command::new(bin).output().expect("runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("KTAP version 1\n1.."), "{name}:\n{text}");
        let (_, not_ok) = parse_results(&text);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name} failed on this kernel:\n{text}"
        );
        assert_eq!(not_ok, 0, "{name}:\n{text}");
    }

    let lib = dir.join("libfault.so");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/libfault.c");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .status()
        .expect("cc");
    assert!(status.success());
    let ps = page_size();
    let programs = scenarios();
    let mut failing = Vec::new();
    for (name, bin) in &built {
        let program = &programs
            .iter()
            .find(|(n, _)| n == name)
            .expect("same set")
            .1;
        let out = Command::new(bin)
            .env("LD_PRELOAD", &lib)
            .env("COWCHECK_FAULT", "private-shared")
            // The oracle below is the values' (the physical channel sees the fault even where
            // no value does: its file bit, I7).
            .env("COWCHECK_NO_PHYSICAL", "1")
            .output()
            .expect("runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let expect_fail = depends_on_cow(program, ps);
        let code = out.status.code();
        assert_eq!(
            code,
            Some(if expect_fail { 1 } else { 0 }),
            "{name} under libfault private-shared (depends on COW: {expect_fail}):\n{text}"
        );
        if expect_fail {
            failing.push(name.clone());
        }
    }
    eprintln!(
        "{} of {} reproducers fail under libfault private-shared: {}",
        failing.len(),
        built.len(),
        failing.join(", ")
    );
    for must in [
        "fork-classic/basic-cow-no-leak-into-child",
        "fork-classic/child-write-invisible-to-parent",
        "nested-fork/grandchild-write-invisible",
    ] {
        assert!(
            failing.iter().any(|n| n == must),
            "{must} is a private COW scenario"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn repro_c_build_from_the_command_line() {
    if !have_cc() {
        eprintln!("no C compiler (cc): skipped");
        return;
    }
    let dir = scratch("cli");
    let trace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios/fork-classic/basic-cow-no-leak-into-child.trace");
    let c = dir.join("basic.c");
    let text = build_and_run(&trace, &c);
    assert!(text.contains("ok 1 - p0 map m0 private 1"), "{text}");

    // Without -o and --build the C goes to stdout.
    let out = Command::new(env!("CARGO_BIN_EXE_cowcheck"))
        .arg("repro-c")
        .arg(&trace)
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("int main(void)"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The program cowcheck started from (scenarios/origin-note/): its reproducers, built by the
/// command line as a user would, print what the note's C program prints, the int the parent
/// sees once the child incremented it, as a KTAP diagnostic after the read.
#[test]
fn the_notes_reproducers_print_the_int_the_parent_sees() {
    if !have_cc() {
        eprintln!("no C compiler (cc): skipped");
        return;
    }
    let dir = scratch("note");
    for name in ["shared-int-anon", "shared-int-dev-zero"] {
        let trace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("scenarios/origin-note/{name}.trace"));
        let c = dir.join(format!("{name}.c"));
        let out = Command::new(env!("CARGO_BIN_EXE_cowcheck"))
            .args(["repro-c", "--build", "-o"])
            .arg(&c)
            .arg(&trace)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = Command::new(dir.join(name)).output().expect("runs");
        let text = String::from_utf8_lossy(&run.stdout);
        assert_eq!(run.status.code(), Some(0), "{text}");
        assert!(text.contains("maps 4 byte(s): one page"), "{text}");
        assert!(
            text.contains("p1 read m0 0[0..4]: reads the int 0"),
            "{text}"
        );
        assert!(
            text.contains("p0 read m0 0[0..4]: reads the int 1"),
            "{text}"
        );
        assert!(text.contains("\n# p0 sees the int 1\n"), "{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn what_the_generator_cannot_check_is_an_error() {
    // A successful MADV_FREE (whose pages may read old or zero) must be refused rather than
    // written as wrong C. (Every op kind has C: the emitter's match over ops is exhaustive.)
    let free = trace::parse_str(
        "cowcheck-trace 1\np0 map m0 private 1\np0 write m0 0 fill 0x01\np0 advise m0 0 free\n",
    )
    .expect("parses");
    let e = repro_c::generate(&free, page_size(), "t").expect_err("nondeterministic");
    assert!(e.to_string().contains("cannot express `advise free"), "{e}");
    // MADV_FREE that fails (on shared memory) is deterministic and fine.
    let shared = trace::parse_str("cowcheck-trace 1\np0 map m0 shared 1\np0 advise m0 0 free\n")
        .expect("parses");
    assert!(repro_c::generate(&shared, page_size(), "t").is_ok());
    // An invalid program is an error too, not C.
    let invalid = cowcheck::program::Program::new(vec![Op::Exit {
        proc: cowcheck::program::ProcId(3),
    }]);
    let e = repro_c::generate(&invalid, page_size(), "t").expect_err("invalid");
    assert!(e.to_string().contains("not a valid program"), "{e}");
}

/// The runtime is a C file of its own: with an empty program (`-DCOWCHECK_RUNTIME_ONLY`) it is
/// a complete translation unit that compiles cleanly under strict ISO C11 (trigraphs on) and
/// runs as a KTAP program with no tests.
#[test]
fn the_runtime_compiles_alone() {
    if !have_cc() {
        eprintln!("no C compiler (cc): skipped");
        return;
    }
    let dir = scratch("runtime");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/report/repro_c/runtime.c");
    let bin = dir.join("runtime");
    let out = Command::new("cc")
        .args([
            "-std=c11",
            "-O1",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wpedantic",
        ])
        .arg("-DCOWCHECK_RUNTIME_ONLY")
        .arg(format!("-DPAGE_SIZE_GENERATED={}", page_size()))
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("cc runs");
    assert!(
        out.status.success(),
        "runtime.c alone:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&bin).output().expect("runs");
    let text = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{text}");
    assert!(text.starts_with("KTAP version 1\n1..0\n"), "{text}");
    // Without a program, and without -DCOWCHECK_RUNTIME_ONLY, it refuses to compile.
    let out = Command::new("cc")
        .args(["-std=c11", "-fsyntax-only"])
        .arg(&src)
        .output()
        .expect("cc runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no program"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a trace's comments (and its file name) may hold never breaks the reproducer: comment
/// delimiters, trigraphs, a lone bidi override, control characters, a backslash at the end of
/// a line, and the rest of Unicode the trace format allows (it allows any UTF-8 without NUL or
/// CR; invalid UTF-8 never parses).
const NASTY_TRACE: &str = "cowcheck-trace 1\n\
# source: scenarios/*/x.trace and */ and /* and /*/ and **/ and //\n\
# trigraphs: ??/\n\
# ??= ??( ??) ??' ??< ??> ??! ??- ???/\n\
# a lone override \u{202e} and an isolate \u{2066} unpaired, marks \u{200e}\u{200f}\u{61c}\n\
# controls: \u{1} \u{b} \u{c} \u{1b}[31m \u{7f} \u{85} \u{9b}\n\
# a backslash ends this line \\\n\
# a backslash then spaces \\  \n\
#\\\n\
p0 map m0 private 1 # inline */ ??/ \\\n\
p0 write m0 0 fill 0xaa #/*\n\
p0 fork p1 # \u{2028} \u{2029} \u{feff} \u{200b} \u{ad} 🦀 \u{fffd} \u{ffff} \u{10ffff} \u{e000} é ×\n\
p1 read m0 0 => 0xaa #\ttab */\n\
p1 exit #*\n\
#/\n\
# the end ??\n";

#[test]
fn trace_comments_never_break_the_reproducer() {
    let program = trace::parse_str(NASTY_TRACE).expect("the format allows all of it");
    assert_eq!(
        program.comments.iter().filter(|c| c.text.is_some()).count(),
        15
    );
    // Invalid UTF-8 and NUL never get this far.
    assert!(trace::parse(b"cowcheck-trace 1\n# \xff\xfe\n").is_err());
    assert!(trace::parse(b"cowcheck-trace 1\n# \0\n").is_err());
    let title = "scenarios/*/evil */ ??/ \u{202e} \\";
    let c = repro_c::generate(&program, page_size(), title).expect("generates");
    // The text is there, escaped, and nothing raw slipped through.
    for escaped in [
        "scenarios/\\*\\/x.trace",
        "?\\?/",
        "\\u{202e}",
        "\\u{1b}[31m",
        "a backslash ends this line \\u{5c}\n",
        "🦀",
    ] {
        assert!(c.contains(escaped), "{escaped:?} not in the reproducer");
    }
    for raw in [
        "??/", "??=", "\u{202e}", "\u{1b}", "\u{7f}", "\u{2028}", "\\\n",
    ] {
        assert!(!c.contains(raw), "{raw:?} reached the C text");
    }
    if !have_cc() {
        eprintln!("no C compiler (cc): the build is skipped");
        return;
    }
    let dir = scratch("nasty");
    let file = dir.join("nasty.c");
    std::fs::write(&file, &c).expect("write C");
    let bin = repro_c::binary_path(&file);
    repro_c::build(&file, &bin).unwrap_or_else(|e| panic!("{e}"));
    // Strict ISO C (trigraphs on) and pedantic warnings too.
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-Wpedantic"])
        .args(["-fsyntax-only"])
        .arg(&file)
        .output()
        .expect("cc runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&bin).output().expect("runs");
    let text = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{text}");
    assert_eq!(parse_results(&text), (5 + 3, 0), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The file name goes into the reproducer too (the CLI's title): a directory named `evil*`
/// makes `*/` in the path, and a file name may hold any byte but `/` and NUL.
#[test]
fn a_nasty_file_name_never_breaks_the_reproducer() {
    use std::os::unix::ffi::OsStrExt;
    if !have_cc() {
        eprintln!("no C compiler (cc): skipped");
        return;
    }
    let dir = scratch("nasty-name");
    // The path holds `*/`, `??/`, a byte that is not UTF-8, a lone U+202E, and ends in `\`.
    let evil = dir.join("evil*").join("q??");
    std::fs::create_dir_all(&evil).expect("dir");
    let name = std::ffi::OsStr::from_bytes(b"x ??= \xff \xe2\x80\xae *\\");
    let trace = evil.join(name);
    std::fs::write(&trace, NASTY_TRACE).expect("write trace");
    let c = dir.join("nasty.c");
    build_and_run(&trace, &c);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A program whose vfork child dies is refused with a message that names it, not half
/// written; one whose child stores and exits is expressed.
#[test]
fn a_dying_vfork_child_is_refused_cleanly() {
    let program = trace::parse(
        b"cowcheck-trace 1\np0 map m0 private 1\np0 protect m0 0 read\np0 vfork write m0 0 fill 0x01\n",
    )
    .expect("parses");
    let e = repro_c::generate(&program, page_size(), "vfork")
        .expect_err("a dying vfork child is not expressed yet");
    assert!(e.to_string().contains("vfork"), "{e}");
    let program =
        trace::parse(b"cowcheck-trace 1\np0 map m0 private 1\np0 vfork write m0 0 fill 0x01\n")
            .expect("parses");
    repro_c::generate(&program, page_size(), "vfork").expect("a storing vfork child");
}

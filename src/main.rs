//! The `cowcheck` command line. Exit codes everywhere: 0 no divergence, 1 divergence, 2 usage,
//! input or environment error.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use cowcheck::campaign::{self, CampaignConfig, Finding, Summary};
use cowcheck::check::Verdict;
use cowcheck::kernel::{Executor, ExecutorConfig, HarnessError};
use cowcheck::model::Model;
use cowcheck::program::generate::GenConfig;
use cowcheck::program::{Op, Program, Span, caps, trace};
use cowcheck::report;

#[derive(Parser)]
#[command(
    name = "cowcheck",
    version,
    about = "Model-based checking of Linux anonymous memory (private copy-on-write and shared) across fork"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ExecArgs {
    /// Start the executor through this command, like cargo's target runners (for example
    /// `qemu-x86_64`, or `env LD_PRELOAD=/path/libfault.so`). The model and checker stay native.
    #[arg(long, value_name = "CMD")]
    under: Option<String>,
    /// Test only: make the executor commit a deliberate fault (drop-child-write,
    /// private-as-shared, hang-pipe-read) to show that the checker catches it.
    #[arg(long, value_name = "FAULT", hide = true)]
    inject: Vec<String>,
    /// Seconds one op may take before its worker counts as hung (an observation: it is killed
    /// and the op reports `hung`). Default 10, or 30 with --under or --kernel.
    #[arg(long, value_name = "SECS")]
    op_deadline: Option<f64>,
    /// Seconds the executor (under --under, the command; with --kernel, the VM's boot) may
    /// take to start and say hello before it counts as never ready and is stopped. Default 60,
    /// or 180 with --kernel.
    #[arg(long, value_name = "SECS")]
    start_deadline: Option<f64>,
    /// Run the executor inside a fresh VM booted with this kernel (a bzImage/vmlinuz, or a
    /// Debian linux-image-*.deb) under qemu-system-x86_64, KVM if it works, else TCG. The model
    /// and checker stay native. See docs/KERNELS.md.
    #[arg(long, value_name = "IMAGE", conflicts_with = "under")]
    kernel: Option<PathBuf>,
    /// With --kernel: more kernel command-line arguments (`transparent_hugepage=always`).
    #[arg(
        long,
        value_name = "ARGS",
        requires = "kernel",
        allow_hyphen_values = true
    )]
    kernel_append: Option<String>,
    /// With --kernel: the accelerator; auto is KVM when a guest boots on it, else TCG.
    #[arg(long, value_name = "ACCEL", requires = "kernel", value_parser = ["auto", "kvm", "tcg"])]
    accel: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a random campaign: programs until a divergence, a case count or a time limit.
    Run {
        /// Run exactly N programs.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        cases: Option<u64>,
        /// Campaign seed (default: from the clock; always printed).
        #[arg(long, value_name = "S")]
        seed: Option<u64>,
        /// Run for SECS seconds (with --cases, whichever ends first; with neither, about 30 s).
        #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
        time: Option<f64>,
        /// Most ops in one program.
        #[arg(long, value_name = "K", default_value_t = 40)]
        max_ops: usize,
        /// Where to save the trace of a divergence.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Print the summary (and any divergence) as JSON.
        #[arg(long)]
        json: bool,
        /// Do not stop at the first divergence: collect every distinct one (grouped by the
        /// shape of its shrunk trace), each with a count.
        #[arg(long)]
        keep_going: bool,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Run a trace (or, with --artifact, a fuzz artifact) on kernel and model and print each
    /// op's observation.
    Replay {
        file: PathBuf,
        #[arg(long)]
        json: bool,
        /// FILE is a fuzz artifact (the fuzzer's raw bytes), not a trace.
        #[arg(long)]
        artifact: bool,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Print what the model predicts for each op of a trace, running nothing.
    Model {
        file: PathBuf,
        /// Page size to model (default: this machine's).
        #[arg(long)]
        page_size: Option<usize>,
    },
    /// Measure programs per second against the bare cost of fork+exit+wait.
    Bench {
        /// Programs to time.
        #[arg(long, default_value_t = 2000)]
        programs: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Programs of the core ops only (map, write, read, fork, exit, unmap).
        #[arg(long)]
        core: bool,
        /// Time this one trace, run again and again, instead of random programs.
        #[arg(long, value_name = "TRACE", conflicts_with = "core")]
        program: Option<PathBuf>,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Print the program that a fuzz artifact decodes to, as a trace.
    Decode { artifact: PathBuf },
    /// Shrink a diverging trace or fuzz artifact to the smallest program that still diverges
    /// the same way, and save it as a trace.
    Shrink {
        file: PathBuf,
        /// FILE is a fuzz artifact (the fuzzer's raw bytes), not a trace.
        #[arg(long)]
        artifact: bool,
        /// Where to save the shrunk trace (default: FILE.shrunk.trace).
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Run every scenario (*.trace, recursively) in DIR on kernel and model and check its
    /// inline expectations on both; exit 0 all passed, 1 a failure, 4 all skipped (kselftest).
    Corpus {
        dir: PathBuf,
        /// Print KTAP (the kselftest format) instead of a table.
        #[arg(long)]
        tap: bool,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Write a standalone C reproducer (libc only, prints KTAP) of a trace, with the
    /// expectations the model derives; to stdout unless -o or --build.
    ReproC {
        file: PathBuf,
        /// Compile it with the system's cc (`$CC`) and -Wall -Wextra -Werror (C file: -o, or
        /// FILE with .c; binary: the C file without .c).
        #[arg(long)]
        build: bool,
        /// Where to write the C file.
        #[arg(short = 'o', long, value_name = "OUT")]
        out: Option<PathBuf>,
    },
    /// The init of a --kernel VM (internal): PID 1 in the guest, it starts the executor.
    #[command(name = "__vm-init", hide = true)]
    VmInit {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        executor_args: Vec<String>,
    },
    /// The executor process (internal).
    #[command(name = "__executor", hide = true)]
    Executor {
        #[arg(long)]
        inject: Vec<String>,
        #[arg(long, default_value_t = 10_000)]
        op_deadline_ms: u64,
    },
}

/// An error that ends the command with exit status 2.
struct Fatal(String);

impl From<HarnessError> for Fatal {
    fn from(e: HarnessError) -> Fatal {
        Fatal(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 2,
            });
        }
    };
    let result = match cli.command {
        Command::Executor {
            inject,
            op_deadline_ms,
        } => match inject_mask(&inject) {
            Ok(mask) => {
                let deadline = Duration::from_millis(op_deadline_ms.max(1));
                return ExitCode::from(cowcheck::kernel::executor::main(mask, deadline) as u8);
            }
            Err(e) => Err(e),
        },
        Command::VmInit { executor_args } => {
            let report = || cowcheck::env::Environment::detect().to_json().to_string();
            return ExitCode::from(cowcheck::kernel::vm::guest::main(&executor_args, &report) as u8);
        }
        Command::Run {
            cases,
            seed,
            time,
            max_ops,
            out,
            json,
            keep_going,
            exec,
        } => cmd_run(cases, seed, time, max_ops, &out, json, keep_going, &exec),
        Command::Replay {
            file,
            json,
            artifact,
            exec,
        } => load_program(&file, artifact).and_then(|p| cmd_replay(&file, p, json, &exec)),
        Command::Model { file, page_size } => cmd_model(&file, page_size),
        Command::Decode { artifact } => load_program(&artifact, true).map(|p| {
            print!("{p}");
            0
        }),
        Command::Shrink {
            file,
            artifact,
            out,
            exec,
        } => load_program(&file, artifact).and_then(|p| cmd_shrink(&file, p, out, &exec)),
        Command::Corpus { dir, tap, exec } => cmd_corpus(&dir, tap, &exec),
        Command::ReproC { file, build, out } => cmd_repro_c(&file, build, out),
        Command::Bench {
            programs,
            seed,
            core,
            program,
            exec,
        } => cmd_bench(programs, seed, core, program.as_deref(), &exec),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Fatal(msg)) => {
            eprintln!("cowcheck: error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn inject_mask(names: &[String]) -> Result<u32, Fatal> {
    use cowcheck::kernel::worker::inject;
    let mut mask = 0;
    for n in names {
        mask |= match n.as_str() {
            "drop-child-write" => inject::DROP_CHILD_WRITE,
            "private-as-shared" => inject::PRIVATE_AS_SHARED,
            "hang-pipe-read" => inject::HANG_PIPE_READ,
            other => {
                return Err(Fatal(format!(
                    "unknown fault {other:?}; known: drop-child-write, private-as-shared, \
                     hang-pipe-read"
                )));
            }
        };
    }
    Ok(mask)
}

fn executor_config(exec: &ExecArgs) -> Result<ExecutorConfig, Fatal> {
    cowcheck::limits::check_for_run(host_page_size() as u64).map_err(Fatal)?;
    let exe = std::env::current_exe().map_err(|e| {
        Fatal(format!(
            "cannot find the cowcheck binary to start the executor: {e}"
        ))
    })?;
    let mut config = ExecutorConfig::new(exe);
    if let Some(under) = &exec.under {
        config.under = under.split_whitespace().map(String::from).collect();
        if config.under.is_empty() {
            return Err(Fatal("--under needs a command".into()));
        }
        // Emulators are slow: give each program and each op more time.
        config.program_deadline = Duration::from_secs(600);
        config.op_deadline = Duration::from_secs(30);
    }
    if let Some(kernel) = &exec.kernel {
        use cowcheck::kernel::vm::{AccelChoice, VmConfig};
        let mut vm = VmConfig::new(kernel.clone());
        vm.append = exec.kernel_append.clone().unwrap_or_default();
        vm.accel = match exec.accel.as_deref() {
            Some("kvm") => AccelChoice::Kvm,
            Some("tcg") => AccelChoice::Tcg,
            _ => AccelChoice::Auto,
        };
        config.vm = Some(vm);
        // A VM may be emulated (TCG): give the boot, each program and each op more time.
        config.start_deadline = Duration::from_secs(180);
        config.program_deadline = Duration::from_secs(600);
        config.op_deadline = Duration::from_secs(30);
    }
    inject_mask(&exec.inject)?;
    config.inject = exec.inject.clone();
    if let Some(secs) = exec.op_deadline {
        if !(secs > 0.0 && secs.is_finite() && secs <= 3600.0) {
            return Err(Fatal(format!(
                "--op-deadline must be a number of seconds from 0 to 3600, not {secs}"
            )));
        }
        config.op_deadline = Duration::from_secs_f64(secs);
    }
    if let Some(secs) = exec.start_deadline {
        if !(secs >= 1.0 && secs.is_finite() && secs <= 3600.0) {
            return Err(Fatal(format!(
                "--start-deadline must be a number of seconds from 1 to 3600, not {secs}"
            )));
        }
        config.start_deadline = Duration::from_secs_f64(secs);
    }
    Ok(config)
}

/// A trace file: anything else (binary garbage, a missing header) is an input error naming
/// the line and column.
fn load_trace(path: &Path) -> Result<Program, Fatal> {
    load_program(path, false)
}

/// A trace, or with `artifact`, a fuzz artifact decoded the way the fuzz targets decode it
/// (every byte string is some program).
fn load_program(path: &Path, artifact: bool) -> Result<Program, Fatal> {
    let bytes = cowcheck::files::read_input(path).map_err(Fatal)?;
    if artifact {
        return Ok(cowcheck::program::generate::from_bytes(
            &bytes,
            GenConfig::default(),
        ));
    }
    trace::parse(&bytes).map_err(|e| {
        let hint = if bytes.starts_with(b"cowcheck-trace ") {
            ""
        } else {
            " (a fuzz artifact? pass --artifact)"
        };
        Fatal(format!("{}: {e}{hint}", path.display()))
    })
}

fn host_page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as usize
}

#[allow(clippy::too_many_arguments)]
fn cmd_run(
    cases: Option<u64>,
    seed: Option<u64>,
    time: Option<f64>,
    max_ops: usize,
    out: &Path,
    json: bool,
    keep_going: bool,
    exec: &ExecArgs,
) -> Result<u8, Fatal> {
    if max_ops == 0 || max_ops > caps::MAX_OPS {
        return Err(Fatal(format!("--max-ops must be 1 to {}", caps::MAX_OPS)));
    }
    let time = match time {
        Some(t) if !(t > 0.0 && t.is_finite() && t < 1e9) => {
            return Err(Fatal(format!(
                "--time must be a positive number of seconds, not {t}"
            )));
        }
        Some(t) => Some(Duration::from_secs_f64(t)),
        None => None,
    };
    if cases == Some(0) {
        return Err(Fatal("--cases must be at least 1".into()));
    }
    cowcheck::files::check_output_dir(out).map_err(Fatal)?;
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            % 1_000_000_007
    });
    let config = executor_config(exec)?;
    let mut executor = Executor::start(&config)?;
    let campaign = CampaignConfig {
        seed,
        cases,
        time,
        generator: GenConfig {
            max_ops,
            features: executor.hello.features,
            ..GenConfig::default()
        },
        keep_going,
    };
    let tty = std::io::stderr().is_terminal() && !json;
    let environment = cowcheck::env::Environment::of(&executor);
    if !json {
        println!("environment\n{}", indent(&environment.to_string()));
        eprintln!(
            "cowcheck run: seed {seed}, kernel {} {}, page size {}, executor `{}`",
            executor.hello.release,
            executor.hello.machine,
            executor.page_size(),
            config.command_line()
        );
    }
    let total = time.or(if cases.is_none() {
        Some(CampaignConfig::DEFAULT_TIME)
    } else {
        None
    });
    let mut last_draw = std::time::Instant::now();
    let (summary, findings) = campaign::run(&mut executor, &campaign, |s| {
        if tty && last_draw.elapsed() > Duration::from_millis(100) {
            last_draw = std::time::Instant::now();
            draw_progress(s, cases, total);
        }
    })?;
    if tty {
        eprint!("\r\x1b[K");
    }
    let mut saved = Vec::new();
    for f in &findings {
        saved.push(save_finding(out, seed, &executor, f)?);
    }
    if json {
        let mut v = report::campaign::summary_json(
            &summary,
            &target_of(&executor),
            seed,
            findings.first(),
            saved.first().map(|p| p.as_path()),
        );
        v["environment"] = environment.to_json();
        if keep_going {
            v["divergences"] = findings
                .iter()
                .zip(&saved)
                .map(|(f, path)| report::campaign::finding_json(f, Some(path)))
                .collect();
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!(
            "{}",
            report::campaign::summary_text(&summary, &target_of(&executor), seed)
        );
        if keep_going && !findings.is_empty() {
            println!();
            println!("{} distinct divergence(s):", findings.len());
            for (i, f) in findings.iter().enumerate() {
                println!(
                    "  {:>2}. {} x{}  [{}]",
                    i + 1,
                    f.signature,
                    f.count,
                    f.shrunk.shape()
                );
            }
        }
        for (f, path) in findings.iter().zip(&saved) {
            print!("{}", report::campaign::finding_text(f, path));
        }
    }
    Ok(if findings.is_empty() { 0 } else { 1 })
}

fn draw_progress(s: &Summary, cases: Option<u64>, total: Option<Duration>) {
    let frac = match (cases, total) {
        (Some(n), Some(t)) => {
            (s.programs as f64 / n as f64).max(s.elapsed.as_secs_f64() / t.as_secs_f64())
        }
        (Some(n), None) => s.programs as f64 / n as f64,
        (None, Some(t)) => s.elapsed.as_secs_f64() / t.as_secs_f64(),
        (None, None) => 0.0,
    }
    .min(1.0);
    let width = 30;
    let filled = (frac * width as f64) as usize;
    eprint!(
        "\r\x1b[K[{}{}] {:>3.0}%  {} programs, {} ops, {} forks, {} pages compared",
        "#".repeat(filled),
        " ".repeat(width - filled),
        frac * 100.0,
        s.programs,
        s.ops,
        s.forks,
        s.pages_compared
    );
}

/// The report's view of the executor's target.
fn target_of(ex: &Executor) -> report::campaign::Target {
    report::campaign::Target {
        release: ex.hello.release.clone(),
        machine: ex.hello.machine.clone(),
        page_size: ex.page_size(),
        features: ex.hello.features,
        executor: ex.config().command_line(),
    }
}

fn save_finding(out: &Path, seed: u64, ex: &Executor, f: &Finding) -> Result<PathBuf, Fatal> {
    let mut program = f.shrunk.clone();
    program.comments = report::campaign::finding_header(f, seed, &target_of(ex))
        .into_iter()
        .map(|text| cowcheck::program::Comment {
            before_op: 0,
            inline: false,
            text: text.into(),
        })
        .collect();
    let text = program.to_string();
    let path = cowcheck::files::save_fresh(
        out,
        &format!("cowcheck-divergence-{seed}-{}", f.index),
        "trace",
        text.as_bytes(),
    )
    .map_err(|e| unsaved(&text, &e))?;
    // The C reproducer beside it, for people without Rust (when the generator knows every op).
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    match cowcheck::report::repro_c::generate(&program, ex.page_size(), &path.display().to_string())
    {
        Ok(c) => {
            if let Err(e) = cowcheck::files::save_fresh(out, &stem, "c", c.as_bytes()) {
                eprintln!("cowcheck: no C reproducer: {e}");
            }
        }
        Err(e) => eprintln!("cowcheck: no C reproducer: {e}"),
    }
    Ok(path)
}

/// A finding that could not be saved is not lost: its trace goes to stdout in full, then the
/// error (exit 2).
fn unsaved(trace: &str, error: &str) -> Fatal {
    println!("the finding could not be saved; its trace in full:");
    print!("{trace}");
    Fatal(format!("cannot save the finding: {error}"))
}

fn cmd_replay(file: &Path, program: Program, json: bool, exec: &ExecArgs) -> Result<u8, Fatal> {
    let config = executor_config(exec)?;
    let mut executor = Executor::start(&config)?;
    let (verdict, run) = cowcheck::trial::run(&mut executor, &program, None)?;
    let divergence = match &verdict {
        Verdict::Diverged(d) => Some(d.clone()),
        Verdict::Agreed(_) => None,
    };
    // The trace's own claims (`=> ...`): both sides must meet them, as in `corpus`.
    let misses: Vec<String> =
        cowcheck::check::expectations::misses(&program, &run.outcomes, executor.page_size())
            .iter()
            .map(|m| m.describe(&program))
            .collect();
    let failed = divergence.is_some() || !misses.is_empty();
    if json {
        let ops: Vec<serde_json::Value> = program
            .ops
            .iter()
            .zip(&run.outcomes)
            .map(|(op, o)| serde_json::json!({"op": op.to_string(), "kernel": cowcheck::program::outcome::describe_outcome(o)}))
            .collect();
        let v = serde_json::json!({
            "kernel": { "release": executor.hello.release, "machine": executor.hello.machine },
            "page_size": executor.page_size(),
            "ops": ops,
            "divergence": divergence.as_ref().map(|d| serde_json::json!({
                "signature": d.signature(&program),
                "op_index": d.op_index,
                "report": report::divergence_text(&program, d, &cowcheck::trial::page_diffs(&mut executor, &program, &run, d)),
            })),
            "expectations_missed": misses,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(if failed { 1 } else { 0 });
    }
    println!(
        "replaying {} on kernel {} {} (page size {})",
        file.display(),
        executor.hello.release,
        executor.hello.machine,
        executor.page_size()
    );
    let last = divergence
        .as_ref()
        .map(|d| d.op_index)
        .unwrap_or(usize::MAX);
    for (i, (op, o)) in program.ops.iter().zip(&run.outcomes).enumerate() {
        println!(
            "  {:>3}  {:<36} {}",
            i + 1,
            op.to_string(),
            cowcheck::program::outcome::describe_outcome(o)
        );
        if let Some((_, snap)) = run.snapshots.iter().find(|(j, _)| *j == i) {
            let live: Vec<String> = snap
                .procs
                .iter()
                .map(|v| format!("{} ({} pages)", v.proc, v.pages.len()))
                .collect();
            println!("       compared every live process: {}", live.join(", "));
        }
        if i == last {
            break;
        }
    }
    match &divergence {
        Some(d) => {
            let pages = cowcheck::trial::page_diffs(&mut executor, &program, &run, d);
            println!();
            println!("DIVERGENCE ({})", d.signature(&program));
            print!("{}", report::divergence_text(&program, d, &pages));
        }
        None => println!("kernel and model agree on all {} ops", program.ops.len()),
    }
    if !misses.is_empty() {
        println!();
        println!("EXPECTATIONS NOT MET:");
        for m in &misses {
            println!("  {file}: {m}", file = file.display());
        }
    } else if !program.expects.is_empty() {
        println!(
            "all {} inline expectations met by kernel and model",
            program.expects.len()
        );
    }
    Ok(if failed { 1 } else { 0 })
}

fn cmd_model(file: &Path, page_size: Option<usize>) -> Result<u8, Fatal> {
    let program = load_trace(file)?;
    let ps = page_size.unwrap_or_else(host_page_size);
    if !ps.is_power_of_two() || !(4096..=65536).contains(&ps) {
        return Err(Fatal(format!(
            "--page-size must be a power of two from 4096 to 65536, not {ps}"
        )));
    }
    let mut model = Model::new(ps);
    println!("what Linux does, according to the model (page size {ps}):");
    for (i, op) in program.ops.iter().enumerate() {
        let outcome = model
            .apply(op, None)
            .map_err(|e| Fatal(format!("model: {e}")))?;
        let mut line = cowcheck::program::outcome::describe_outcome(&outcome);
        if let (Op::Read { map, span, proc }, cowcheck::program::outcome::Outcome::Read { .. }) =
            (op, &outcome)
            && let Some(h) = model.handle(*map)
        {
            let parts: Vec<String> = span
                .page_range()
                .pages()
                .map(|page| {
                    let addr = h.base + page as u64 * ps as u64;
                    let bytes = model.page_bytes(*proc, addr).unwrap_or_default();
                    let bytes = match span {
                        Span::Bytes { .. } => bytes[span.bytes_in_page(ps)].to_vec(),
                        Span::Pages(_) => bytes,
                    };
                    format!("page {page}: {}", report::describe_bytes(&bytes))
                })
                .collect();
            line = parts.join("; ");
        }
        println!("  {:>3}  {:<36} => {line}", i + 1, op.to_string());
        if op.snapshot_after() {
            let snap = model.snapshot();
            for v in &snap.procs {
                // Every mapped page, whatever its protection; the snapshot's page list holds
                // only the pages a read would see (guard pages among them, as unreadable).
                let mapped: u64 = v
                    .regions
                    .iter()
                    .map(|r| (r.end - r.start) / ps as u64)
                    .sum();
                println!(
                    "         {} lives, maps {} page(s) in {} region(s)",
                    v.proc,
                    mapped,
                    v.regions.len()
                );
            }
        }
    }
    Ok(0)
}

fn cmd_bench(
    programs: u64,
    seed: u64,
    core: bool,
    program: Option<&Path>,
    exec: &ExecArgs,
) -> Result<u8, Fatal> {
    if programs == 0 {
        return Err(Fatal("--programs must be at least 1".into()));
    }
    let fixed = program.map(load_trace).transpose()?;
    let config = executor_config(exec)?;
    let mut executor = Executor::start(&config)?;
    let report = cowcheck::bench::measure(&mut executor, programs, seed, core, fixed.as_ref())?;
    print!("{report}");
    Ok(0)
}

fn cmd_shrink(
    file: &Path,
    program: Program,
    out: Option<PathBuf>,
    exec: &ExecArgs,
) -> Result<u8, Fatal> {
    let config = executor_config(exec)?;
    let mut executor = Executor::start(&config)?;
    let (verdict, _) = cowcheck::trial::run(&mut executor, &program, None)?;
    let divergence = match verdict {
        Verdict::Agreed(_) => {
            println!(
                "kernel and model agree on all {} ops of {}: nothing to shrink",
                program.ops.len(),
                file.display()
            );
            return Ok(0);
        }
        Verdict::Diverged(d) => d,
    };
    // Where the result goes must be writable before the shrinking starts (it takes minutes).
    let default_dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let out_dir = match &out {
        Some(p) => match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        },
        None => default_dir.clone(),
    };
    cowcheck::files::check_output_dir(&out_dir).map_err(Fatal)?;
    let f = campaign::confirm(&mut executor, 0, &program, divergence)?;
    let mut shrunk = f.shrunk.clone();
    shrunk.comments = [
        format!(" shrunk by: cowcheck shrink {}", file.display()),
        format!(
            " kernel {} {}, page size {}, executor `{}`",
            executor.hello.release,
            executor.hello.machine,
            executor.page_size(),
            config.command_line()
        ),
        format!(" shape: {}", f.signature),
        format!(
            " shrunk from {} to {} ops; first seen after op {}",
            f.original.ops.len(),
            f.shrunk.ops.len(),
            f.divergence.op_index + 1
        ),
    ]
    .into_iter()
    .map(|text| cowcheck::program::Comment {
        before_op: 0,
        inline: false,
        text: Some(text),
    })
    .collect();
    let text = shrunk.to_string();
    let path = match out {
        Some(p) => cowcheck::files::save_as(&p, text.as_bytes()).map(|()| p),
        None => {
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            cowcheck::files::save_fresh(
                &default_dir,
                &format!("{name}.shrunk"),
                "trace",
                text.as_bytes(),
            )
        }
    }
    .map_err(|e| unsaved(&text, &e))?;
    print!("{}", report::campaign::finding_text(&f, &path));
    Ok(1)
}

/// Each line indented by two spaces.
fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn cmd_corpus(dir: &Path, tap: bool, exec: &ExecArgs) -> Result<u8, Fatal> {
    use cowcheck::corpus;
    let scenarios = corpus::discover(dir).map_err(|e| Fatal(e.to_string()))?;
    let config = executor_config(exec)?;
    let environment = cowcheck::env::Environment::detect_for(&config)?;
    if tap {
        print!("{}", corpus::ktap_header(scenarios.len(), &environment));
        println!("# executor: {}", config.command_line());
    } else {
        println!("environment\n{}", indent(&environment.to_string()));
        println!(
            "corpus {} ({} scenarios), executor `{}`",
            dir.display(),
            scenarios.len(),
            config.command_line()
        );
    }
    let start = std::time::Instant::now();
    let mut runner = corpus::Runner::new(config, environment);
    let mut results = Vec::with_capacity(scenarios.len());
    for (i, s) in scenarios.iter().enumerate() {
        let r = runner.run(s);
        if tap {
            print!("{}", corpus::ktap_result(i + 1, &r));
        } else {
            print!("{}", corpus::human_result(&r));
        }
        results.push(r);
    }
    let (pass, fail, skip) = corpus::counts(&results);
    if tap {
        print!("{}", corpus::ktap_totals(&results, start.elapsed()));
    } else {
        println!(
            "{pass} passed, {fail} failed, {skip} skipped of {} scenarios in {:.1} s",
            results.len(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(corpus::exit_code(&results))
}

fn cmd_repro_c(file: &Path, build: bool, out: Option<PathBuf>) -> Result<u8, Fatal> {
    use cowcheck::report::repro_c;
    let program = load_trace(file)?;
    let c = repro_c::generate(&program, host_page_size(), &file.display().to_string())
        .map_err(|e| Fatal(format!("{}: {e}", file.display())))?;
    let c_path = match (out, build) {
        (Some(p), _) => p,
        (None, true) => file.with_extension("c"),
        (None, false) => {
            print!("{c}");
            return Ok(0);
        }
    };
    cowcheck::files::save_as(&c_path, c.as_bytes()).map_err(Fatal)?;
    eprintln!("wrote {}", c_path.display());
    if build {
        let binary = repro_c::binary_path(&c_path);
        repro_c::build(&c_path, &binary).map_err(|e| Fatal(e.to_string()))?;
        eprintln!(
            "built {} (run it: it prints KTAP and exits 0 if the kernel behaves)",
            binary.display()
        );
    }
    Ok(0)
}

//! The `cowcheck` command line. Exit codes everywhere: 0 no divergence, 1 divergence, 2 usage,
//! input or environment error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod cli;

use cowcheck::kernel::{ExecutorConfig, HarnessError};
use cowcheck::program::generate::GenConfig;
use cowcheck::program::{Program, trace};

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
    /// A kind of region that the runtime under --under makes for itself (PERMS[:BACKING], as in
    /// /proc/self/maps: `rw-s:file`, `r--p:anon`, `rw-s`; BACKING is anon, dev-zero, shmem or
    /// file): such a region is set aside wherever the program has no memory, and reported
    /// once in the summary, not as a divergence. Repeatable. `run --under` also learns these
    /// from a baseline program at start.
    #[arg(long, value_name = "KIND")]
    ignore_region: Vec<String>,
    /// Turn the physical channel off: no /proc/self/pagemap reads at snapshots, no check of
    /// the model's frames against them (docs/SEMANTICS.md part 11).
    #[arg(long)]
    no_physical: bool,
    /// `run`, `bench`: also read /proc/self/smaps at each program's end and check Rss, Pss,
    /// Anonymous, Shared_/Private_ and Swap against the model (docs/SEMANTICS.md I11 to I14).
    /// Off by default in campaigns for its cost (9% more time a program, 22% on `--core`);
    /// `replay`, `corpus` and `shrink` always read it.
    #[arg(long)]
    smaps: bool,
    /// `run`, `matrix`: also generate MAP_HUGETLB mappings where the probe found hugetlb
    /// (docs/SEMANTICS.md L6 to L14). Off by default: the huge page pool is the whole
    /// machine's, and beside a program that holds every free huge page a fork child's view can
    /// still find a page unreadable that the model says it can read (L9). `replay`, `corpus`
    /// and `shrink` run hugetlb ops as written.
    #[arg(long)]
    hugetlb: bool,
}

/// The executor options of `matrix`, where --kernel is repeated (one per column).
#[derive(clap::Args, Clone)]
struct MatrixExecArgs {
    /// As for `run`.
    #[arg(long, value_name = "SECS")]
    op_deadline: Option<f64>,
    /// As for `run`.
    #[arg(long, value_name = "SECS")]
    start_deadline: Option<f64>,
    /// More kernel command-line arguments for every --kernel.
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    kernel_append: Option<String>,
    /// The accelerator for every --kernel (auto, kvm, tcg).
    #[arg(long, value_name = "ACCEL", value_parser = ["auto", "kvm", "tcg"])]
    accel: Option<String>,
}

impl From<MatrixExecArgs> for ExecArgs {
    fn from(m: MatrixExecArgs) -> ExecArgs {
        ExecArgs {
            under: None,
            inject: Vec::new(),
            op_deadline: m.op_deadline,
            start_deadline: m.start_deadline,
            kernel: None,
            kernel_append: m.kernel_append,
            accel: m.accel,
            ignore_region: Vec::new(),
            no_physical: false,
            smaps: false,
            hugetlb: false,
        }
    }
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
        /// Executors to run at once, each on its own share of the seed's programs (default:
        /// the number of CPUs). The first divergence stops every job unless --keep-going.
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
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
        /// Measure how programs per second scale with N executors at once: rounds alternate
        /// between one job and N jobs (default: no scaling measurement).
        #[arg(long, value_name = "N", conflicts_with = "program")]
        jobs: Option<usize>,
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
    /// The same checks on several kernels side by side: the scenario corpus and N random
    /// programs of one seed on each `--kernel IMAGE` (and the host with --host); one table,
    /// a KTAP file per kernel and one JSON file in --out. Exit 0 if every kernel passed.
    Matrix {
        /// Also the host kernel (the default when no --kernel is given).
        #[arg(long)]
        host: bool,
        /// The scenario corpus.
        #[arg(long, value_name = "DIR", default_value = "scenarios")]
        corpus: PathBuf,
        /// Random programs on each kernel (0: the corpus only).
        #[arg(long, value_name = "N", default_value_t = 2000)]
        cases: u64,
        #[arg(long, value_name = "S", default_value_t = 1)]
        seed: u64,
        /// Where to write the KTAP files, the JSON file and the findings' traces.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// The kernels (repeat --kernel); the other executor options apply to each.
        #[arg(long = "kernel", value_name = "IMAGE")]
        kernels: Vec<PathBuf>,
        #[command(flatten)]
        exec: MatrixExecArgs,
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
        #[arg(long)]
        cpu: Option<usize>,
        #[arg(long, value_delimiter = ',')]
        cpus: Vec<usize>,
        #[arg(long)]
        no_physical: bool,
        #[arg(long)]
        no_physical_emulator: bool,
        #[arg(long)]
        no_smaps: bool,
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
            cpu,
            cpus,
            no_physical,
            no_physical_emulator,
            no_smaps,
        } => match inject_mask(&inject) {
            Ok(mask) => {
                use cowcheck::program::physical::Skip;
                let deadline = Duration::from_millis(op_deadline_ms.max(1));
                let physical = match (no_physical, no_physical_emulator) {
                    (true, _) => Some(Skip::Disabled),
                    (_, true) => Some(Skip::Emulator),
                    _ => None,
                };
                return ExitCode::from(cowcheck::kernel::executor::main(
                    mask, deadline, cpu, &cpus, physical, no_smaps,
                ) as u8);
            }
            Err(e) => Err(e),
        },
        Command::Matrix {
            host,
            corpus,
            cases,
            seed,
            out,
            kernels,
            exec,
        } => cli::matrix::cmd_matrix(&kernels, host, &corpus, cases, seed, &out, &exec.into()),
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
            jobs,
            exec,
        } => cli::run::cmd_run(
            cases, seed, time, max_ops, &out, json, keep_going, jobs, &exec,
        ),
        Command::Replay {
            file,
            json,
            artifact,
            exec,
        } => load_program(&file, artifact)
            .and_then(|p| cli::inspect::cmd_replay(&file, p, json, &exec)),
        Command::Model { file, page_size } => cli::inspect::cmd_model(&file, page_size),
        Command::Decode { artifact } => load_program(&artifact, true).map(|p| {
            print!("{p}");
            0
        }),
        Command::Shrink {
            file,
            artifact,
            out,
            exec,
        } => {
            load_program(&file, artifact).and_then(|p| cli::tools::cmd_shrink(&file, p, out, &exec))
        }
        Command::Corpus { dir, tap, exec } => cli::tools::cmd_corpus(&dir, tap, &exec),
        Command::ReproC { file, build, out } => cli::tools::cmd_repro_c(&file, build, out),
        Command::Bench {
            programs,
            seed,
            core,
            program,
            jobs,
            exec,
        } => cli::tools::cmd_bench(programs, seed, core, program.as_deref(), jobs, &exec),
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

/// The executor of a campaign (`run`, `bench`): as for every verb, but smaps is read only when
/// asked (`--smaps`: its cost, docs/SEMANTICS.md I11).
fn campaign_config(exec: &ExecArgs) -> Result<ExecutorConfig, Fatal> {
    let mut config = executor_config(exec)?;
    config.smaps_off = !exec.smaps;
    Ok(config)
}

fn executor_config(exec: &ExecArgs) -> Result<ExecutorConfig, Fatal> {
    cowcheck::limits::check_for_run(host_page_size() as u64, 1).map_err(Fatal)?;
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
    for kind in &exec.ignore_region {
        let kind = cowcheck::program::runtime_regions::RegionKind::parse(kind)
            .map_err(|e| Fatal(format!("--ignore-region: {e}")))?;
        config.own_regions.push(kind);
    }
    if exec.no_physical {
        config.physical_off = Some(cowcheck::program::physical::Skip::Disabled);
    }
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

/// Each line indented by two spaces.
fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

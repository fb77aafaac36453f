//! `cowcheck bench`, `shrink`, `corpus` and `repro-c`.

use std::path::{Path, PathBuf};

use cowcheck::campaign;
use cowcheck::check::Verdict;
use cowcheck::kernel::Executor;
use cowcheck::program::Program;
use cowcheck::report;

use super::run::unsaved;
use crate::{ExecArgs, Fatal, executor_config, host_page_size, indent, load_trace};

pub(crate) fn cmd_bench(
    programs: u64,
    seed: u64,
    core: bool,
    program: Option<&Path>,
    jobs: Option<usize>,
    exec: &ExecArgs,
) -> Result<u8, Fatal> {
    if programs == 0 {
        return Err(Fatal("--programs must be at least 1".into()));
    }
    if let Some(jobs) = jobs {
        let jobs = super::run::jobs_or_cpus(Some(jobs))?;
        let config = crate::campaign_config(exec)?;
        // One job as `run --jobs 1` runs it; one kept on one core; and N kept on N cores, one
        // each (as `run --jobs N` keeps them), their racing threads on those N cores too
        // (`ExecutorConfig::for_job_within`).
        let usable = cowcheck::kernel::cpus::allowed();
        let cores: Vec<usize> = usable.iter().copied().take(jobs.max(1)).collect();
        let mut one = Executor::start(&config.for_job(0, 1))?;
        let mut one_core =
            Executor::start(&config.for_job_within(0, 1, &cores[..cores.len().min(1)]))?;
        let mut executors = (0..jobs)
            .map(|job| Executor::start(&config.for_job_within(job, jobs, &cores)))
            .collect::<Result<Vec<_>, _>>()?;
        let report = cowcheck::bench::measure_jobs(
            &mut one_core,
            &mut one,
            &mut executors,
            cores.len(),
            programs,
            seed,
            core,
        )?;
        print!("{report}");
        return Ok(0);
    }
    let fixed = program.map(load_trace).transpose()?;
    let config = crate::campaign_config(exec)?;
    let mut executor = Executor::start(&config)?;
    let report = cowcheck::bench::measure(&mut executor, programs, seed, core, fixed.as_ref())?;
    print!("{report}");
    Ok(0)
}

pub(crate) fn cmd_shrink(
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
    let shrunk = report::campaign::annotated(
        &f,
        &format!("shrunk by: cowcheck shrink {}", file.display()),
        &super::run::target_of(&executor),
    );
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

pub(crate) fn cmd_corpus(dir: &Path, tap: bool, exec: &ExecArgs) -> Result<u8, Fatal> {
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

pub(crate) fn cmd_repro_c(file: &Path, build: bool, out: Option<PathBuf>) -> Result<u8, Fatal> {
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

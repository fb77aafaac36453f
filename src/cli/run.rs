//! `cowcheck run`: a campaign on one or more executors, its progress, summary and saved
//! findings.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cowcheck::campaign::{self, CampaignConfig, Finding, Summary};
use cowcheck::kernel::Executor;
use cowcheck::program::caps;
use cowcheck::program::features::Features;
use cowcheck::program::generate::GenConfig;
use cowcheck::program::runtime_regions::RegionKind;
use cowcheck::report;

use crate::{ExecArgs, Fatal, host_page_size, indent};

#[allow(clippy::too_many_arguments)]
pub(crate) fn cmd_run(
    cases: Option<u64>,
    seed: Option<u64>,
    time: Option<f64>,
    max_ops: usize,
    out: &Path,
    json: bool,
    keep_going: bool,
    jobs: Option<usize>,
    exec: &ExecArgs,
) -> Result<u8, Fatal> {
    let jobs = jobs_or_cpus(jobs)?;
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
    let config = crate::campaign_config(exec)?;
    cowcheck::limits::check_for_run(host_page_size() as u64, jobs as u64).map_err(Fatal)?;
    let mut executors = (0..jobs)
        .map(|job| Executor::start(&config.for_job(job, jobs)))
        .collect::<Result<Vec<_>, _>>()?;
    // A runtime's own regions (valgrind's page for vgdb): those named, and, under --under,
    // those a baseline program shows where it has no memory. On a plain kernel none are
    // learnt, so nothing is ever set aside there unless named.
    let mut own: Vec<(RegionKind, &str)> =
        config.own_regions.iter().map(|k| (*k, "named")).collect();
    if !config.under.is_empty() {
        for k in cowcheck::trial::learn_own_regions(&mut executors[0])? {
            if !own.iter().any(|(o, _)| *o == k) {
                own.push((k, "learnt from a baseline program"));
            }
        }
        for e in &mut executors {
            e.own_regions = own.iter().map(|(k, _)| *k).collect();
        }
    }
    let campaign = CampaignConfig {
        seed,
        cases,
        time,
        generator: GenConfig {
            max_ops,
            // hugetlb maps only with --hugetlb (docs/SEMANTICS.md L9: the pool is shared).
            features: Features {
                hugetlb: hugetlb_drawn(exec, &executors[0]),
                ..executors[0].hello.features
            },
            ..GenConfig::default()
        },
        keep_going,
        share: campaign::Share::ALL,
        stop: Default::default(),
        out: Some(out.to_path_buf()),
    };
    let tty = std::io::stderr().is_terminal() && !json;
    let environment = cowcheck::env::Environment::of(&executors[0]);
    if !json {
        println!("environment\n{}", indent(&environment.to_string()));
        eprintln!(
            "cowcheck run: seed {seed}, kernel {} {}, page size {}, {jobs} job(s), executor `{}`",
            executors[0].hello.release,
            executors[0].hello.machine,
            executors[0].page_size(),
            config.command_line()
        );
    }
    let total = time.or(if cases.is_none() {
        Some(CampaignConfig::DEFAULT_TIME)
    } else {
        None
    });
    let bar = progress_bar(tty, cases, total);
    let (summary, findings) = campaign::run_jobs(&mut executors, &campaign, |s| {
        show_progress(&bar, s, cases, total)
    })?;
    bar.finish_and_clear();
    let executor = &executors[0];
    let mut saved = Vec::new();
    for f in &findings {
        saved.push(save_finding(out, seed, executor, f)?);
    }
    if json {
        let mut v = report::campaign::summary_json(
            &summary,
            &target_of(executor),
            seed,
            findings.first(),
            saved.first().map(|p| p.as_path()),
        );
        v["environment"] = environment.to_json();
        v["hugetlb"] = hugetlb_json(exec, executor);
        v["runtime_regions"] = own
            .iter()
            .map(|(k, how)| serde_json::json!({ "kind": k.to_string(), "source": how }))
            .collect();
        v["programs_with_runtime_regions"] = summary.with_own_regions.into();
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
            report::campaign::summary_text(&summary, &target_of(executor), seed)
        );
        println!("  hugetlb         {}", hugetlb_why(exec, executor).1);
        for (k, how) in &own {
            println!(
                "  runtime region  {k} ({how}): the runtime's own, set aside where the program \
                 has no memory; shown by {} agreeing program(s)",
                summary.with_own_regions
            );
        }
        if keep_going && !findings.is_empty() {
            println!();
            println!("{} distinct divergence(s):", findings.len());
            for (i, f) in findings.iter().enumerate() {
                println!(
                    "  {:>2}. {} x{}  [{}] (caught by: {})",
                    i + 1,
                    f.signature,
                    f.count,
                    f.shrunk.shape(),
                    f.divergence.channel()
                );
            }
        }
        for (f, path) in findings.iter().zip(&saved) {
            print!("{}", report::campaign::finding_text(f, path));
        }
    }
    Ok(if findings.is_empty() { 0 } else { 1 })
}

/// The number of jobs: as asked, or one per CPU.
pub(crate) fn jobs_or_cpus(jobs: Option<usize>) -> Result<usize, Fatal> {
    match jobs {
        Some(0) => Err(Fatal("--jobs must be at least 1".into())),
        Some(n) if n > 256 => Err(Fatal(format!("--jobs must be at most 256, not {n}"))),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// One progress bar for every job of a campaign (with rate and time left), drawn only on a
/// terminal.
fn progress_bar(tty: bool, cases: Option<u64>, total: Option<Duration>) -> indicatif::ProgressBar {
    if !tty {
        return indicatif::ProgressBar::hidden();
    }
    // A case count is counted in programs; a time limit in tenths of a second.
    let (len, template) = match (cases, total) {
        (Some(n), _) => (
            n,
            "{bar:30} {pos}/{len} programs, {per_sec}, {eta} left  {msg}",
        ),
        (None, Some(t)) => (
            (t.as_secs_f64() * 10.0) as u64,
            "{bar:30} {elapsed_precise} of the time  {msg}",
        ),
        (None, None) => (0, "{spinner} {msg}"),
    };
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

fn show_progress(
    bar: &indicatif::ProgressBar,
    s: &Summary,
    cases: Option<u64>,
    total: Option<Duration>,
) {
    if bar.is_hidden() {
        return;
    }
    match (cases, total) {
        (Some(_), _) => bar.set_position(s.programs),
        (None, Some(_)) => bar.set_position((s.elapsed.as_secs_f64() * 10.0) as u64),
        (None, None) => {}
    }
    bar.set_message(format!(
        "{} programs ({:.0}/s), {} ops, {} forks, {} pages compared",
        s.programs,
        s.programs as f64 / s.elapsed.as_secs_f64().max(1e-9),
        s.ops,
        s.forks,
        s.pages_compared
    ));
}

/// The report's view of the executor's target.
pub(crate) fn target_of(ex: &Executor) -> report::campaign::Target {
    report::campaign::Target {
        release: ex.hello.release.clone(),
        machine: ex.hello.machine.clone(),
        page_size: ex.page_size(),
        features: ex.hello.features,
        physical: ex.hello.physical,
        executor: ex.config().command_line(),
    }
}

fn save_finding(out: &Path, seed: u64, ex: &Executor, f: &Finding) -> Result<PathBuf, Fatal> {
    let program = report::campaign::annotated(
        f,
        &format!(
            "divergence found by: cowcheck run --seed {seed} (program {})",
            f.index
        ),
        &target_of(ex),
    );
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
pub(crate) fn unsaved(trace: &str, error: &str) -> Fatal {
    println!("the finding could not be saved; its trace in full:");
    print!("{trace}");
    Fatal(format!("cannot save the finding: {error}"))
}

/// Whether the campaign draws MAP_HUGETLB maps: with `--hugetlb`, where the executor probed
/// `HUGETLB` (docs/SEMANTICS.md L9).
pub(crate) fn hugetlb_drawn(exec: &ExecArgs, ex: &Executor) -> bool {
    hugetlb_why(exec, ex).0
}

/// Whether hugetlb maps are drawn, and why, as the summary says it.
fn hugetlb_why(exec: &ExecArgs, ex: &Executor) -> (bool, &'static str) {
    if !exec.hugetlb {
        (
            false,
            "not drawn (--hugetlb draws MAP_HUGETLB maps; off by default, the pool is the machine's: L9)",
        )
    } else if !ex.hello.features.hugetlb {
        (
            false,
            "not drawn (the executor found no HUGETLB: no pool it could use, see the environment)",
        )
    } else {
        (true, "drawn (--hugetlb)")
    }
}

/// The `hugetlb` key of `run --json`: `{"drawn": bool, "why": "..."}`.
fn hugetlb_json(exec: &ExecArgs, ex: &Executor) -> serde_json::Value {
    let (drawn, why) = hugetlb_why(exec, ex);
    serde_json::json!({ "drawn": drawn, "why": why })
}

//! `cowcheck matrix`: the same checks on several kernels side by side. For each target (every
//! `--kernel IMAGE`, and the host with `--host`): the scenario corpus, then `--cases N` random
//! programs of one seed (the same program indices everywhere; a kernel's missing features are
//! probed and not generated, as in `run`). One table (scenario or finding x kernel: pass, fail,
//! skip with its reason), a KTAP file per kernel and one JSON file in `--out`.
//!
//! A difference between kernels is then either explained by a probed feature (a skip, with the
//! feature named) or shown as a failure or a finding with its shrunk trace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cowcheck::campaign::{self, CampaignConfig, Finding};
use cowcheck::corpus::{self, ScenarioResult, Verdict};
use cowcheck::kernel::{Executor, ExecutorConfig};
use cowcheck::program::generate::GenConfig;

use crate::{ExecArgs, Fatal, executor_config};

/// One kernel's results.
struct Column {
    label: String,
    kernel: String,
    scenarios: Vec<ScenarioResult>,
    findings: Vec<Finding>,
    programs: u64,
    /// A harness error that stopped this kernel's random programs.
    error: Option<String>,
}

/// The targets: each `--kernel`, then the host if asked. Without `--kernel`: the Debian
/// kernels in the cache (`scripts/fetch-kernel.sh` puts them there), and the host.
fn targets(
    kernels: &[PathBuf],
    host: bool,
    exec: &ExecArgs,
) -> Result<Vec<(String, ExecutorConfig)>, Fatal> {
    let mut out = Vec::new();
    let (kernels, host) = if kernels.is_empty() {
        let cached = cowcheck::kernel::vm::image::cached_debs();
        if cached.is_empty() {
            eprintln!(
                "matrix: no --kernel given and no Debian kernel in {} (scripts/fetch-kernel.sh fetches one): the host only",
                cowcheck::kernel::vm::image::cache_dir().display()
            );
        }
        (cached, true)
    } else {
        (kernels.to_vec(), host)
    };
    for k in &kernels {
        let args = ExecArgs {
            kernel: Some(k.clone()),
            ..exec.clone()
        };
        // linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb -> 6.1.0-57-cloud-amd64
        let name = k
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| k.display().to_string());
        let label = name
            .strip_prefix("linux-image-")
            .and_then(|n| n.split('_').next())
            .map_or(name.clone(), str::to_string);
        out.push((label, executor_config(&args)?));
    }
    if host {
        out.push(("host".to_string(), executor_config(exec)?));
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn cmd_matrix(
    kernels: &[PathBuf],
    host: bool,
    corpus_dir: &Path,
    cases: u64,
    seed: u64,
    out: &Path,
    exec: &ExecArgs,
) -> Result<u8, Fatal> {
    cowcheck::files::check_output_dir(out).map_err(Fatal)?;
    let scenarios = corpus::discover(corpus_dir).map_err(|e| Fatal(e.to_string()))?;
    let mut columns = Vec::new();
    for (label, config) in targets(kernels, host, exec)? {
        eprintln!("matrix: {label} ({})", config.command_line());
        let start = Instant::now();
        let environment = cowcheck::env::Environment::detect_for(&config)?;
        let mut runner = corpus::Runner::new(config.clone(), environment.clone());
        let results: Vec<ScenarioResult> = scenarios.iter().map(|s| runner.run(s)).collect();
        drop(runner);
        let mut ktap = corpus::ktap_header(results.len(), &environment);
        for (i, r) in results.iter().enumerate() {
            ktap.push_str(&corpus::ktap_result(i + 1, r));
        }
        ktap.push_str(&corpus::ktap_totals(&results, start.elapsed()));
        let name = format!("matrix-{}", sanitize(&label));
        cowcheck::files::save_fresh(out, &name, "ktap", ktap.as_bytes()).map_err(Fatal)?;
        let (mut findings, mut programs, mut error, mut kernel) =
            (Vec::new(), 0, None, String::new());
        match Executor::start(&config) {
            Err(e) => error = Some(e.to_string()),
            Ok(mut executor) => {
                kernel = format!("{} {}", executor.hello.release, executor.hello.machine);
                let campaign = CampaignConfig {
                    seed,
                    cases: Some(cases),
                    time: None,
                    generator: GenConfig {
                        // hugetlb maps only with --hugetlb, as for `run` (L9).
                        features: cowcheck::program::features::Features {
                            hugetlb: super::run::hugetlb_drawn(exec, &executor),
                            ..executor.hello.features
                        },
                        ..GenConfig::default()
                    },
                    keep_going: true,
                    share: campaign::Share::ALL,
                    stop: Default::default(),
                    out: Some(out.to_path_buf()),
                };
                if cases > 0 {
                    match campaign::run(&mut executor, &campaign, |_| {}) {
                        Ok((summary, found)) => {
                            programs = summary.programs;
                            findings = found;
                        }
                        Err(e) => error = Some(e.to_string()),
                    }
                }
            }
        }
        for f in &findings {
            let trace = f.shrunk.to_string();
            let stem = format!("matrix-{}-finding-{}", sanitize(&label), f.index);
            cowcheck::files::save_fresh(out, &stem, "trace", trace.as_bytes()).map_err(Fatal)?;
        }
        columns.push(Column {
            label,
            kernel,
            scenarios: results,
            findings,
            programs,
            error,
        });
    }
    print!("{}", table(&columns));
    let json = serde_json::to_string_pretty(&to_json(&columns, seed, cases)).unwrap_or_default();
    let path =
        cowcheck::files::save_fresh(out, "matrix", "json", json.as_bytes()).map_err(Fatal)?;
    println!("wrote {} and a KTAP file per kernel", path.display());
    let clean = columns.iter().all(|c| {
        c.error.is_none()
            && c.findings.is_empty()
            && c.scenarios
                .iter()
                .all(|r| !matches!(r.verdict, Verdict::Fail(_)))
    });
    Ok(if clean { 0 } else { 1 })
}

fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn cell(v: &Verdict) -> String {
    match v {
        Verdict::Pass => "pass".into(),
        Verdict::Fail(_) => "FAIL".into(),
        Verdict::Skip(why) => format!("skip ({why})"),
    }
}

/// The table: every scenario that did not pass everywhere, every finding, and the totals.
fn table(columns: &[Column]) -> String {
    let mut out = String::new();
    let width = 28;
    let head: Vec<String> = columns
        .iter()
        .map(|c| format!("{:<width$}", c.label))
        .collect();
    out.push_str(&format!(
        "{:<52} {}\n",
        "scenario or finding",
        head.join(" ")
    ));
    let kernels: Vec<String> = columns
        .iter()
        .map(|c| format!("{:<width$}", c.kernel))
        .collect();
    out.push_str(&format!("{:<52} {}\n", "(kernel)", kernels.join(" ")));
    let names: Vec<&str> = columns
        .first()
        .map(|c| c.scenarios.iter().map(|r| r.name.as_str()).collect())
        .unwrap_or_default();
    let mut all_pass = 0;
    for (i, name) in names.iter().enumerate() {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| c.scenarios.get(i).map_or("-".into(), |r| cell(&r.verdict)))
            .collect();
        if cells.iter().all(|c| c == "pass") {
            all_pass += 1;
            continue;
        }
        let cells: Vec<String> = cells.iter().map(|c| format!("{c:<width$}")).collect();
        out.push_str(&format!("{name:<52} {}\n", cells.join(" ")));
    }
    // Findings of the random programs, by signature and shape, across kernels.
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, c) in columns.iter().enumerate() {
        for f in &c.findings {
            let row = keys
                .entry(format!("{} [{}]", f.signature, f.shrunk.shape()))
                .or_insert_with(|| vec!["-".to_string(); columns.len()]);
            row[k] = format!("found x{} (program {})", f.count, f.index);
        }
    }
    for (key, cells) in &keys {
        let cells: Vec<String> = cells.iter().map(|c| format!("{c:<width$}")).collect();
        out.push_str(&format!("{key:<52} {}\n", cells.join(" ")));
    }
    let totals: Vec<String> = columns
        .iter()
        .map(|c| {
            let (p, f, s) = corpus::counts(&c.scenarios);
            let t = format!(
                "{p}/{f}/{s}, {} programs: {}",
                c.programs,
                match &c.error {
                    Some(_) => "ERROR".to_string(),
                    None => format!("{} finding(s)", c.findings.len()),
                }
            );
            format!("{t:<width$}")
        })
        .collect();
    out.push_str(&format!(
        "{:<52} {}\n",
        format!("({all_pass} scenarios pass everywhere; pass/fail/skip)"),
        totals.join(" ")
    ));
    for c in columns {
        if let Some(e) = &c.error {
            out.push_str(&format!("{}: {e}\n", c.label));
        }
    }
    out
}

fn to_json(columns: &[Column], seed: u64, cases: u64) -> serde_json::Value {
    serde_json::json!({
        "seed": seed,
        "cases": cases,
        "kernels": columns.iter().map(|c| serde_json::json!({
            "label": c.label,
            "kernel": c.kernel,
            "programs": c.programs,
            "error": c.error,
            "scenarios": c.scenarios.iter().map(|r| serde_json::json!({
                "name": r.name,
                "verdict": match &r.verdict {
                    Verdict::Pass => serde_json::json!("pass"),
                    Verdict::Fail(why) => serde_json::json!({"fail": why}),
                    Verdict::Skip(why) => serde_json::json!({"skip": why}),
                },
            })).collect::<Vec<_>>(),
            "findings": c.findings.iter().map(|f| serde_json::json!({
                "signature": f.signature,
                "shape": f.shrunk.shape(),
                "count": f.count,
                "program_index": f.index,
                "trace": f.shrunk.to_string(),
                "seen": f.seen,
                "runs": f.runs,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

//! Campaigns: random programs checked one after another until a divergence, a case count or a
//! time limit; and the shrinking of a finding. The front ends (CLI, tests) call these verbs and
//! never juggle seeds themselves.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use crate::check::finding::{Finding, Summary};
use crate::check::shrink;
use crate::check::{Difference, Divergence, Verdict};
use crate::kernel::{Executor, HarnessError};
use crate::program::generate::{GenConfig, random_program};
use crate::program::{OpKind, Program};

/// What to run.
#[derive(Clone, Debug)]
pub struct CampaignConfig {
    pub seed: u64,
    /// Stop after this many programs.
    pub cases: Option<u64>,
    /// Stop after this long.
    pub time: Option<Duration>,
    pub generator: GenConfig,
    /// Collect every distinct divergence instead of stopping at the first.
    pub keep_going: bool,
    /// This campaign's share of the program indices (`--jobs`): indices `job`, `job + jobs`,
    /// `job + 2 jobs`, ... of the seed, so that N jobs together run the programs one job runs.
    pub share: Share,
    /// Raised by any job to stop every job (a divergence without --keep-going, an error).
    pub stop: Arc<AtomicBool>,
    /// Where a program that the environment made fail is saved (`--out`), so that nothing is
    /// lost when a campaign ends on an error of the environment; `None` keeps nothing.
    pub out: Option<std::path::PathBuf>,
}

/// Which program indices a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    pub job: u64,
    pub jobs: u64,
}

impl Share {
    pub const ALL: Share = Share { job: 0, jobs: 1 };
}

impl CampaignConfig {
    /// Given neither cases nor time, a campaign runs for about 30 s.
    pub const DEFAULT_TIME: Duration = Duration::from_secs(30);
}

/// How many findings with one signature get shrunk before further ones are just counted (under
/// the first group of that signature): shrinking costs hundreds of runs.
const SHRINKS_PER_SIGNATURE: usize = 3;

/// How many times a diverging program runs again before it is shrunk: to tell a finding
/// (it diverges again) from an accident of the environment (a process killed from outside the
/// run, which does not happen again), and to report a nondeterministic divergence as "seen N
/// times in M runs".
pub const RERUNS: u32 = 4;

/// Time one shrink may take before the smallest program found so far is reported.
const SHRINK_BUDGET: Duration = Duration::from_secs(180);

/// Runs a campaign. `progress` is called after every program.
pub fn run(
    executor: &mut Executor,
    config: &CampaignConfig,
    mut progress: impl FnMut(&Summary),
) -> Result<(Summary, Vec<Finding>), HarnessError> {
    let start = Instant::now();
    let limit = match (config.cases, config.time) {
        (None, None) => Some(CampaignConfig::DEFAULT_TIME),
        (_, t) => t,
    };
    let mut summary = Summary::default();
    let mut findings: Vec<Finding> = Vec::new();
    let mut shrunk_per_signature: std::collections::HashMap<String, usize> = Default::default();
    let step = config.share.jobs.max(1);
    let mut index = config.share.job;
    // One program is kept queued in the executor ahead of the one being checked, so that the
    // kernel side of program i+1 runs while the model checks program i (their replies come
    // back in order). A divergence's shrinking drains the queue; the next program is then
    // sent again. A program still queued when the campaign ends is dropped unchecked.
    let mut queued: Option<Program> = None;
    loop {
        if config.cases.is_some_and(|n| index >= n)
            || limit.is_some_and(|t| start.elapsed() >= t)
            || config.stop.load(Ordering::Relaxed)
        {
            break;
        }
        let program = match queued.take() {
            Some(p) if executor.in_flight() == 1 => p,
            _ => {
                let p = random_program(config.seed, index, config.generator);
                executor.submit(&p, &[])?;
                p
            }
        };
        if config.cases.is_none_or(|n| index + step < n) {
            let next = random_program(config.seed, index + step, config.generator);
            executor.submit(&next, &[])?;
            queued = Some(next);
        }
        let run = executor.collect()?;
        // The cells are read off the comparison's own model run, as the fuzzer reads them.
        let mut cells = crate::check::coverage::CellSet::new();
        let verdict = crate::trial::judge(executor, &program, &run, Some(&mut cells))?;
        summary.programs += 1;
        summary.cells.union(&cells);
        for (k, kind) in OpKind::ALL.iter().enumerate() {
            if program.ops.iter().any(|o| o.kind() == *kind) {
                summary.programs_with[k] += 1;
            }
        }
        match verdict {
            Verdict::Agreed(t) => {
                summary.ops += t.ops as u64;
                summary.forks += t.forks as u64;
                summary.racing_forks += t.racing_forks as u64;
                summary.clones += t.clones as u64;
                summary.thread_ops += t.thread_ops as u64;
                summary.thread_forks += t.thread_forks as u64;
                for (s, n) in summary.races.iter_mut().zip(t.races) {
                    *s += n as u64;
                }
                for (s, n) in (summary.racing_forks_by_kind.iter_mut()).zip(t.racing_forks_by_kind)
                {
                    *s += n as u64;
                }
                summary.pages_compared += t.pages_compared as u64;
                summary.snapshots += t.snapshots as u64;
                if t.own_regions > 0 {
                    summary.with_own_regions += 1;
                }
                summary.physical_pages += t.physical_pages as u64;
            }
            Verdict::Diverged(d) => {
                summary.elapsed = start.elapsed();
                let signature = d.signature(&program);
                let seen = shrunk_per_signature.entry(signature.clone()).or_default();
                if *seen >= SHRINKS_PER_SIGNATURE {
                    if let Some(f) = findings.iter_mut().find(|f| f.signature == signature) {
                        f.count += 1;
                    }
                } else {
                    *seen += 1;
                    let finding = confirm(executor, index, &program, d)
                        .map_err(|e| keep_program(e, config, index, &program))?;
                    match findings.iter_mut().find(|f| f.key() == finding.key()) {
                        Some(f) => f.count += 1,
                        None => findings.push(finding),
                    }
                }
                if !config.keep_going {
                    config.stop.store(true, Ordering::Relaxed);
                    return Ok((summary, findings));
                }
            }
        }
        index += step;
        summary.elapsed = start.elapsed();
        progress(&summary);
    }
    summary.elapsed = start.elapsed();
    Ok((summary, findings))
}

/// Runs one campaign as `executors.len()` jobs at once, each on its own executor and its own
/// share of the program indices (together, the programs one job would run), and merges what
/// they find: one summary, findings deduplicated as `--keep-going` does. The first divergence
/// stops every job unless `keep_going`; an error in any job stops them all and is returned.
/// `progress` sees the merged summary after every program of any job.
pub fn run_jobs(
    executors: &mut [Executor],
    config: &CampaignConfig,
    progress: impl Fn(&Summary) + Sync,
) -> Result<(Summary, Vec<Finding>), HarnessError> {
    let jobs = executors.len() as u64;
    if jobs == 1 {
        return run(&mut executors[0], config, progress);
    }
    let live: Mutex<Vec<Summary>> = Mutex::new(vec![Summary::default(); executors.len()]);
    let results: Vec<Result<(Summary, Vec<Finding>), HarnessError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = executors
            .iter_mut()
            .enumerate()
            .map(|(job, executor)| {
                let config = CampaignConfig {
                    share: Share {
                        job: job as u64,
                        jobs,
                    },
                    ..config.clone()
                };
                let (live, progress) = (&live, &progress);
                scope.spawn(move || {
                    executor.keep_caller_beside();
                    let result = run(executor, &config, |s| {
                        let merged = {
                            let mut all = live.lock().unwrap_or_else(|e| e.into_inner());
                            all[job] = s.clone();
                            merge_summaries(&all)
                        };
                        progress(&merged);
                    });
                    if result.is_err() {
                        config.stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(HarnessError::Program("a campaign job panicked".into()))
                })
            })
            .collect()
    });
    let mut summaries = Vec::new();
    let mut findings: Vec<Finding> = Vec::new();
    for result in results {
        let (summary, found) = result?;
        summaries.push(summary);
        for f in found {
            match findings.iter_mut().find(|g| g.key() == f.key()) {
                Some(g) => g.count += f.count,
                None => findings.push(f),
            }
        }
    }
    findings.sort_by_key(|f| f.index);
    Ok((merge_summaries(&summaries), findings))
}

/// Saves the program that an error of the environment cut short (in `config.out`), and names
/// the file in the error: the user can replay it once the machine is quiet, and tell an
/// accident from a runtime's crash.
fn keep_program(
    error: HarnessError,
    config: &CampaignConfig,
    index: u64,
    program: &Program,
) -> HarnessError {
    let (HarnessError::Environment(message), Some(out)) = (&error, &config.out) else {
        return error;
    };
    let mut kept = program.clone();
    let header = [
        format!(
            " cut short by the environment in: cowcheck run --seed {} (program {index})",
            config.seed
        ),
        format!(" {message}"),
    ];
    for (k, text) in header.into_iter().enumerate() {
        kept.comments.insert(
            k,
            crate::program::Comment {
                before_op: 0,
                inline: false,
                text: Some(text),
            },
        );
    }
    let text = kept.to_string();
    match crate::files::save_fresh(
        out,
        &format!("cowcheck-environment-{}-{index}", config.seed),
        "trace",
        text.as_bytes(),
    ) {
        Ok(path) => HarnessError::Environment(format!(
            "{message} (the program is saved in {}: `cowcheck replay` it)",
            path.display()
        )),
        Err(_) => error,
    }
}

/// The totals of jobs that ran side by side: counts add up, cells unite, time is the longest.
fn merge_summaries(all: &[Summary]) -> Summary {
    let mut m = Summary::default();
    for s in all {
        m.programs += s.programs;
        m.ops += s.ops;
        m.forks += s.forks;
        m.racing_forks += s.racing_forks;
        m.clones += s.clones;
        m.thread_ops += s.thread_ops;
        m.thread_forks += s.thread_forks;
        for (m, n) in m.races.iter_mut().zip(s.races) {
            *m += n;
        }
        for (m, n) in (m.racing_forks_by_kind.iter_mut()).zip(s.racing_forks_by_kind) {
            *m += n;
        }
        m.pages_compared += s.pages_compared;
        m.snapshots += s.snapshots;
        m.with_own_regions += s.with_own_regions;
        m.physical_pages += s.physical_pages;
        m.elapsed = m.elapsed.max(s.elapsed);
        for (k, n) in s.programs_with.iter().enumerate() {
            m.programs_with[k] += n;
        }
        m.cells.union(&s.cells);
    }
    m
}

/// Makes a finding of a divergence, or refuses it as the environment's doing:
/// - a fork or a plain mmap that failed for lack of a resource (EAGAIN, ENOMEM, EMFILE,
///   ENFILE) where the model says it succeeds is a limit of the machine or the user, named in
///   the error;
/// - the program runs `RERUNS` more times; a process that died without a report (killed by
///   SIGKILL from outside, or the OOM killer) in a divergence that never shows again is an
///   event of the environment;
/// - anything else is a finding, nondeterministic ("seen N times in M runs") when some rerun
///   agreed. Then it is shrunk and explained.
pub fn confirm(
    executor: &mut Executor,
    index: u64,
    program: &Program,
    divergence: Divergence,
) -> Result<Finding, HarnessError> {
    let at = format!(
        "program {index}, op {} ({})",
        divergence.op_index + 1,
        crate::check::expectations::op_text(program, divergence.op_index)
    );
    if let Some(cause) = resource_cause(program, &divergence) {
        return Err(HarnessError::Environment(format!(
            "{at}: {cause}; not a kernel finding"
        )));
    }
    let signature = divergence.signature(program);
    let mut seen = 1;
    // The reruns' other divergences: the first, and how many reruns had its signature.
    let mut other: Option<(Divergence, u32)> = None;
    for _ in 0..RERUNS {
        if let (Verdict::Diverged(d), _) = crate::trial::run(executor, program, None)? {
            let s = d.signature(program);
            if s == signature {
                seen += 1;
            } else if let Some((first, n)) = other.as_mut() {
                if first.signature(program) == s {
                    *n += 1;
                }
            } else {
                other = Some((d, 1));
            }
        }
    }
    if seen == 1
        && let Some(how) = unreported_death(&divergence)
    {
        // A death without a report that never came back is the environment's, if the program
        // then ran clean. If it diverged another way in the reruns, that divergence is the
        // finding (found under qemu-user: a racing program whose first run lost a process and
        // whose reruns all diverged at an earlier op was refused as a kill from outside, and
        // ended the campaign with exit 2).
        let Some((again, n)) = other else {
            return Err(HarnessError::Environment(format!(
                "{at}: {how}, and the program did not diverge in {RERUNS} reruns: a process of the run was killed from outside (kill -9, the OOM killer), not a kernel finding"
            )));
        };
        let mut finding = explain(executor, index, program, again)?;
        finding.seen = n;
        finding.runs = RERUNS;
        return Ok(finding);
    }
    let mut finding = explain(executor, index, program, divergence)?;
    finding.seen = seen;
    finding.runs = 1 + RERUNS;
    Ok(finding)
}

/// A call that allocates a resource (a fork's process, a plain mmap's memory and, for
/// /dev/zero, its descriptor) and failed for lack of it where the model says it succeeds.
/// Only these: an errno of mprotect, madvise or mremap, an mmap at a chosen address, or a call
/// with bad arguments is semantics, and its divergence a finding (qemu-user's ENOMEM for a
/// zero-length mprotect is one).
fn resource_cause(program: &Program, d: &Divergence) -> Option<String> {
    use crate::program::Op;
    use crate::program::outcome::Outcome;
    use crate::program::tables::errno_name;
    let Difference::Outcome {
        expected,
        observed: Outcome::Failed { errno },
        ..
    } = &d.difference
    else {
        return None;
    };
    let allocating = match program.ops.get(d.op_index) {
        Some(Op::Fork { .. }) => matches!(*errno, libc::EAGAIN | libc::ENOMEM),
        Some(Op::Map { .. }) => matches!(
            *errno,
            libc::EAGAIN | libc::ENOMEM | libc::EMFILE | libc::ENFILE
        ),
        _ => false,
    };
    (allocating && !matches!(expected, Outcome::Failed { .. })).then(|| {
        format!(
            "the call failed with {} where it must succeed: the run ran out of {}",
            errno_name(*errno).unwrap_or("a resource errno"),
            crate::limits::named_by(*errno)
        )
    })
}

/// A process that the model says lives died without reporting a signal of its own.
fn unreported_death(d: &Divergence) -> Option<String> {
    use crate::program::outcome::Outcome;
    match &d.difference {
        // Whatever the model expected (even a death by SIGSEGV: the kill may land first).
        Difference::Outcome {
            proc,
            observed: Outcome::Killed { death, .. },
            ..
        } if death.signal == 0 => Some(format!("{proc} vanished without a report")),
        Difference::Liveness {
            proc,
            expected_alive: true,
        } => Some(format!("{proc} is gone without a report")),
        _ => None,
    }
}

/// Shrinks a diverging program to the smallest that still diverges the same way, and fetches
/// the bytes that the report shows.
pub fn explain(
    executor: &mut Executor,
    index: u64,
    program: &Program,
    divergence: Divergence,
) -> Result<Finding, HarnessError> {
    let signature = divergence.signature(program);
    // Shrinking stops trying new candidates after a budget: a hang costs a whole op deadline
    // per candidate, and an emulator can be slow.
    let budget_end = Instant::now() + SHRINK_BUDGET;
    let shrunk = shrink::shrink(program, |cand| {
        Instant::now() < budget_end
            && matches!(
                crate::trial::run(executor, cand, None),
                Ok((Verdict::Diverged(d), _)) if d.signature(cand) == signature
            )
    });
    // Re-check the shrunk program to report its own divergence (same shape, its own numbers).
    let (verdict, run) = crate::trial::run(executor, &shrunk, None)?;
    let (shrunk, divergence, run) = match verdict {
        Verdict::Diverged(d) => (shrunk, d, run),
        // Not reproducible on a rerun: report the original as it was.
        Verdict::Agreed(_) => {
            let (v, run) = crate::trial::run(executor, program, None)?;
            match v {
                Verdict::Diverged(d) => (program.clone(), d, run),
                Verdict::Agreed(_) => (program.clone(), divergence, run),
            }
        }
    };
    let pages = crate::trial::page_diffs(executor, &shrunk, &run, &divergence);
    Ok(Finding {
        index,
        original: program.clone(),
        signature: divergence.signature(&shrunk),
        shrunk,
        divergence,
        pages,
        count: 1,
        seen: 1,
        runs: 1,
    })
}

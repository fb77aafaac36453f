//! `cowcheck bench`: programs per second, and the time per program held against the bare cost
//! of the forks that the programs make (fork + exit + wait, measured in the executor's own
//! process image in the same run). Rounds alternate between the two so that machine noise
//! falls on both alike; medians are reported.

use std::fmt;
use std::time::{Duration, Instant};

use crate::check::Verdict;
use crate::kernel::{Executor, HarnessError};
use crate::program::Program;
use crate::program::generate::{GenConfig, random_program};

/// The figures of one bench run.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub programs: u64,
    pub rounds: usize,
    /// Median over rounds of the mean wall time per program, in microseconds (checking
    /// included: executor, model, comparison).
    pub per_program_us: f64,
    pub programs_per_sec: f64,
    /// Mean forks per program, the fresh root included.
    pub forks_per_program: f64,
    pub ops_per_program: f64,
    /// Median bare fork+exit+wait, microseconds.
    pub bare_fork_us: f64,
    /// per_program_us / (forks_per_program * bare_fork_us): the median time per program
    /// against the median bare cost of the forks it makes.
    pub ratio: f64,
    /// The median over rounds of (the round's mean time per program) / (the round's forks
    /// per program * the median bare fork measured right after the round). Noisier than
    /// `ratio` here: the bare fork's median jumps between ~125 and ~150 us from one round to
    /// the next (whether the child runs on the parent's CPU), independently of the programs.
    pub paired_ratio: f64,
    /// Median over rounds of the mean time per program that the front waited for the
    /// executor (the kernel side: process tree, ops, snapshots, less what overlapped the
    /// model), microseconds.
    pub kernel_us: f64,
    /// The model and the comparison in the front, microseconds; they run while the executor
    /// runs the next program.
    pub model_us: f64,
    pub divergences: u64,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cowcheck bench: {} programs in {} rounds",
            self.programs, self.rounds
        )?;
        writeln!(
            f,
            "  programs per second          {:.0}",
            self.programs_per_sec
        )?;
        writeln!(
            f,
            "  time per program (median)    {:.1} us",
            self.per_program_us
        )?;
        writeln!(f, "    waiting for the executor   {:.1} us", self.kernel_us)?;
        writeln!(
            f,
            "    model and check            {:.1} us (beside the next program's kernel run)",
            self.model_us
        )?;
        writeln!(
            f,
            "  ops per program              {:.1}",
            self.ops_per_program
        )?;
        writeln!(
            f,
            "  forks per program (+root)    {:.2}",
            self.forks_per_program
        )?;
        writeln!(
            f,
            "  bare fork+exit+wait (median) {:.1} us",
            self.bare_fork_us
        )?;
        writeln!(
            f,
            "  ratio                        {:.2}x the bare cost of the programs' forks",
            self.ratio
        )?;
        writeln!(
            f,
            "    median of rounds' ratios   {:.2}x (each round against the bare forks after it)",
            self.paired_ratio
        )?;
        if self.divergences > 0 {
            writeln!(f, "  divergences                  {}", self.divergences)?;
        }
        Ok(())
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

/// Times `programs` programs of the campaign `seed` (or `fixed`, again and again) in rounds,
/// alternating with bare forks.
pub fn measure(
    executor: &mut Executor,
    programs: u64,
    seed: u64,
    core_only: bool,
    fixed: Option<&Program>,
) -> Result<BenchReport, HarnessError> {
    let generator = GenConfig {
        features: without_hugetlb(executor.hello.features),
        core_only,
        ..GenConfig::default()
    };
    let rounds = 20usize.min(programs as usize).max(1);
    let per_round = programs.div_ceil(rounds as u64);
    // Warm up both paths.
    let program = |index: u64| match fixed {
        Some(p) => p.clone(),
        None => random_program(seed, index, generator),
    };
    for i in 0..20 {
        crate::trial::run(executor, &program(u64::MAX - i), None)?;
    }
    executor.fork_bench(100)?;
    let (mut round_us, mut bare_us) = (Vec::new(), Vec::new());
    let (mut kernel_round, mut model_round) = (Vec::new(), Vec::new());
    let (mut forks, mut ops, mut done, mut divergences) = (0u64, 0u64, 0u64, 0u64);
    let mut ratios = Vec::new();
    let mut index = 0u64;
    for _ in 0..rounds {
        let batch: Vec<_> = (0..per_round).map(|k| program(index + k)).collect();
        index += per_round;
        let t = Instant::now();
        let (mut model_time, mut wait_time) = (Duration::ZERO, Duration::ZERO);
        // As `cowcheck run` does it: the next program is queued in the executor while the
        // model checks this one.
        executor.submit(&batch[0], &[])?;
        for (k, p) in batch.iter().enumerate() {
            if let Some(next) = batch.get(k + 1) {
                executor.submit(next, &[])?;
            }
            let w = Instant::now();
            let run = executor.collect()?;
            wait_time += w.elapsed();
            let m = Instant::now();
            let verdict = crate::trial::judge(executor, p, &run, None)?;
            model_time += m.elapsed();
            if let Verdict::Diverged(_) = verdict {
                divergences += 1;
            }
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / batch.len() as f64;
        let round = per(t.elapsed());
        round_us.push(round);
        model_round.push(per(model_time));
        kernel_round.push(per(wait_time));
        let round_forks: u64 = batch.iter().map(|p| p.forks() as u64 + 1).sum();
        forks += round_forks;
        ops += batch.iter().map(|p| p.ops.len() as u64).sum::<u64>();
        done += batch.len() as u64;
        let mut samples: Vec<f64> = executor
            .fork_bench(200)?
            .into_iter()
            .map(|ns| ns as f64 / 1e3)
            .collect();
        let bare = median(&mut samples);
        bare_us.push(bare);
        // Each round against the bare forks measured right after it (`paired_ratio`).
        let round_forks_per_program = round_forks as f64 / batch.len() as f64;
        ratios.push(round / (round_forks_per_program * bare));
    }
    let per_program_us = median(&mut round_us);
    let bare_fork_us = median(&mut bare_us);
    let forks_per_program = forks as f64 / done as f64;
    Ok(BenchReport {
        programs: done,
        rounds,
        per_program_us,
        programs_per_sec: 1e6 / per_program_us,
        forks_per_program,
        ops_per_program: ops as f64 / done as f64,
        bare_fork_us,
        ratio: per_program_us / (forks_per_program * bare_fork_us),
        paired_ratio: median(&mut ratios),
        kernel_us: median(&mut kernel_round),
        model_us: median(&mut model_round),
        divergences,
    })
}

/// What `bench --jobs N` measured, in alternating rounds (so that machine noise falls on all
/// alike), medians: programs per second of one job kept on one core, of N jobs kept on N cores
/// (one each), and of one job free on every CPU (as `run --jobs 1` runs it).
#[derive(Clone, Debug)]
pub struct JobsReport {
    pub jobs: usize,
    /// The cores the N jobs were given (N, or the CPUs there are if fewer).
    pub cores: usize,
    /// The CPUs this process may use.
    pub cpus: usize,
    pub rounds: usize,
    pub programs_per_round_and_job: u64,
    /// One job free (`run --jobs 1`).
    pub one_job_per_sec: f64,
    /// N jobs, one core each.
    pub all_jobs_per_sec: f64,
    /// One job kept on one core: its executor, process trees, racing threads and the front's
    /// thread that checks its programs.
    pub one_core_per_sec: f64,
    /// CPUs the whole machine kept busy during the rounds (medians, from `/proc/stat`; `None`
    /// where it cannot be read): what one job already uses of the CPUs bounds what N can add.
    pub one_job_busy_cpus: Option<f64>,
    pub all_jobs_busy_cpus: Option<f64>,
    pub one_core_busy_cpus: Option<f64>,
}

impl JobsReport {
    /// How many times the programs per second of one free job N jobs make (what `--jobs N`
    /// gains over `--jobs 1` on this machine).
    pub fn scaling(&self) -> f64 {
        self.all_jobs_per_sec / self.one_job_per_sec
    }

    /// How many times the programs per second of one core N cores make (one job each): how
    /// cowcheck's throughput scales with the cores it is given.
    pub fn core_scaling(&self) -> f64 {
        self.all_jobs_per_sec / self.one_core_per_sec
    }
}

impl fmt::Display for JobsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cowcheck bench --jobs {}: {} rounds of {} programs per job, alternating 1 job on 1 core, {} jobs on {} cores and 1 job free on {} CPUs",
            self.jobs,
            self.rounds,
            self.programs_per_round_and_job,
            self.jobs,
            self.cores,
            self.cpus
        )?;
        writeln!(
            f,
            "  1 job on 1 core              {:.0} programs/s (median)",
            self.one_core_per_sec
        )?;
        writeln!(
            f,
            "  {} jobs on {} cores            {:.0} programs/s (median)",
            self.jobs, self.cores, self.all_jobs_per_sec
        )?;
        writeln!(
            f,
            "  per-core scaling             {:.2}x one core ({} cores against 1)",
            self.core_scaling(),
            self.cores
        )?;
        writeln!(
            f,
            "  1 job                        {:.0} programs/s (median; free on all {} CPUs, as `run --jobs 1`)",
            self.one_job_per_sec, self.cpus
        )?;
        writeln!(
            f,
            "  scaling                      {:.2}x one free job (`--jobs {}` against `--jobs 1`, {} CPUs here)",
            self.scaling(),
            self.jobs,
            self.cpus
        )?;
        if let (Some(core), Some(one), Some(all)) = (
            self.one_core_busy_cpus,
            self.one_job_busy_cpus,
            self.all_jobs_busy_cpus,
        ) {
            writeln!(
                f,
                "  busy CPUs                    {core:.2} with 1 job on 1 core, {one:.2} with 1 free job, {all:.2} with {} (the whole machine's, /proc/stat: on a quiet machine, N jobs make at most about CPUs / {one:.2} times one free job's programs)",
                self.jobs
            )?;
        }
        Ok(())
    }
}

/// The machine's CPU time from `/proc/stat`'s `cpu` line: (busy, idle) in clock ticks, idle
/// counting iowait. `None` where it cannot be read.
fn cpu_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    // user nice system idle iowait irq softirq steal (guest time is counted in user already).
    if v.len() < 8 {
        return None;
    }
    Some((v[0] + v[1] + v[2] + v[5] + v[6] + v[7], v[3] + v[4]))
}

/// CPUs kept busy between two `cpu_ticks` readings, out of `cpus`.
fn busy_cpus(before: Option<(u64, u64)>, after: Option<(u64, u64)>, cpus: usize) -> Option<f64> {
    let ((b0, i0), (b1, i1)) = (before?, after?);
    let (busy, idle) = (b1.checked_sub(b0)?, i1.checked_sub(i0)?);
    (busy + idle > 0).then(|| cpus as f64 * busy as f64 / (busy + idle) as f64)
}

/// Runs `programs` programs of `seed` on each executor at once (its own share of indices),
/// pipelined as `cowcheck run` does; returns the wall time.
fn round_on(
    executors: &mut [Executor],
    first: u64,
    programs: u64,
    generator: GenConfig,
    seed: u64,
) -> Result<Duration, HarnessError> {
    let jobs = executors.len() as u64;
    let t = Instant::now();
    let results: Vec<Result<(), HarnessError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = executors
            .iter_mut()
            .enumerate()
            .map(|(job, executor)| {
                scope.spawn(move || {
                    executor.keep_caller_beside();
                    let batch: Vec<Program> = (0..programs)
                        .map(|k| random_program(seed, first + k * jobs + job as u64, generator))
                        .collect();
                    executor.submit(&batch[0], &[])?;
                    for (k, p) in batch.iter().enumerate() {
                        if let Some(next) = batch.get(k + 1) {
                            executor.submit(next, &[])?;
                        }
                        let run = executor.collect()?;
                        crate::trial::judge(executor, p, &run, None)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(HarnessError::Program("a bench job panicked".into())))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(t.elapsed())
}

/// `bench --jobs N`: rounds alternate between one executor kept on one core (`one_core`,
/// `ExecutorConfig::for_job_within`), N at once, one core each (`executors`), and one free
/// (`one`, started as `run --jobs 1` starts it). The caller keeps the front's thread of each
/// pinned job beside it (`round_on`).
pub fn measure_jobs(
    one_core: &mut Executor,
    one: &mut Executor,
    executors: &mut [Executor],
    cores: usize,
    programs: u64,
    seed: u64,
    core_only: bool,
) -> Result<JobsReport, HarnessError> {
    let generator = GenConfig {
        features: without_hugetlb(executors[0].hello.features),
        core_only,
        ..GenConfig::default()
    };
    let jobs = executors.len();
    let rounds = 10usize;
    let per_round = (programs / rounds as u64).max(10);
    round_on(
        std::slice::from_mut(one_core),
        u64::MAX / 2,
        20,
        generator,
        seed,
    )?;
    round_on(std::slice::from_mut(one), u64::MAX / 2, 20, generator, seed)?;
    round_on(executors, u64::MAX / 2, 20, generator, seed)?;
    let (mut single, mut all, mut core) = (Vec::new(), Vec::new(), Vec::new());
    let (mut single_busy, mut all_busy, mut core_busy) = (Vec::new(), Vec::new(), Vec::new());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut first = 0u64;
    for _ in 0..rounds {
        let t = cpu_ticks();
        let d = round_on(
            std::slice::from_mut(one_core),
            first,
            per_round,
            generator,
            seed,
        )?;
        core_busy.extend(busy_cpus(t, cpu_ticks(), cpus));
        core.push(per_round as f64 / d.as_secs_f64());
        first += per_round;
        let t = cpu_ticks();
        let d = round_on(std::slice::from_mut(one), first, per_round, generator, seed)?;
        single_busy.extend(busy_cpus(t, cpu_ticks(), cpus));
        single.push(per_round as f64 / d.as_secs_f64());
        first += per_round;
        let t = cpu_ticks();
        let d = round_on(executors, first, per_round, generator, seed)?;
        all_busy.extend(busy_cpus(t, cpu_ticks(), cpus));
        all.push((per_round * jobs as u64) as f64 / d.as_secs_f64());
        first += per_round * jobs as u64;
    }
    let busy = |v: &mut Vec<f64>| (v.len() == rounds).then(|| median(v));
    Ok(JobsReport {
        jobs,
        cores,
        cpus,
        rounds,
        programs_per_round_and_job: per_round,
        one_job_per_sec: median(&mut single),
        all_jobs_per_sec: median(&mut all),
        one_core_per_sec: median(&mut core),
        one_job_busy_cpus: busy(&mut single_busy),
        all_jobs_busy_cpus: busy(&mut all_busy),
        one_core_busy_cpus: busy(&mut core_busy),
    })
}

/// The benchmark's default workload makes no hugetlb maps, as `run` without --hugetlb
/// (docs/SEMANTICS.md L9: the huge page pool is the whole machine's).
fn without_hugetlb(f: crate::program::features::Features) -> crate::program::features::Features {
    crate::program::features::Features {
        hugetlb: false,
        ..f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Busy CPUs are the busy share of the ticks between two readings, times the CPUs; a
    /// reading that is missing or goes backwards gives none.
    #[test]
    fn busy_cpus_are_the_busy_share_of_the_ticks() {
        assert_eq!(busy_cpus(Some((100, 100)), Some((170, 130)), 2), Some(1.4));
        assert_eq!(busy_cpus(Some((100, 100)), Some((100, 200)), 2), Some(0.0));
        assert_eq!(busy_cpus(None, Some((1, 1)), 2), None);
        assert_eq!(busy_cpus(Some((5, 5)), Some((4, 6)), 2), None);
        assert_eq!(busy_cpus(Some((5, 5)), Some((5, 5)), 2), None);
        let (busy, idle) = cpu_ticks().expect("/proc/stat on Linux");
        assert!(busy + idle > 0);
    }
}

//! The fault-injection campaign: campaigns whose processes are killed from outside at random
//! times, as a busy CI machine (the OOM killer, a stray `kill`, Ctrl-C) does to them. Three
//! kinds, `COWCHECK_CHAOS_RUNS` runs each (default 100):
//!
//! - (a) SIGKILL to a random worker;
//! - (b) SIGKILL to a random process of the tree (front, executor, guardian, zygote, worker);
//! - (c) SIGINT or SIGTERM to the front's process group (Ctrl-C, `kill -TERM -PGID`).
//!
//! What must hold: no run exits 1 with a divergence that does not reproduce (every saved
//! finding is replayed and must diverge again), no process of a run outlives it, and no file is
//! left in the run's temporary directory (`TMPDIR`), /dev/shm or the output directory (but
//! saved findings).
//!
//! It takes minutes, so it is `#[ignore]`d in `cargo test`; run it with
//! `cargo test --release --test chaos -- --ignored --nocapture`. The signal matrix in
//! tests/lifetime.rs covers each kind once in every `cargo test`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::tree::*;
use common::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Worker,
    AnyProcess,
    FrontGroup,
}

/// What a run ended with and what it left.
#[derive(Default, Debug)]
struct Tally {
    runs: usize,
    exit0: usize,
    exit1: usize,
    exit2: usize,
    by_signal: usize,
    /// exit 1 whose saved finding does not diverge again on replay.
    false_divergences: Vec<String>,
    leftover_processes: Vec<String>,
    leftover_files: Vec<String>,
    /// The signal landed after the run had ended (it ended too quickly).
    missed: usize,
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn one_run(kind: Kind, i: usize, rng: &mut Rng, tally: &mut Tally) {
    let out = tmpdir(&format!("chaos-{kind:?}-{i}"));
    let seed = (1 + rng.below(1_000_000)).to_string();
    // The run's own temporary directory: whatever it leaves there is its own (the machine's
    // /tmp also sees other programs').
    let tmp = tmpdir(&format!("chaos-tmp-{kind:?}-{i}"));
    let shm_before = listing(Path::new("/dev/shm"));
    let mut tree = Tree::start_with_env(
        &format!("chaos-{kind:?}-{i}"),
        &[
            "run",
            "--time",
            "3",
            "--seed",
            &seed,
            "--out",
            out.to_str().unwrap(),
        ],
        &[("TMPDIR", tmp.as_path())],
    );
    tally.runs += 1;
    std::thread::sleep(Duration::from_millis(150 + rng.below(2500)));
    let target = match roles(&tree) {
        None => None,
        Some((front, executor, helpers, workers)) => match kind {
            Kind::Worker => (!workers.is_empty())
                .then(|| workers[rng.below(workers.len() as u64) as usize])
                .map(|p| (p, libc::SIGKILL)),
            Kind::AnyProcess => {
                let mut all = vec![front, executor];
                all.extend(helpers);
                all.extend(workers);
                Some((all[rng.below(all.len() as u64) as usize], libc::SIGKILL))
            }
            Kind::FrontGroup => Some((
                -front,
                if rng.below(2) == 0 {
                    libc::SIGINT
                } else {
                    libc::SIGTERM
                },
            )),
        },
    };
    match target {
        // SAFETY: kill(2) on a process (or the group) of the run this test started.
        Some((pid, sig)) => unsafe {
            libc::kill(pid, sig);
        },
        None => tally.missed += 1,
    }
    let Some(status) = tree.wait(Duration::from_secs(60)) else {
        tally
            .leftover_processes
            .push(format!("run {i} ({kind:?}, seed {seed}) did not end"));
        return;
    };
    match status.code() {
        Some(0) => tally.exit0 += 1,
        Some(2) => tally.exit2 += 1,
        Some(1) => {
            tally.exit1 += 1;
            // A finding must reproduce: every saved trace diverges again on replay.
            for name in listing(&out) {
                if !name.starts_with("cowcheck-divergence-") || !name.ends_with(".trace") {
                    continue;
                }
                let path = out.join(&name);
                let replay = cowcheck(&["replay", path.to_str().unwrap()]);
                if replay.code() != 1 {
                    tally.false_divergences.push(format!(
                        "run {i} ({kind:?}, seed {seed}): {name} replays with exit {}",
                        replay.code()
                    ));
                }
            }
        }
        _ => tally.by_signal += 1,
    }
    let left = wait_until_gone(&tree.tag, Duration::from_secs(5));
    for p in &left {
        tally.leftover_processes.push(format!(
            "run {i} ({kind:?}, seed {seed}): pid {} `{}`",
            p.pid, p.cmdline
        ));
    }
    for name in listing(&tmp) {
        tally
            .leftover_files
            .push(format!("run {i}: {}", tmp.join(name).display()));
    }
    for name in listing(Path::new("/dev/shm")).difference(&shm_before) {
        if name.contains("cowcheck") {
            tally
                .leftover_files
                .push(format!("run {i}: /dev/shm/{name}"));
        }
    }
    for name in listing(&out) {
        // A finding's trace and reproducer, or the program an accident of the environment cut
        // short (kept so that nothing is lost).
        let saved = (name.starts_with("cowcheck-divergence-")
            && (name.ends_with(".trace") || name.ends_with(".c")))
            || (name.starts_with("cowcheck-environment-") && name.ends_with(".trace"));
        let size = std::fs::metadata(out.join(&name)).map_or(0, |m| m.len());
        if !saved || size == 0 {
            tally.leftover_files.push(format!(
                "run {i}: {} ({size} bytes)",
                out.join(&name).display()
            ));
        }
    }
}

#[test]
#[ignore = "minutes long: cargo test --release --test chaos -- --ignored --nocapture"]
fn processes_killed_from_outside_are_never_a_finding_and_leave_nothing() {
    let runs: usize = std::env::var("COWCHECK_CHAOS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut rng = Rng::new(
        std::env::var("COWCHECK_CHAOS_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
    );
    let mut failed = Vec::new();
    for kind in [Kind::Worker, Kind::AnyProcess, Kind::FrontGroup] {
        let started = Instant::now();
        let mut tally = Tally::default();
        for i in 0..runs {
            one_run(kind, i, &mut rng, &mut tally);
        }
        eprintln!(
            "chaos {kind:?}: {} runs in {:.0} s: exit 0: {}, exit 1: {}, exit 2: {}, by signal: {}, signal missed: {}; false divergences: {}, processes left: {}, files left: {}",
            tally.runs,
            started.elapsed().as_secs_f64(),
            tally.exit0,
            tally.exit1,
            tally.exit2,
            tally.by_signal,
            tally.missed,
            tally.false_divergences.len(),
            tally.leftover_processes.len(),
            tally.leftover_files.len()
        );
        failed.extend(tally.false_divergences);
        failed.extend(tally.leftover_processes);
        failed.extend(tally.leftover_files);
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

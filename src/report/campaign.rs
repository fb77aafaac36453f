//! What a campaign prints: its summary, its findings (text and JSON), and the header a saved
//! finding starts with. Pure formatting of `check::finding` values.

use std::fmt::Write;
use std::path::Path;

use crate::check::finding::{Finding, Summary};
use crate::program::OpKind;
use crate::program::features::Features;
use crate::program::physical::Channels;

/// What the kernel side said of itself, as a report names it.
#[derive(Clone, Debug)]
pub struct Target {
    pub release: String,
    pub machine: String,
    pub page_size: usize,
    pub features: Features,
    /// Which parts of the physical channel ran.
    pub physical: Channels,
    /// The executor's command line (`cowcheck __executor`, or under a runtime).
    pub executor: String,
}

/// The summary a campaign prints at its end.
pub fn summary_text(s: &Summary, target: &Target, seed: u64) -> String {
    let mut out = String::new();
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let _ = writeln!(out, "summary");
    let _ = writeln!(
        out,
        "  programs        {} ({:.0}/s)",
        s.programs,
        s.programs as f64 / secs
    );
    let _ = writeln!(out, "  ops             {}", s.ops);
    let _ = writeln!(out, "  forks           {}", s.forks);
    if s.racing_forks > 0 {
        let _ = writeln!(
            out,
            "  racing forks    {} (forks inside a racing window)",
            s.racing_forks
        );
    }
    if s.clones > 0 {
        let _ = writeln!(out, "  clone children  {} (clone(CLONE_VM), T30)", s.clones);
    }
    if s.thread_ops > 0 {
        let _ = writeln!(
            out,
            "  thread ops      {} (ops run by op threads), {} of them forks",
            s.thread_ops, s.thread_forks
        );
    }
    if s.races.iter().any(|&n| n > 0) {
        let kinds: Vec<String> = (crate::program::RaceKind::ALL.iter())
            .zip(s.races)
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect();
        let _ = writeln!(
            out,
            "  races           {} (threads started)",
            kinds.join(", ")
        );
        let forks: Vec<String> = (crate::program::RaceKind::ALL.iter())
            .zip(s.racing_forks_by_kind)
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect();
        let _ = writeln!(
            out,
            "  forks racing    {} (forks while a thread of that kind raced in the forking process)",
            forks.join(", ")
        );
    }
    let _ = writeln!(out, "  snapshots       {}", s.snapshots);
    let _ = writeln!(out, "  pages compared  {}", s.pages_compared);
    let _ = writeln!(out, "  physical pages  {}", s.physical_pages);
    for (name, state) in target.physical.list() {
        let state = match state {
            Ok(()) => "ran".to_string(),
            Err(why) => format!("skipped: {why}"),
        };
        let _ = writeln!(out, "  channel {name:<13} {state}");
    }
    let _ = writeln!(out, "  elapsed         {:.1} s", secs);
    let _ = writeln!(
        out,
        "  kernel          {} {}",
        target.release, target.machine
    );
    let _ = writeln!(out, "  page size       {}", target.page_size);
    let _ = writeln!(out, "  seed            {seed}");
    let ops: Vec<String> = OpKind::ALL
        .iter()
        .zip(s.programs_with)
        .map(|(k, n)| {
            format!(
                "{} {:.0}%",
                k.name(),
                100.0 * n as f64 / s.programs.max(1) as f64
            )
        })
        .collect();
    let _ = writeln!(out, "  programs with   {}", ops.join(", "));
    let _ = writeln!(
        out,
        "  semantic cells  {} of {} (op x mapping kind x page state x sharing)",
        s.cells.len(),
        crate::check::coverage::CELLS
    );
    // The (operation x mapping kind) projection: how many semantic cells each pair reached.
    let _ = writeln!(out, "  cells reached per operation and mapping kind:");
    let kinds = crate::program::MapKind::ALL;
    let header: Vec<String> = kinds.iter().map(|k| format!("{:>13}", k.name())).collect();
    let _ = writeln!(out, "    {:<8}{}{:>13}", "", header.join(""), "(none)");
    for op in OpKind::ALL {
        let count = |kind: Option<crate::program::MapKind>| {
            s.cells
                .iter()
                .filter(|c| c.op == op && c.kind == kind)
                .count()
        };
        let row: Vec<String> = kinds
            .iter()
            .map(|k| format!("{:>13}", count(Some(*k))))
            .collect();
        let _ = writeln!(
            out,
            "    {:<8}{}{:>13}",
            op.name(),
            row.join(""),
            count(None)
        );
    }
    let f = target.features;
    let missing: Vec<&str> = f
        .list()
        .into_iter()
        .filter(|(_, on)| !on)
        .map(|(n, _)| n)
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(
            out,
            "  not generated   {} (the kernel under test lacks them: probed at start)",
            missing.join(", ")
        );
    }
    out
}

/// The comment lines a saved finding starts with: how it was found (`found_by`, e.g.
/// "divergence found by: cowcheck run --seed 1 (program 4)"), where, its shape, how often it
/// showed, and how far it shrank.
pub fn finding_header(f: &Finding, found_by: &str, target: &Target) -> Vec<String> {
    vec![
        format!(" {found_by}"),
        format!(
            " kernel {} {}, page size {}, executor `{}`",
            target.release, target.machine, target.page_size, target.executor
        ),
        format!(" shape: {}", f.signature),
        format!(
            " seen in {} of {} runs of the original program{}",
            f.seen,
            f.runs,
            if f.nondeterministic() {
                " (nondeterministic)"
            } else {
                ""
            }
        ),
        format!(
            " shrunk from {} to {} ops; first seen after op {}",
            f.original.ops.len(),
            f.shrunk.ops.len(),
            f.divergence.op_index + 1
        ),
    ]
}

/// The finding's shrunk trace with `finding_header` as its first comments: what is saved.
pub fn annotated(f: &Finding, found_by: &str, target: &Target) -> crate::program::Program {
    let mut program = f.shrunk.clone();
    program.comments = finding_header(f, found_by, target)
        .into_iter()
        .map(|text| crate::program::Comment {
            before_op: 0,
            inline: false,
            text: Some(text),
        })
        .collect();
    program
}

/// A finding as the campaign prints it: the shrunk trace, the report, where it was saved.
pub fn finding_text(f: &Finding, path: &Path) -> String {
    let mut out = String::new();
    out.push('\n');
    if f.count > 1 {
        let _ = writeln!(
            out,
            "DIVERGENCE ({}), seen in {} programs",
            f.signature, f.count
        );
    } else {
        let _ = writeln!(out, "DIVERGENCE ({})", f.signature);
    }
    if f.nondeterministic() {
        let _ = writeln!(
            out,
            "nondeterministic: its program diverged this way in {} of {} runs (the first and {} reruns)",
            f.seen,
            f.runs,
            f.runs - 1
        );
    }
    let _ = writeln!(
        out,
        "shrunk trace ({} ops, from {}):",
        f.shrunk.ops.len(),
        f.original.ops.len()
    );
    for (i, op) in f.shrunk.ops.iter().enumerate() {
        let mark = if i == f.divergence.op_index {
            "  <-- first seen here"
        } else {
            ""
        };
        let _ = writeln!(out, "  {:>3}  {op}{mark}", i + 1);
    }
    out.push('\n');
    let _ = write!(
        out,
        "{}",
        super::divergence_text(&f.shrunk, &f.divergence, &f.pages)
    );
    out.push('\n');
    let _ = writeln!(out, "saved to {}", path.display());
    let _ = writeln!(out, "replay with: cowcheck replay {}", path.display());
    out
}

/// A finding as JSON (`run --json`).
pub fn finding_json(f: &Finding, saved: Option<&Path>) -> serde_json::Value {
    serde_json::json!({
        "signature": f.signature,
        "shape": f.shrunk.shape(),
        "count": f.count,
        "seen": f.seen,
        "runs": f.runs,
        "nondeterministic": f.nondeterministic(),
        "seen": f.seen,
        "runs": f.runs,
        "nondeterministic": f.nondeterministic(),
        "program_index": f.index,
        "op_index": f.divergence.op_index,
        "channel": f.divergence.channel(),
        "trace": f.shrunk.to_string(),
        "original_ops": f.original.ops.len(),
        "report": super::divergence_text(&f.shrunk, &f.divergence, &f.pages),
        "saved_to": saved.map(|p| p.display().to_string()),
    })
}

/// Which channels ran: `{"values": {"ran": true}, "pagemap": {"ran": true}, "pfn": {"ran":
/// false, "reason": "..."}, ...}`.
pub fn channels_json(c: &Channels) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("values".into(), serde_json::json!({ "ran": true }));
    for (name, state) in c.list() {
        let v = match state {
            Ok(()) => serde_json::json!({ "ran": true }),
            Err(why) => serde_json::json!({ "ran": false, "reason": why }),
        };
        m.insert(name.into(), v);
    }
    serde_json::Value::Object(m)
}

/// A campaign's summary as JSON (`run --json`).
pub fn summary_json(
    s: &Summary,
    target: &Target,
    seed: u64,
    f: Option<&Finding>,
    saved: Option<&Path>,
) -> serde_json::Value {
    let divergence = f.map(|f| finding_json(f, saved));
    serde_json::json!({
        "programs": s.programs,
        "ops": s.ops,
        "forks": s.forks,
        "racing_forks": s.racing_forks,
        "clones": s.clones,
        "races": (crate::program::RaceKind::ALL.iter())
            .zip(s.races)
            .map(|(k, n)| (k.name().to_string(), serde_json::json!(n)))
            .collect::<serde_json::Map<_, _>>(),
        "racing_forks_by_kind": (crate::program::RaceKind::ALL.iter())
            .zip(s.racing_forks_by_kind)
            .map(|(k, n)| (k.name().to_string(), serde_json::json!(n)))
            .collect::<serde_json::Map<_, _>>(),
        "thread_ops": s.thread_ops,
        "thread_forks": s.thread_forks,
        "snapshots": s.snapshots,
        "pages_compared": s.pages_compared,
        "physical_pages": s.physical_pages,
        "channels": channels_json(&target.physical),
        "elapsed_s": s.elapsed.as_secs_f64(),
        "kernel": { "release": target.release, "machine": target.machine },
        "page_size": target.page_size,
        "seed": seed,
        "programs_with": OpKind::ALL.iter().zip(s.programs_with).map(|(k, n)| (k.name().to_string(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
        "semantic_cells": s.cells.len(),
        "semantic_cells_reached": s.cells.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "divergence": divergence,
    })
}

//! `cowcheck replay` and `cowcheck model`: one trace, on kernel and model or on the model
//! alone, op by op.

use std::path::Path;

use cowcheck::check::Verdict;
use cowcheck::kernel::Executor;
use cowcheck::model::Model;
use cowcheck::program::{Op, Program, Span};
use cowcheck::report;

use crate::{ExecArgs, Fatal, executor_config, host_page_size, load_trace};

pub(crate) fn cmd_replay(
    file: &Path,
    program: Program,
    json: bool,
    exec: &ExecArgs,
) -> Result<u8, Fatal> {
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

pub(crate) fn cmd_model(file: &Path, page_size: Option<usize>) -> Result<u8, Fatal> {
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

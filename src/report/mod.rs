//! Human-readable text for divergences, outcomes and summaries. Pure formatting: no I/O.

use std::fmt::Write;

pub mod campaign;
pub mod repro_c;

use crate::check::{Difference, Divergence, PageDiff};
use crate::program::Program;
use crate::program::outcome::Region;

/// "0xaa×4096" or "0xaa×100 0x00×3996": a run-length summary of a page's bytes.
pub fn describe_bytes(b: &[u8]) -> String {
    let mut runs: Vec<(u8, usize)> = Vec::new();
    for &x in b {
        match runs.last_mut() {
            Some((v, n)) if *v == x => *n += 1,
            _ => runs.push((x, 1)),
        }
    }
    if runs.len() > 6 {
        let distinct = {
            let mut s = b.to_vec();
            s.sort_unstable();
            s.dedup();
            s.len()
        };
        return format!(
            "{} bytes in {} runs of {} distinct values, starting {:02x} {:02x} {:02x} {:02x}",
            b.len(),
            runs.len(),
            distinct,
            b[0],
            b.get(1).copied().unwrap_or(0),
            b.get(2).copied().unwrap_or(0),
            b.get(3).copied().unwrap_or(0)
        );
    }
    runs.iter()
        .map(|(v, n)| format!("0x{v:02x}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn regions_text(r: &[Region]) -> String {
    if r.is_empty() {
        return "    (nothing mapped)\n".into();
    }
    r.iter()
        .map(|r| format!("    {}\n", r.describe()))
        .collect()
}

/// Expected against observed, side by side, 16 bytes a row, only rows that differ (at most 12).
pub fn hex_side_by_side(expected: &[u8], observed: &[u8]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "    offset  {:<47}   {:<47}",
        "expected (model)", "observed (kernel)"
    );
    let rows = expected.len().max(observed.len()).div_ceil(16);
    let mut shown = 0;
    let mut differing = 0;
    for row in 0..rows {
        let lo = row * 16;
        let e = expected
            .get(lo..(lo + 16).min(expected.len()))
            .unwrap_or(&[]);
        let o = observed
            .get(lo..(lo + 16).min(observed.len()))
            .unwrap_or(&[]);
        if e == o {
            continue;
        }
        differing += 1;
        if shown >= 12 {
            continue;
        }
        shown += 1;
        let hex = |b: &[u8]| {
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(out, "    {lo:06x}  {:<47} | {:<47}", hex(e), hex(o));
    }
    if differing > shown {
        let _ = writeln!(out, "    … {} more differing rows", differing - shown);
    }
    out
}

/// The divergence, explained.
pub fn divergence_text(program: &Program, d: &Divergence, pages: &[PageDiff]) -> String {
    let mut out = String::new();
    let op = program
        .ops
        .get(d.op_index)
        .map(|o| o.to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "first seen after op {}: {op}", d.op_index + 1);
    match &d.difference {
        Difference::Outcome {
            proc,
            expected,
            observed,
        } => {
            let _ = writeln!(out, "  {proc}'s result differs:");
            let _ = writeln!(
                out,
                "    expected (model): {}",
                crate::program::outcome::describe_outcome(expected)
            );
            let _ = writeln!(
                out,
                "    observed (kernel): {}",
                crate::program::outcome::describe_outcome(observed)
            );
        }
        Difference::Placement(e) => {
            let _ = writeln!(out, "  {e}");
        }
        Difference::Liveness {
            proc,
            expected_alive,
        } => {
            let _ = writeln!(
                out,
                "  {proc} should be {} but is {}",
                if *expected_alive { "alive" } else { "gone" },
                if *expected_alive { "gone" } else { "alive" }
            );
        }
        Difference::Layout {
            proc,
            expected,
            observed,
        } => {
            let _ = writeln!(
                out,
                "  {proc}'s layout differs (outside the harness's own mappings):"
            );
            let _ = write!(out, "  expected (model):\n{}", regions_text(expected));
            let _ = write!(
                out,
                "  observed (kernel, /proc/self/maps):\n{}",
                regions_text(observed)
            );
        }
        Difference::Contents {
            proc,
            page,
            expected,
            observed,
        } => {
            let _ = writeln!(
                out,
                "  {proc}'s page at {page:#x} differs: digest {expected:016x} expected, {observed:016x} observed"
            );
        }
        Difference::Physical(p) => {
            let _ = writeln!(
                out,
                "  {}'s page at {:#x}: the physical channel ({}) breaks {} ({}):\n    {}",
                p.proc, p.page, p.channel, p.id, p.rule, p.detail
            );
        }
    }
    for p in pages {
        let _ = writeln!(out, "  bytes of {} ({:#x}):", p.label, p.addr);
        match (&p.expected, &p.observed) {
            (Some(e), Some(o)) => {
                let _ = writeln!(out, "    expected: {}", describe_bytes(e));
                let _ = writeln!(out, "    observed: {}", describe_bytes(o));
                out.push_str(&hex_side_by_side(e, o));
            }
            (e, o) => {
                let _ = writeln!(
                    out,
                    "    expected: {}\n    observed: {}",
                    e.as_deref()
                        .map(describe_bytes)
                        .unwrap_or("(not mapped)".into()),
                    o.as_deref()
                        .map(describe_bytes)
                        .unwrap_or("(not available)".into())
                );
            }
        }
    }
    out
}

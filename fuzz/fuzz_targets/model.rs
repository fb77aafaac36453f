//! The model alone, no syscalls: long programs, and the model's own invariants checked after
//! every op. Fast, for deep exploration of the model's state space; the semantic cells are
//! libFuzzer extra coverage here too.
//!
//! Invariants:
//! - an op of a process that is not alive is skipped; with no kernel to place mappings, `apply`
//!   never fails;
//! - a completed write reads back as its pattern in the writer;
//! - a write never changes another process's private page (copy-on-write isolation);
//! - page states agree with mapping kinds, and an untouched private page reads zero;
//! - the final snapshot is well formed (regions ascending and disjoint, every page inside one);
//! - the model is deterministic (a second run gives the same outcomes and final snapshot);
//! - nothing leaks: once every process has exited, no frame is in use.
//!
//! The classic ops only: tagged inputs (dialects 2 and 3, which the shared mutator and the
//! family seeds make) decode with no later family, each tag drawing a classic op. These
//! invariants predate the families (a CLONE_VM child's write does change its parent's private
//! page, T30), and the families' big maps slowed the target to 13 programs/s within a minute
//! (measured, under AddressSanitizer).
#![no_main]

use cowcheck::check::coverage;
use cowcheck::model::{Life, Model, PageState};
use cowcheck::program::outcome::{Outcome, Snapshot};
use cowcheck::program::generate::{self, GenConfig};
use cowcheck::program::{Op, ProcId, Program, caps};
use cowcheck_fuzz::CellHits;
use libfuzzer_sys::fuzz_target;

const PAGE_SIZE: usize = 4096;
/// Longer programs than `ops` (40): the model is cheap, and depth is the point here.
const MAX_OPS: usize = 200;

fn fail(program: &Program, i: usize, what: String) -> ! {
    panic!(
        "model invariant broken at op {}: {what}\nprogram:\n{program}",
        i + 1
    )
}

fn is_private(s: PageState) -> bool {
    matches!(
        s,
        PageState::PrivateUntouched | PageState::PrivateExclusive | PageState::PrivateCowShared
    )
}

fn check_snapshot(program: &Program, i: usize, snap: &Snapshot) {
    for v in &snap.procs {
        for r in &v.regions {
            if r.start >= r.end {
                fail(
                    program,
                    i,
                    format!("{} has an empty region {}", v.proc, r.describe()),
                );
            }
        }
        for w in v.regions.windows(2) {
            if w[0].end > w[1].start {
                fail(
                    program,
                    i,
                    format!("{}'s regions overlap or are out of order", v.proc),
                );
            }
        }
        for w in v.pages.windows(2) {
            if w[0].0 >= w[1].0 {
                fail(program, i, format!("{}'s pages are not ascending", v.proc));
            }
        }
        for (addr, _) in &v.pages {
            if !v.regions.iter().any(|r| r.start <= *addr && *addr < r.end) {
                fail(
                    program,
                    i,
                    format!("{} page {addr:#x} lies outside its regions", v.proc),
                );
            }
        }
    }
}

fn live(model: &Model) -> impl Iterator<Item = ProcId> + '_ {
    (0..caps::MAX_PROCS as u8)
        .map(ProcId)
        .filter(|p| model.life(*p) == Life::Alive)
}

fuzz_target!(|data: &[u8]| {
    let program = generate::from_bytes(
        data,
        GenConfig {
            max_ops: MAX_OPS,
            families: generate::Families::NONE,
            ..GenConfig::default()
        },
    );
    let ps = PAGE_SIZE as u64;
    let mut model = Model::new(PAGE_SIZE);
    let mut hits = CellHits::default();
    let mut outcomes = Vec::with_capacity(program.ops.len());
    for (i, op) in program.ops.iter().enumerate() {
        let cells = coverage::cells_before(&model, op);
        for c in &cells {
            hits.hit(*c);
        }
        let proc = op.proc();
        let alive = model.life(proc) == Life::Alive;
        // Pages of the written span as other processes see them, where they are private.
        let mut watched = Vec::new();
        if let (true, Op::Write { map, span, .. }) = (alive, op)
            && let Some(h) = model.handle(*map)
        {
            for page in span.page_range().pages().filter(|p| *p < h.pages) {
                let addr = h.base + page as u64 * ps;
                for q in live(&model).filter(|q| *q != proc) {
                    if is_private(model.page_state(q, addr).0) {
                        watched.push((q, addr, model.page_bytes(q, addr)));
                    }
                }
            }
        }
        // Page states against mapping kinds, for the pages the op touches.
        let touched = match coverage::touched(op) {
            coverage::Touch::Pages(m, r) => {
                model.handle(m).map(|h| (h, r.start..r.end.min(h.pages)))
            }
            coverage::Touch::Mapping(m) => model.handle(m).map(|h| (h, 0..h.pages)),
            _ => None,
        };
        if let Some((h, pages)) = touched {
            for page in pages {
                let addr = h.base + page as u64 * ps;
                let (state, kind) = model.page_state(proc, addr);
                match (state, kind) {
                    (PageState::Unmapped, None) => {}
                    (PageState::Unmapped, Some(_)) | (_, None) => fail(
                        &program,
                        i,
                        format!("page {addr:#x} of {proc}: state {state:?} with kind {kind:?}"),
                    ),
                    (s, Some(k)) if is_private(s) == k.is_shared() => fail(
                        &program,
                        i,
                        format!(
                            "page {addr:#x} of {proc}: state {} in a {} mapping",
                            s.name(),
                            k.name()
                        ),
                    ),
                    (PageState::PrivateUntouched, _) => {
                        let bytes = model.page_bytes(proc, addr).unwrap_or_default();
                        if bytes.iter().any(|b| *b != 0) {
                            fail(
                                &program,
                                i,
                                format!("untouched private page {addr:#x} of {proc} is not zero"),
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
        let outcome = match model.apply(op, None) {
            Ok(o) => o,
            Err(e) => fail(&program, i, format!("the model alone failed: {e}")),
        };
        if !alive && outcome != Outcome::Skipped {
            fail(
                &program,
                i,
                format!("{proc} is not alive, yet the op gave {outcome:?}"),
            );
        }
        if let (
            Op::Write {
                map, span, pattern, ..
            },
            Outcome::Done,
        ) = (op, &outcome)
            // A block of the allocator ops is no mapping: its bytes are `malloc.rs`'s, checked
            // by M2 there.
            && !model.is_alloc(*map)
        {
            let h = model
                .handle(*map)
                .unwrap_or_else(|| fail(&program, i, "written mapping has no handle".into()));
            let pages = span.page_range();
            for page in pages.pages() {
                let addr = h.base + page as u64 * ps;
                let bytes = model.page_bytes(proc, addr).unwrap_or_else(|| {
                    fail(&program, i, format!("written page {addr:#x} is not mapped"))
                });
                // A later page of the span that aliases this one (one page of a shared object
                // mapped twice) was written after it, and what it wrote is what both show.
                if (page + 1..pages.end)
                    .any(|later| model.aliases(proc, addr, h.base + later as u64 * ps))
                {
                    continue;
                }
                for b in span.bytes_in_page(PAGE_SIZE) {
                    let want = pattern.byte_at(page as usize * PAGE_SIZE + b);
                    if bytes[b] != want {
                        fail(
                            &program,
                            i,
                            format!(
                                "page {page} byte {b} reads {:#04x} right after writing {want:#04x}",
                                bytes[b]
                            ),
                        );
                    }
                }
            }
        }
        for (q, addr, before) in watched {
            if model.page_bytes(q, addr) != before {
                fail(
                    &program,
                    i,
                    format!("{proc}'s write changed {q}'s private page {addr:#x}"),
                );
            }
        }
        outcomes.push(outcome);
    }
    hits.publish();
    let last = program.ops.len();
    let end = model.snapshot();
    check_snapshot(&program, last, &end);

    let mut again = Model::new(PAGE_SIZE);
    for (i, op) in program.ops.iter().enumerate() {
        match again.apply(op, None) {
            Ok(o) if o == outcomes[i] => {}
            other => fail(
                &program,
                i,
                format!("a second run gave {other:?}, the first {:?}", outcomes[i]),
            ),
        }
    }
    if again.snapshot() != end {
        fail(&program, last, "a second run ends in another state".into());
    }

    let everyone: Vec<ProcId> = live(&model).collect();
    for p in everyone {
        if let Err(e) = model.apply(&Op::Exit { proc: p }, None) {
            fail(&program, last, format!("exit of {p} failed: {e}"));
        }
    }
    if model.frames_in_use() != 0 {
        fail(
            &program,
            last,
            format!(
                "{} frames still in use after every process exited",
                model.frames_in_use()
            ),
        );
    }
});

libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    cowcheck_fuzz::mutate(data, size, max_size, seed)
});

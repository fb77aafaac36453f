//! A trial: one program run on the kernel (through an executor) and judged against the model.
//! The glue between the kernel side and the checker, for every front end (`run`, `replay`,
//! `corpus`, `bench`, the fuzzer, the property tests); the checker itself never sees an executor.

use crate::check::{self, CoverageSink, Difference, Divergence, PageDiff, Verdict};
use crate::kernel::{Executor, HarnessError};
use crate::model::Model;
use crate::program::outcome::{DumpRequest, KernelRun, Outcome};
use crate::program::runtime_regions::RegionKind;
use crate::program::{Op, ProcId, Program, Span};

/// Runs a program on the kernel and compares it with the model; with `coverage`, the
/// program's semantic cells go there (nothing past a divergence).
pub fn run(
    executor: &mut Executor,
    program: &Program,
    coverage: Option<&mut dyn CoverageSink>,
) -> Result<(Verdict, KernelRun), HarnessError> {
    let run = executor.run(program, &[])?;
    Ok((judge(executor, program, &run, coverage)?, run))
}

/// The verdict on a kernel run collected separately (`Executor::submit` and `collect`, so that
/// the executor runs the next program while this one is checked).
pub fn judge(
    executor: &Executor,
    program: &Program,
    run: &KernelRun,
    coverage: Option<&mut dyn CoverageSink>,
) -> Result<Verdict, HarnessError> {
    let mut options = check::Options::new(executor.page_size())
        .features(executor.hello.features)
        .own_regions(executor.own_regions.clone())
        .physical(executor.hello.physical);
    options.coverage = coverage;
    check::compare(program, run, options).map_err(|cut| HarnessError::Program(cut.0))
}

/// The baseline program of `learn_own_regions`: mappings small and large (valgrind adds a
/// region of its own at the first mmap, and another at the first large one), a fork, writes
/// on both sides, an unmap and an exit, with snapshots after the fork, the exit and at the
/// end. It maps no private anonymous memory: a runtime that misbehaves once (on the first
/// such mapping of a run, as `tests/faults/libfault.c` can) must do so in the campaign, where
/// it is checked, not here.
const BASELINE: &str = "cowcheck-trace 1
p0 map m0 private-zero 2
p0 map m1 shared 1
p0 map m2 shared-zero 1
p0 map m3 shared 64
p0 write m0 0..2 fill 0x01
p0 write m1 0 fill 0x02
p0 write m3 0..64 fill 0x05
p0 fork p1
p1 write m0 0 fill 0x03
p1 write m2 0 fill 0x04
p1 write m3 0..64 fill 0x07
p1 map m4 private-zero 1
p1 exit
p0 unmap m2 0
p0 read m0 0..2
";

/// Learns which kinds of region the runtime under `executor` makes for itself: runs a
/// baseline program and returns the kinds of the regions that its processes show where the
/// model has nothing (`check::unexplained_regions`). On a plain kernel there are none (a
/// test holds it); `cowcheck run` learns only under `--under`.
pub fn learn_own_regions(executor: &mut Executor) -> Result<Vec<RegionKind>, HarnessError> {
    let program = crate::program::trace::parse(BASELINE.as_bytes())
        .map_err(|e| HarnessError::Program(format!("the baseline program: {e}")))?;
    let run = executor.run(&program, &[])?;
    let options = check::Options::new(executor.page_size()).features(executor.hello.features);
    Ok(check::unexplained_regions(&program, &run, options))
}

/// Fetches the full bytes behind a contents or read divergence: the model's from a replay of
/// the model, the kernel's from a rerun of the program with page dumps.
pub fn page_diffs(
    executor: &mut Executor,
    program: &Program,
    run: &KernelRun,
    d: &Divergence,
) -> Vec<PageDiff> {
    let ps = executor.page_size();
    // Model state right after the diverging op, with the kernel's placements.
    let mut model = Model::with_features(ps, executor.hello.features);
    for (op, observed) in program.ops.iter().zip(&run.outcomes).take(d.op_index + 1) {
        if model.step(op, Some(observed)).is_err() {
            return Vec::new();
        }
    }
    // (proc, addr, byte range within the page) of each page to show.
    let mut wanted: Vec<(ProcId, u64, std::ops::Range<usize>)> = Vec::new();
    match &d.difference {
        Difference::Contents { proc, page, .. } => wanted.push((*proc, *page, 0..ps)),
        Difference::Outcome {
            proc,
            expected: Outcome::Read { digests: e },
            observed: Outcome::Read { digests: o },
        } => {
            if let Some(Op::Read { map, span, .. }) = program.ops.get(d.op_index)
                && let Some(h) = model.handle(*map)
            {
                for (k, page) in span.page_range().pages().enumerate() {
                    if e.get(k) != o.get(k) {
                        let range = match span {
                            Span::Pages(_) => 0..ps,
                            Span::Bytes { .. } => span.bytes_in_page(ps),
                        };
                        wanted.push((*proc, h.base + page as u64 * ps as u64, range));
                    }
                }
            }
        }
        _ => {}
    }
    wanted.truncate(4);
    let dumps: Vec<DumpRequest> = wanted
        .iter()
        .filter_map(|(proc, addr, _)| {
            let (map, page) = model.locate(*addr)?;
            Some(DumpRequest {
                after_op: d.op_index as u32,
                proc: *proc,
                map,
                page,
            })
        })
        .collect();
    let rerun = executor.run(program, &dumps).ok();
    wanted
        .into_iter()
        .map(|(proc, addr, range)| {
            let located = model.locate(addr);
            let label = match located {
                Some((m, page)) => format!("{proc} {m} page {page}"),
                None => format!("{proc} page {addr:#x} (outside every mapping handle)"),
            };
            let observed = located.and_then(|(map, page)| {
                rerun.as_ref()?.dumps.iter().find_map(|(r, bytes)| {
                    (r.proc == proc && r.map == map && r.page == page)
                        .then(|| bytes.clone())
                        .flatten()
                })
            });
            PageDiff {
                proc,
                label,
                addr,
                expected: model
                    .page_bytes(proc, addr)
                    .map(|b| b[range.clone()].to_vec()),
                observed: observed.map(|b| b.get(range.clone()).unwrap_or(&b).to_vec()),
            }
        })
        .collect()
}

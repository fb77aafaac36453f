//! Compares a program's run on the kernel with the model, op by op, and names the first
//! divergence. The model consumes only what the kernel is free to choose (where a mapping was
//! placed); everything else it predicts, and any difference is a divergence.

use crate::coverage::{self, Cell};
use crate::kernel::{DumpRequest, Executor, HarnessError, KernelRun};
use crate::model::{Features, Model, ModelError};
use crate::outcome::{Outcome, ProcView, Region, Snapshot};
use crate::program::{Op, ProcId, Program, Span};

/// What differed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    /// An op's result differs (return value, errno, death, or a read's bytes).
    Outcome {
        proc: ProcId,
        expected: Outcome,
        observed: Outcome,
    },
    /// The kernel placed a mapping where the model cannot put one.
    Placement(ModelError),
    /// A process the model says is alive is not, or the reverse.
    Liveness { proc: ProcId, expected_alive: bool },
    /// A process's layout differs.
    Layout {
        proc: ProcId,
        expected: Vec<Region>,
        observed: Vec<Region>,
    },
    /// A page's contents differ (digests; the report fetches the bytes).
    Contents {
        proc: ProcId,
        page: u64,
        expected: u64,
        observed: u64,
    },
}

/// The first point at which kernel and model disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// Index of the op after which it was first seen.
    pub op_index: usize,
    pub difference: Difference,
}

impl Divergence {
    /// The shape of the divergence, independent of addresses, handles and values: what the
    /// shrinker keeps while it shrinks ("diverges in the same way") and what `--keep-going`
    /// would group by.
    pub fn signature(&self, program: &Program) -> String {
        let verb = program
            .ops
            .get(self.op_index)
            .map(|o| o.kind().name())
            .unwrap_or("end");
        // A difference in an op's own result belongs to that op; a difference in the state
        // (seen by a snapshot) does not depend on which op happened to take the snapshot.
        match &self.difference {
            Difference::Outcome {
                expected: Outcome::Read { .. },
                observed: Outcome::Read { .. },
                ..
            } => format!("{verb}: bytes differ"),
            Difference::Outcome {
                expected: Outcome::Mapped { .. },
                observed: Outcome::Mapped { .. },
                ..
            } => format!("{verb}: address differs"),
            Difference::Outcome {
                expected, observed, ..
            } => format!(
                "{verb}: expected {} got {}",
                variant(expected),
                variant(observed)
            ),
            Difference::Placement(_) => format!("{verb}: placement"),
            Difference::Liveness { expected_alive, .. } => {
                format!("liveness (expected alive: {expected_alive})")
            }
            Difference::Layout { .. } => "layout".to_string(),
            Difference::Contents { .. } => "contents".to_string(),
        }
    }
}

fn variant(o: &Outcome) -> String {
    match o {
        Outcome::Skipped => "skipped".into(),
        Outcome::Mapped { .. } => "mapped".into(),
        Outcome::Failed { errno } => format!("errno {errno}"),
        Outcome::Done => "done".into(),
        Outcome::Hung => "hang".into(),
        Outcome::Read { .. } => "read".into(),
        Outcome::Killed { death, .. } => format!("signal {} code {}", death.signal, death.code),
    }
}

/// Counters of one checked program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub ops: usize,
    pub forks: usize,
    pub pages_compared: usize,
    pub snapshots: usize,
}

/// Replays the model along a kernel run and compares. Returns the tally of what agreed, or the
/// first divergence.
pub fn compare(program: &Program, run: &KernelRun, page_size: usize) -> Result<Tally, Divergence> {
    compare_with(program, run, page_size, Features::ALL)
}

/// `compare` for a kernel with these features.
pub fn compare_with(
    program: &Program,
    run: &KernelRun,
    page_size: usize,
    features: Features,
) -> Result<Tally, Divergence> {
    compare_covered(program, run, page_size, features, None)
}

/// What a comparison reports about semantic coverage as it goes (see `coverage`): the cells
/// each op reaches, and the page configurations present after it.
pub trait CoverageSink {
    fn cell(&mut self, op_index: usize, cell: Cell);
    fn config(&mut self, op_index: usize, config: usize);
}

/// `compare_with`, also reporting the semantic coverage of the run to `sink`, read off the
/// model it steps anyway (one model run instead of two: the fuzzer's hot path).
pub fn compare_covered(
    program: &Program,
    run: &KernelRun,
    page_size: usize,
    features: Features,
    mut sink: Option<&mut dyn CoverageSink>,
) -> Result<Tally, Divergence> {
    let mut model = Model::with_features(page_size, features);
    let mut tally = Tally::default();
    let mut snaps = run.snapshots.iter().peekable();
    for (i, (op, observed)) in program.ops.iter().zip(&run.outcomes).enumerate() {
        if let Some(sink) = sink.as_deref_mut() {
            for cell in coverage::cells_before(&model, op) {
                sink.cell(i, cell);
            }
        }
        let expected = model.step(op, Some(observed)).map_err(|e| Divergence {
            op_index: i,
            difference: Difference::Placement(e),
        })?;
        if expected != *observed {
            return Err(Divergence {
                op_index: i,
                difference: Difference::Outcome {
                    proc: op.proc(),
                    expected,
                    observed: observed.clone(),
                },
            });
        }
        if let Some(sink) = sink.as_deref_mut() {
            coverage::configs_after(&model, op, |c| sink.config(i, c));
        }
        tally.ops += 1;
        if let Op::Fork { .. } = op
            && matches!(observed, Outcome::Done)
        {
            tally.forks += 1;
        }
        if let Outcome::Read { digests } = observed {
            tally.pages_compared += digests.len();
        }
        while let Some((j, snap)) = snaps.peek() {
            if *j != i {
                break;
            }
            model.reconcile(snap);
            let expected = model.snapshot();
            tally.pages_compared +=
                compare_snapshots(&expected, snap).map_err(|difference| Divergence {
                    op_index: i,
                    difference,
                })?;
            tally.snapshots += 1;
            snaps.next();
        }
    }
    Ok(tally)
}

/// Compares two snapshots; on agreement, the number of pages compared.
pub fn compare_snapshots(expected: &Snapshot, observed: &Snapshot) -> Result<usize, Difference> {
    let find = |s: &Snapshot, p: ProcId| s.procs.iter().find(|v| v.proc == p).cloned();
    let mut procs: Vec<ProcId> = expected
        .procs
        .iter()
        .chain(&observed.procs)
        .map(|v| v.proc)
        .collect();
    procs.sort();
    procs.dedup();
    let mut pages = 0;
    for p in procs {
        let (e, o): (Option<ProcView>, Option<ProcView>) = (find(expected, p), find(observed, p));
        let (e, o) = match (e, o) {
            (Some(e), Some(o)) => (e, o),
            (e, _) => {
                return Err(Difference::Liveness {
                    proc: p,
                    expected_alive: e.is_some(),
                });
            }
        };
        if e.regions != o.regions {
            return Err(Difference::Layout {
                proc: p,
                expected: e.regions,
                observed: o.regions,
            });
        }
        for (a, b) in e.pages.iter().zip(&o.pages) {
            if a != b {
                return Err(Difference::Contents {
                    proc: p,
                    page: a.0.min(b.0),
                    expected: a.1,
                    observed: b.1,
                });
            }
        }
        pages += e.pages.len();
    }
    Ok(pages)
}

/// The verdict on one program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Agreed(Tally),
    Diverged(Divergence),
}

/// Runs a program on the kernel and compares it with the model.
pub fn check(
    executor: &mut Executor,
    program: &Program,
) -> Result<(Verdict, KernelRun), HarnessError> {
    let run = executor.run(program, &[])?;
    Ok((verdict_of(executor, program, &run)?, run))
}

/// `check`, also reporting the program's semantic coverage to `sink` (from the comparison's
/// own model run; nothing when the run is cut short by a divergence before the end).
pub fn check_covered(
    executor: &mut Executor,
    program: &Program,
    sink: &mut dyn CoverageSink,
) -> Result<(Verdict, KernelRun), HarnessError> {
    let run = executor.run(program, &[])?;
    Ok((verdict_covered(executor, program, &run, Some(sink))?, run))
}

fn verdict_of(
    executor: &Executor,
    program: &Program,
    run: &KernelRun,
) -> Result<Verdict, HarnessError> {
    verdict_covered(executor, program, run, None)
}

/// The verdict on a kernel run that was collected separately (`Executor::submit` and
/// `collect`, so that the executor runs the next program while this one is checked), with
/// the program's semantic coverage reported to `sink` as in `check_covered`.
pub fn judge_covered(
    executor: &Executor,
    program: &Program,
    run: &KernelRun,
    sink: Option<&mut dyn CoverageSink>,
) -> Result<Verdict, HarnessError> {
    verdict_covered(executor, program, run, sink)
}

fn verdict_covered(
    executor: &Executor,
    program: &Program,
    run: &KernelRun,
    sink: Option<&mut dyn CoverageSink>,
) -> Result<Verdict, HarnessError> {
    let verdict = match compare_covered(
        program,
        run,
        executor.page_size(),
        executor.hello.features,
        sink,
    ) {
        Err(d) => Verdict::Diverged(d),
        Ok(t) => {
            if let Some(e) = &run.harness_error {
                return Err(HarnessError::Program(e.clone()));
            }
            if run.outcomes.len() != program.ops.len() {
                return Err(HarnessError::Program(format!(
                    "the executor reported {} of {} ops",
                    run.outcomes.len(),
                    program.ops.len()
                )));
            }
            Verdict::Agreed(t)
        }
    };
    Ok(verdict)
}

/// One page shown in full in a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageDiff {
    pub proc: ProcId,
    pub label: String,
    pub addr: u64,
    pub expected: Option<Vec<u8>>,
    pub observed: Option<Vec<u8>>,
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

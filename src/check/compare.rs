//! Compares a program's run on the kernel with the model, op by op, and names the first
//! divergence. The model consumes only what the kernel is free to choose (where a mapping was
//! placed); everything else it predicts, and any difference is a divergence.

use crate::check::coverage::{self, CoverageSink};
pub use crate::check::physical::PhysicalDifference;
use crate::model::{Features, Model, ModelError};
use crate::program::outcome::{KernelRun, Outcome, ProcView, Region, Snapshot};
use crate::program::physical::Channels;
use crate::program::runtime_regions::RegionKind;
use crate::program::{Op, ProcId, Program};

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
    /// What the physical channel saw (pagemap) differs from the model's frames.
    Physical(PhysicalDifference),
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
            // The same death: the shape says what else differs (where it struck, or what was
            // read before it), never "expected X got X".
            Difference::Outcome {
                expected:
                    Outcome::Killed {
                        death: want,
                        digests: read_want,
                    },
                observed:
                    Outcome::Killed {
                        death: got,
                        digests: read_got,
                    },
                ..
            } if (want.signal, want.code) == (got.signal, got.code) => {
                let death = death_shape(got.signal, got.code);
                if want.page != got.page {
                    format!("{verb}: {death} at another page")
                } else if read_want.len() != read_got.len() {
                    format!("{verb}: {death} after another number of pages")
                } else if read_want != read_got {
                    format!("{verb}: bytes differ before {death}")
                } else {
                    format!("{verb}: {death}, otherwise different")
                }
            }
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
            Difference::Physical(p) => format!("physical: {}", p.rule),
        }
    }

    /// The part of the observation that caught it: `values` (results, layout, contents,
    /// liveness) or a physical channel's name (pagemap, pagemap-scan, pfn).
    pub fn channel(&self) -> &'static str {
        match &self.difference {
            Difference::Physical(p) => p.channel,
            _ => "values",
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
        Outcome::Stopped { .. } => "stopped".into(),
        Outcome::Watched { .. } => "watched".into(),
        Outcome::Forked { .. } => "forked".into(),
        Outcome::Allocated { .. } => "allocated".into(),
        Outcome::Read { .. } => "read".into(),
        Outcome::Killed { death, .. } => death_shape(death.signal, death.code),
    }
}

/// A death as a shape says it: `SIGSEGV maperr` (the trace's expectation syntax), or what the
/// executor saw when the process left no report of its own.
fn death_shape(signal: i32, code: i32) -> String {
    use crate::program::tables::{code_trace_name, signal_name};
    if signal == 0 {
        return "a death without a report".into();
    }
    let name = signal_name(signal).map_or_else(|| format!("signal {signal}"), str::to_string);
    match code_trace_name(signal, code) {
        Some(c) => format!("{name} {c}"),
        None => format!("{name} code {code}"),
    }
}

/// Counters of one checked program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub ops: usize,
    pub forks: usize,
    /// Forks made while a thread of the forking process raced (docs/SEMANTICS.md T2, T3).
    pub racing_forks: usize,
    /// clone(CLONE_VM) children made (docs/SEMANTICS.md T30).
    pub clones: usize,
    /// Races started, by kind (`RaceKind::code()`: write, dontneed, poke, read...; T1, T7, T8,
    /// T10).
    pub races: [usize; crate::program::RaceKind::ALL.len()],
    /// Forks made inside each kind's racing windows (`race_windows`).
    pub racing_forks_by_kind: [usize; crate::program::RaceKind::ALL.len()],
    /// Ops run by op threads (after a `by`), and the forks among them (T21, T22).
    pub thread_ops: usize,
    pub thread_forks: usize,
    pub pages_compared: usize,
    pub snapshots: usize,
    /// Regions of the runtime's own (`Options::own_regions`) set aside, over all snapshots.
    pub own_regions: usize,
    /// Pages whose pagemap word was checked (the physical channel).
    pub physical_pages: usize,
}

/// How to compare: what the target said of itself, and where coverage goes.
pub struct Options<'a> {
    pub page_size: usize,
    /// What the kernel under the executor supports (its hello); the model leans on it where
    /// behaviour depends on it.
    pub features: Features,
    /// Where the semantic coverage of the run goes (see `coverage`), read off the model the
    /// comparison steps anyway (one model run instead of two: the fuzzer's hot path). Nothing
    /// is reported past a divergence.
    pub coverage: Option<&'a mut dyn CoverageSink>,
    /// Kinds of region that the runtime under the executor makes for itself (learnt from a
    /// baseline program, or named with --ignore-region): an observed region of such a kind is
    /// set aside where the model expects nothing of the process at all (`set_aside`), never
    /// where the program has memory. Empty on a plain kernel.
    pub own_regions: Vec<RegionKind>,
    /// Which parts of the physical channel ran (the hello's); none by default.
    pub physical: Channels,
}

impl<'a> Options<'a> {
    /// A kernel that supports everything the model knows of, and no coverage.
    pub fn new(page_size: usize) -> Options<'a> {
        Options {
            page_size,
            features: Features::ALL,
            coverage: None,
            own_regions: Vec::new(),
            physical: Channels::default(),
        }
    }
    pub fn physical(self, physical: Channels) -> Options<'a> {
        Options { physical, ..self }
    }
    pub fn features(self, features: Features) -> Options<'a> {
        Options { features, ..self }
    }
    pub fn own_regions(self, own_regions: Vec<RegionKind>) -> Options<'a> {
        Options {
            own_regions,
            ..self
        }
    }
    pub fn coverage(self, sink: &'a mut dyn CoverageSink) -> Options<'a> {
        Options {
            coverage: Some(sink),
            ..self
        }
    }
}

/// The verdict on one program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Agreed(Tally),
    Diverged(Divergence),
}

/// A kernel run that ended before the program did (the executor gave up on it, or reported
/// fewer ops) and agreed with the model as far as it went: no verdict, a harness matter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutShort(pub String);

/// The one comparison: replays the model along a kernel run and compares every outcome and
/// every snapshot. A divergence anywhere in what ran is a verdict; a run that agreed but was
/// cut short is not one.
pub fn compare(program: &Program, run: &KernelRun, options: Options) -> Result<Verdict, CutShort> {
    let tally = match compare_run(program, run, options) {
        Err(d) => return Ok(Verdict::Diverged(d)),
        Ok(t) => t,
    };
    if let Some(e) = &run.harness_error {
        return Err(CutShort(e.clone()));
    }
    if run.outcomes.len() != program.ops.len() {
        return Err(CutShort(format!(
            "the executor reported {} of {} ops",
            run.outcomes.len(),
            program.ops.len()
        )));
    }
    Ok(Verdict::Agreed(tally))
}

fn compare_run(program: &Program, run: &KernelRun, options: Options) -> Result<Tally, Divergence> {
    let Options {
        page_size,
        features,
        coverage: mut sink,
        own_regions,
        physical,
    } = options;
    let mut model = Model::with_features(page_size, features);
    let mut tally = Tally::default();
    let mut snaps = run.snapshots.iter().peekable();
    let mut windows = crate::check::race_windows::RaceWindows::default();
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
        windows.note(op, observed, &mut tally.racing_forks_by_kind);
        if i > 0
            && matches!(program.ops[i - 1], Op::By { .. })
            && !matches!(observed, Outcome::Skipped)
        {
            tally.thread_ops += 1;
            tally.thread_forks += usize::from(matches!(op, Op::Fork { .. }));
        }
        if let Op::Fork { .. } = op
            && matches!(observed, Outcome::Done | Outcome::Forked { .. })
        {
            tally.forks += 1;
            tally.racing_forks += usize::from(matches!(observed, Outcome::Forked { .. }));
        }
        if let Op::CloneVm { .. } = op
            && *observed == Outcome::Done
        {
            tally.clones += 1;
        }
        if let Op::Race { kind, .. } = op
            && *observed == Outcome::Done
            && let Some(n) = tally.races.get_mut(kind.code() as usize)
        {
            *n += 1;
        }
        if let Outcome::Read { digests } = observed {
            tally.pages_compared += digests.len();
        }
        while let Some((j, snap)) = snaps.peek() {
            if *j != i {
                break;
            }
            let aside;
            let snap = if own_regions.is_empty() {
                snap
            } else {
                let (kept, n) = set_aside(&own_regions, &model.snapshot(), snap);
                tally.own_regions += n;
                aside = kept;
                &aside
            };
            model.reconcile(snap);
            if physical.pagemap.is_ok() && physical.pfn.is_ok() {
                model.learn_collapses(snap);
            }
            let expected = model.snapshot();
            tally.pages_compared +=
                compare_snapshots(&expected, snap).map_err(|difference| Divergence {
                    op_index: i,
                    difference,
                })?;
            tally.physical_pages += crate::check::physical::check(&model, snap, &physical)
                .map_err(|p| Divergence {
                    op_index: i,
                    difference: Difference::Physical(p),
                })?;
            tally.snapshots += 1;
            snaps.next();
        }
    }
    Ok(tally)
}

/// `observed` less the regions of a runtime's own: a region of one of `kinds` that meets no
/// region `expected` has for the same process (and its pages). A process the model does not
/// expect keeps everything (its liveness is the divergence). Returns the snapshot kept and
/// how many regions were set aside.
pub fn set_aside(
    kinds: &[RegionKind],
    expected: &Snapshot,
    observed: &Snapshot,
) -> (Snapshot, usize) {
    let mut kept = observed.clone();
    let mut n = 0;
    for view in &mut kept.procs {
        let Some(e) = expected.procs.iter().find(|v| v.proc == view.proc) else {
            continue;
        };
        let own = |r: &Region| {
            kinds.iter().any(|k| k.matches(r))
                && !e.regions.iter().any(|x| x.start < r.end && r.start < x.end)
        };
        let aside: Vec<Region> = view.regions.iter().filter(|r| own(r)).cloned().collect();
        if aside.is_empty() {
            continue;
        }
        n += aside.len();
        // The pagemap words go with their regions' pages: one word per page of every region,
        // in order (`ProcView::phys`), so the page size is the regions' bytes over the words.
        if !view.phys.is_empty() {
            let bytes: u64 = view.regions.iter().map(|r| r.end - r.start).sum();
            // Without the smaps words, if any (I11: they are per region, and dropped here).
            let words = crate::program::physical::smaps::page_words(&view.phys, view.regions.len());
            view.phys.truncate(words);
            let ps = bytes / view.phys.len() as u64;
            let mut words = view.phys.iter().copied();
            let mut phys = Vec::with_capacity(view.phys.len());
            for r in &view.regions {
                let region: Vec<u64> = words
                    .by_ref()
                    .take(((r.end - r.start) / ps) as usize)
                    .collect();
                if !own(r) {
                    phys.extend(region);
                }
            }
            view.phys = phys;
        }
        view.regions.retain(|r| !own(r));
        view.pages
            .retain(|&(a, _)| !aside.iter().any(|r| r.start <= a && a < r.end));
    }
    (kept, n)
}

/// The kinds of the regions a kernel run shows that the model has no part of: a process's
/// observed region that meets no region the model expects of it, at any snapshot until the
/// first op whose outcome differs. What a runtime adds of its own (`Options::own_regions`),
/// learnt from a baseline program; on a plain kernel, none.
pub fn unexplained_regions(
    program: &Program,
    run: &KernelRun,
    options: Options,
) -> Vec<RegionKind> {
    let mut model = Model::with_features(options.page_size, options.features);
    let mut kinds: Vec<RegionKind> = Vec::new();
    let mut snaps = run.snapshots.iter().peekable();
    for (i, (op, observed)) in program.ops.iter().zip(&run.outcomes).enumerate() {
        match model.step(op, Some(observed)) {
            Ok(expected) if expected == *observed => {}
            _ => break,
        }
        while let Some((j, snap)) = snaps.next_if(|(j, _)| *j == i) {
            let _ = j;
            let expected = model.snapshot();
            for view in &snap.procs {
                let Some(e) = expected.procs.iter().find(|v| v.proc == view.proc) else {
                    continue;
                };
                for r in &view.regions {
                    let k = RegionKind::of(r);
                    if !e.regions.iter().any(|x| x.start < r.end && r.start < x.end)
                        && !kinds.contains(&k)
                    {
                        kinds.push(k);
                    }
                }
            }
        }
    }
    kinds
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

/// One page shown in full in a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageDiff {
    pub proc: ProcId,
    pub label: String,
    pub addr: u64,
    pub expected: Option<Vec<u8>>,
    pub observed: Option<Vec<u8>>,
}

#[cfg(test)]
mod shape_tests {
    use super::*;
    use crate::program::outcome::Death;
    use crate::program::trace::parse_str;

    fn killed(page: u64, digests: &[u64]) -> Outcome {
        Outcome::Killed {
            death: Death {
                signal: libc::SIGSEGV,
                code: 1,
                page,
            },
            digests: digests.to_vec(),
        }
    }

    fn shape(expected: Outcome, observed: Outcome) -> String {
        let program =
            parse_str("cowcheck-trace 1\np0 map m0 private 2\np0 read m0 0..2\n").expect("trace");
        let proc = program.ops[1].proc();
        Divergence {
            op_index: 1,
            difference: Difference::Outcome {
                proc,
                expected,
                observed,
            },
        }
        .signature(&program)
    }

    /// Two deaths by the same signal and code never make the shape "expected X got X": it
    /// says what else differs (seen under qemu-user: a vfork child's lost stores, a guard page
    /// one page off).
    #[test]
    fn the_same_death_says_what_else_differs() {
        assert_eq!(
            shape(killed(0x1000, &[1, 2]), killed(0x1000, &[1, 3])),
            "read: bytes differ before SIGSEGV maperr"
        );
        assert_eq!(
            shape(killed(0x1000, &[1]), killed(0x2000, &[1, 2])),
            "read: SIGSEGV maperr at another page"
        );
        assert_eq!(
            shape(killed(0x1000, &[1]), killed(0x1000, &[1, 2])),
            "read: SIGSEGV maperr after another number of pages"
        );
        assert_eq!(
            shape(killed(0x1000, &[1]), Outcome::Done),
            "read: expected SIGSEGV maperr got done"
        );
    }
}

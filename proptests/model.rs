//! Property runs of the reference model alone (`cowcheck::model::Model`): the semantics it must
//! keep whatever the program, checked without a kernel, so they run many cases fast.
//!
//! Properties (SEMANTICS sections in brackets), each one function that judges a *subject* (the
//! real model, or a deliberately broken one in the counter-tests):
//! - [`isolation`] (a) [B2, B3]: after `pX fork pY`, writes that `pY` makes to its private
//!   pages right after the fork change nothing that `pX` later reads from private mappings;
//!   and symmetrically for writes by `pX` and reads by `pY`;
//! - [`shared_visibility`] (b) [B5]: a write by one process to a page of a shared mapping that
//!   another live process maps through inheritance is seen by that process's next read;
//! - [`fresh_reads_zero`] (c) [A1, A2, C1, C2]: a page nobody has written reads zero, whether
//!   read by an op or seen in a snapshot, and a mapping made anywhere in a program reads zero;
//! - [`frames_return`] (d) [B6]: once every process but the root has exited and the root has
//!   unmapped every mapping handle, no frame is in use;
//! - [`deterministic`] (e): applying the same program twice gives the same outcomes, snapshots
//!   and frame count.
//!
//! Where a property needs to choose its inputs (which pages to write, which processes share a
//! page) it asks the real model, the specification; only the observations come from the subject
//! under test. Every property has a counter-test: the same function judging a broken subject
//! (private mappings that are shared, shared ones that are private, fresh pages that are dirty,
//! exits that leak frames, placements that drift between runs) must fail.
//!
//! # Replaying a failure
//!
//! Runs are deterministic: each property has a fixed ChaCha seed (a hash of its name, printed on
//! failure). On a failure:
//! - the failing program, and the program with the property's inserted ops, are printed as
//!   cowcheck traces and written to `target/tmp/cowcheck-proptests/<property>-*.trace`;
//!   `cowcheck model FILE` prints what the model predicts for each op of the inserted one;
//! - proptest persists the failing case's seed in `proptests/regressions/<property>.txt`; the
//!   next `cargo test --release --test proptest_model` replays it before any new case (commit
//!   the file to keep the case in CI);
//! - `COWCHECK_PROPTEST_CASES=N` (or proptest's own `PROPTEST_CASES=N`) runs N cases instead
//!   of the default, `PROPTEST_RNG_SEED=S` runs another seed.

mod common;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Generated, Property, Ran, passed, programs};
use cowcheck::model::{Life, MapHandle, Model, PageState};
use cowcheck::program::outcome::{Outcome, PROT_R, PROT_W, Snapshot, digest};
use cowcheck::program::{MapId, MapKind, Op, PageRange, Pattern, ProcId, Program, Span, caps};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const PAGE: usize = 4096;

// ---- subjects: the model, and broken models for the counter-tests -----------------------------

/// What the properties observe. The real model is one; the counter-tests wrap it to break it.
trait Subject {
    fn apply(&mut self, op: &Op) -> Result<Outcome, String>;
    fn life(&self, p: ProcId) -> Life;
    fn handle(&self, m: MapId) -> Option<MapHandle>;
    fn frames_in_use(&self) -> usize;
    fn snapshot(&mut self) -> Snapshot;
}

impl Subject for Model {
    fn apply(&mut self, op: &Op) -> Result<Outcome, String> {
        Model::apply(self, op, None).map_err(|e| e.to_string())
    }
    fn life(&self, p: ProcId) -> Life {
        Model::life(self, p)
    }
    fn handle(&self, m: MapId) -> Option<MapHandle> {
        Model::handle(self, m)
    }
    fn frames_in_use(&self) -> usize {
        Model::frames_in_use(self)
    }
    fn snapshot(&mut self) -> Snapshot {
        Model::snapshot(self)
    }
}

/// Makes a fresh subject for each run.
type Make = dyn Fn() -> Box<dyn Subject>;

fn real_model() -> Box<dyn Subject> {
    Box::new(Model::new(PAGE))
}

/// Delegates everything to a model, except what `rewrite` changes in the op.
struct Rewriting {
    model: Model,
    rewrite: fn(&Op) -> Op,
}

impl Subject for Rewriting {
    fn apply(&mut self, op: &Op) -> Result<Outcome, String> {
        Subject::apply(&mut self.model, &(self.rewrite)(op))
    }
    fn life(&self, p: ProcId) -> Life {
        self.model.life(p)
    }
    fn handle(&self, m: MapId) -> Option<MapHandle> {
        self.model.handle(m)
    }
    fn frames_in_use(&self) -> usize {
        self.model.frames_in_use()
    }
    fn snapshot(&mut self) -> Snapshot {
        self.model.snapshot()
    }
}

/// Broken: `private` and `private-zero` maps are made shared (the kernel fault injection
/// `private-as-shared`, in the model).
fn private_as_shared() -> Box<dyn Subject> {
    Box::new(Rewriting {
        model: Model::new(PAGE),
        rewrite: |op| match *op {
            Op::Map {
                proc,
                map,
                kind,
                pages,
                tail,
                args,
            } => Op::Map {
                proc,
                map,
                kind: match kind {
                    MapKind::Private => MapKind::Shared,
                    MapKind::PrivateZero => MapKind::SharedZero,
                    k => k,
                },
                pages,
                tail,
                args,
            },
            other => other,
        },
    })
}

/// Broken: `shared` and `shared-zero` maps are made private (copy-on-write).
fn shared_as_private() -> Box<dyn Subject> {
    Box::new(Rewriting {
        model: Model::new(PAGE),
        rewrite: |op| match *op {
            Op::Map {
                proc,
                map,
                kind,
                pages,
                tail,
                args,
            } => Op::Map {
                proc,
                map,
                kind: match kind {
                    MapKind::Shared => MapKind::Private,
                    MapKind::SharedZero => MapKind::PrivateZero,
                    k => k,
                },
                pages,
                tail,
                args,
            },
            other => other,
        },
    })
}

/// Broken: memory handed out by `map` is not cleared (it holds 0x5a bytes).
struct DirtyFreshPages(Model);

impl Subject for DirtyFreshPages {
    fn apply(&mut self, op: &Op) -> Result<Outcome, String> {
        let outcome = Subject::apply(&mut self.0, op)?;
        if let (
            Op::Map {
                proc, map, pages, ..
            },
            Outcome::Mapped { .. },
        ) = (*op, &outcome)
        {
            let dirty = Op::Write {
                proc,
                map,
                span: Span::Pages(PageRange::new(0, pages)),
                pattern: Pattern::Fill(0x5a),
            };
            Subject::apply(&mut self.0, &dirty)?;
        }
        Ok(outcome)
    }
    fn life(&self, p: ProcId) -> Life {
        self.0.life(p)
    }
    fn handle(&self, m: MapId) -> Option<MapHandle> {
        self.0.handle(m)
    }
    fn frames_in_use(&self) -> usize {
        self.0.frames_in_use()
    }
    fn snapshot(&mut self) -> Snapshot {
        self.0.snapshot()
    }
}

/// Broken: `exit` reports success and the process is gone from every view, but its address
/// space is never torn down, so its frames stay referenced.
struct ExitLeaks {
    model: Model,
    exited: [bool; caps::MAX_PROCS],
}

impl Subject for ExitLeaks {
    fn apply(&mut self, op: &Op) -> Result<Outcome, String> {
        let p = op.proc();
        if self.exited[p.0 as usize] {
            return Ok(Outcome::Skipped);
        }
        if matches!(op, Op::Exit { .. }) && self.model.life(p) == Life::Alive {
            self.exited[p.0 as usize] = true;
            return Ok(Outcome::Done);
        }
        Subject::apply(&mut self.model, op)
    }
    fn life(&self, p: ProcId) -> Life {
        if self.exited[p.0 as usize] {
            Life::Exited
        } else {
            self.model.life(p)
        }
    }
    fn handle(&self, m: MapId) -> Option<MapHandle> {
        self.model.handle(m)
    }
    fn frames_in_use(&self) -> usize {
        self.model.frames_in_use()
    }
    fn snapshot(&mut self) -> Snapshot {
        let mut s = self.model.snapshot();
        s.procs.retain(|v| !self.exited[v.proc.0 as usize]);
        s
    }
}

/// Broken: every instance places mappings somewhere else (state shared between runs).
struct DriftingPlacement {
    model: Model,
    next: u64,
}

static DRIFT: AtomicU64 = AtomicU64::new(0);

impl DriftingPlacement {
    fn new() -> DriftingPlacement {
        let run = DRIFT.fetch_add(1, Ordering::Relaxed) % 1024;
        DriftingPlacement {
            model: Model::new(PAGE),
            next: 0x7e00_0000_0000 - run * 0x1_0000_0000,
        }
    }
}

impl Subject for DriftingPlacement {
    fn apply(&mut self, op: &Op) -> Result<Outcome, String> {
        let placement = match *op {
            Op::Map { pages, .. } => {
                self.next -= (pages as u64 + 1) * PAGE as u64;
                Some(self.next)
            }
            _ => None,
        };
        self.model.apply(op, placement).map_err(|e| e.to_string())
    }
    fn life(&self, p: ProcId) -> Life {
        self.model.life(p)
    }
    fn handle(&self, m: MapId) -> Option<MapHandle> {
        self.model.handle(m)
    }
    fn frames_in_use(&self) -> usize {
        self.model.frames_in_use()
    }
    fn snapshot(&mut self) -> Snapshot {
        self.model.snapshot()
    }
}

// ---- running a program on a subject ----------------------------------------------------------

/// Everything a run shows: each op's outcome, the snapshots (after every fork and exit, and at
/// the end, keyed by the number of ops applied), and the frames in use at the end.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    outcomes: Vec<Outcome>,
    snapshots: Vec<(usize, Snapshot)>,
    frames: usize,
}

fn apply_all(subject: &mut dyn Subject, ops: &[Op]) -> Result<Run, String> {
    let mut run = Run {
        outcomes: Vec::with_capacity(ops.len()),
        snapshots: Vec::new(),
        frames: 0,
    };
    for (i, op) in ops.iter().enumerate() {
        let outcome = subject
            .apply(op)
            .map_err(|e| format!("op {} ({op}) is an error in the model: {e}", i + 1))?;
        run.outcomes.push(outcome);
        if op.snapshot_after() {
            run.snapshots.push((i + 1, subject.snapshot()));
        }
    }
    run.snapshots.push((ops.len(), subject.snapshot()));
    run.frames = subject.frames_in_use();
    Ok(run)
}

fn run(make: &Make, ops: &[Op]) -> Result<Run, String> {
    apply_all(&mut *make(), ops)
}

/// The real model after `ops`: the specification that the properties plan with.
fn spec_after(ops: &[Op]) -> Result<Model, String> {
    let mut model = Model::new(PAGE);
    apply_all(&mut model, ops)?;
    Ok(model)
}

/// The ops of the original language (map, write, read, fork, exit, unmap). Programs that
/// contain other ops (placement, mremap) can reuse addresses, which some properties rely on
/// not happening; they check only the part before the first such op.
fn is_classic(op: &Op) -> bool {
    matches!(
        op,
        Op::Map { .. }
            | Op::Write { .. }
            | Op::Read { .. }
            | Op::Fork { .. }
            | Op::Exit { .. }
            | Op::Unmap { .. }
    )
}

fn classic_prefix(ops: &[Op]) -> usize {
    ops.iter()
        .position(|op| !is_classic(op))
        .unwrap_or(ops.len())
}

/// Whether `proc`'s view has a region covering `addr` with `prot` and (if given) sharing.
fn maps_page(snap: &Snapshot, proc: ProcId, addr: u64, prot: u8, shared: Option<bool>) -> bool {
    snap.procs.iter().any(|v| {
        v.proc == proc
            && v.regions.iter().any(|r| {
                r.start <= addr
                    && addr < r.end
                    && r.prot & prot == prot
                    && shared.is_none_or(|s| r.shared == s)
            })
    })
}

fn with_ops(_original: &Program, ops: Vec<Op>) -> Program {
    Program::new(ops)
}

/// What a property saw: how many observations it compared, for coverage.
#[derive(Clone, Copy, Debug, Default)]
struct Checked {
    observations: usize,
}

// ---- (a) private isolation --------------------------------------------------------------------

/// Writes of `pattern` to every page that `writer` maps privately and writably at the moment
/// `spec` describes, one page per op.
fn private_writes(spec: &mut Model, writer: ProcId, pattern: Pattern) -> Vec<Op> {
    let snap = spec.snapshot();
    let mut writes = Vec::new();
    for m in 0..caps::MAX_MAPS as u8 {
        let map = MapId(m);
        let Some(h) = spec.handle(map) else { continue };
        if h.kind.is_shared() {
            continue;
        }
        for k in 0..h.pages {
            let addr = h.base + k as u64 * PAGE as u64;
            if !maps_page(&snap, writer, addr, PROT_W, Some(false)) {
                continue;
            }
            let write = Op::Write {
                proc: writer,
                map,
                span: Span::Pages(PageRange::new(k, k + 1)),
                pattern,
            };
            // A page can look writable in the layout and still fault (a guard page): a write
            // that kills the writer changes which later ops run at all, so it is left out.
            let mut trial = spec.clone();
            if matches!(trial.apply(&write, None), Ok(Outcome::Done)) {
                writes.push(write);
            }
        }
    }
    writes
}

fn isolation(program: &Program, pattern: Pattern, make: &Make) -> Result<Checked, String> {
    let ops = &program.ops;
    let base = run(make, ops)?;
    let mut checked = Checked::default();
    for (f, op) in ops.iter().enumerate() {
        let Op::Fork {
            proc: parent,
            child,
        } = *op
        else {
            continue;
        };
        let mut spec = spec_after(&ops[..=f])?;
        if spec.life(child) != Life::Alive {
            continue;
        }
        for (writer, reader) in [(child, parent), (parent, child)] {
            // Later reads by the reader of mappings that are private at the fork.
            let reads: Vec<usize> = (f + 1..ops.len())
                .filter(|&i| match ops[i] {
                    Op::Read { proc, map, .. } => {
                        proc == reader && spec.handle(map).is_some_and(|h| !h.kind.is_shared())
                    }
                    _ => false,
                })
                .collect();
            let writes = private_writes(&mut spec, writer, pattern);
            if reads.is_empty() || writes.is_empty() {
                continue;
            }
            let n = writes.len();
            let mut inserted = ops[..=f].to_vec();
            inserted.extend(writes);
            inserted.extend_from_slice(&ops[f + 1..]);
            let with = run(make, &inserted)?;
            for &i in &reads {
                if base.outcomes[i] != with.outcomes[i + n] {
                    return Err(format!(
                        "isolation: {writer}'s {n} private writes right after op {} ({op}) changed \
                         what {reader} reads at op {} ({}):\n  without them: {:?}\n  with them:    {:?}\n\
                         program with the writes:\n{}",
                        f + 1,
                        i + 1,
                        ops[i],
                        base.outcomes[i],
                        with.outcomes[i + n],
                        with_ops(program, inserted)
                    ));
                }
                checked.observations += 1;
            }
        }
    }
    Ok(checked)
}

// ---- (b) shared visibility --------------------------------------------------------------------

/// A page of a shared mapping that two live processes map, inherited: `writer` writes `span`
/// of `map`, `reader` reads it next.
#[derive(Clone, Copy, Debug)]
struct SharedPair {
    writer: ProcId,
    reader: ProcId,
    map: MapId,
    page: u16,
}

/// Every such pair in the state `spec` describes. Only called where no op so far could have
/// reused an address, so a page at a shared handle's address belongs to that handle's object.
fn shared_pairs(spec: &mut Model) -> Vec<SharedPair> {
    let snap = spec.snapshot();
    let live: Vec<ProcId> = snap.procs.iter().map(|v| v.proc).collect();
    let mut pairs = Vec::new();
    for m in 0..caps::MAX_MAPS as u8 {
        let map = MapId(m);
        let Some(h) = spec.handle(map) else { continue };
        if !h.kind.is_shared() {
            continue;
        }
        for page in 0..h.pages {
            let addr = h.base + page as u64 * PAGE as u64;
            for &writer in &live {
                if !maps_page(&snap, writer, addr, PROT_W, Some(true)) {
                    continue;
                }
                for &reader in &live {
                    if reader != writer && maps_page(&snap, reader, addr, PROT_R, Some(true)) {
                        pairs.push(SharedPair {
                            writer,
                            reader,
                            map,
                            page,
                        });
                    }
                }
            }
        }
    }
    pairs
}

/// At every point of the program where some pair exists, `choice` picks one; the writer stores
/// `value` into the page (whole, or a byte span), the reader reads the same span at once and
/// must see exactly the stored bytes.
fn shared_visibility(
    program: &Program,
    choice: u64,
    value: u8,
    make: &Make,
) -> Result<Checked, String> {
    let ops = &program.ops;
    let mut checked = Checked::default();
    for at in 0..=classic_prefix(ops) {
        let mut spec = spec_after(&ops[..at])?;
        let pairs = shared_pairs(&mut spec);
        if pairs.is_empty() {
            continue;
        }
        let pick = choice.wrapping_mul(at as u64 + 1).rotate_left(at as u32);
        let pair = pairs[(pick % pairs.len() as u64) as usize];
        let span = if pick & 1 == 0 {
            Span::Pages(PageRange::new(pair.page, pair.page + 1))
        } else {
            let start = (pick >> 8) as u16 % 4000;
            Span::Bytes {
                page: pair.page,
                start,
                end: start + 1 + (pick >> 24) as u16 % 96,
            }
        };
        let len = span.bytes_in_page(PAGE).len();
        let expected = Outcome::Read {
            digests: vec![digest(&vec![value; len])],
        };
        let mut inserted = ops[..at].to_vec();
        inserted.push(Op::Write {
            proc: pair.writer,
            map: pair.map,
            span,
            pattern: Pattern::Fill(value),
        });
        inserted.push(Op::Read {
            proc: pair.reader,
            map: pair.map,
            span,
        });
        let observed = run(make, &inserted)?
            .outcomes
            .pop()
            .expect("a read was appended");
        if observed != expected {
            return Err(format!(
                "shared visibility: {} wrote fill 0x{value:02x} to {} page {} which {} maps too, \
                 and {}'s next read saw something else:\n  expected: {expected:?}\n  observed: \
                 {observed:?}\nprogram with the write and the read:\n{}",
                pair.writer,
                pair.map,
                pair.page,
                pair.reader,
                pair.reader,
                with_ops(program, inserted)
            ));
        }
        checked.observations += 1;
    }
    Ok(checked)
}

// ---- (c) fresh mappings read zero ------------------------------------------------------------

fn zero_digest(len: usize) -> u64 {
    digest(&vec![0u8; len])
}

/// Pages that some write op before each point names, by handle.
#[derive(Clone)]
struct Written([u64; caps::MAX_MAPS]);

impl Written {
    fn note(&mut self, op: &Op) {
        if let Op::Write { map, span, .. } = *op {
            for k in span.page_range().pages() {
                // Classic mappings have at most 64 pages; the pages of a longer one (the
                // backings family) past 63 share the last bit, which only skips checks.
                self.0[map.0 as usize] |= 1u64 << k.min(63);
            }
        }
    }
    fn has(&self, map: MapId, page: u16) -> bool {
        self.0[map.0 as usize] & (1u64 << page.min(63)) != 0
    }
}

/// The handle and page index of an address, from the handles of `spec`.
fn locate(spec: &Model, addr: u64) -> Option<(MapId, u16)> {
    (0..caps::MAX_MAPS as u8).map(MapId).find_map(|m| {
        let h = spec.handle(m)?;
        let end = h.base + h.pages as u64 * PAGE as u64;
        (h.base <= addr && addr < end).then(|| (m, ((addr - h.base) / PAGE as u64) as u16))
    })
}

/// (1) Every read of a page that no write op has named yet sees zeros, and so does every page
/// a snapshot shows that no write op has named yet. (2) A mapping inserted at any point, by any
/// live process, of any kind, reads zero in full, in that process and in a child it forks.
fn fresh_reads_zero(program: &Program, choice: u64, make: &Make) -> Result<Checked, String> {
    let ops = &program.ops;
    let classic = classic_prefix(ops);
    let mut checked = Checked::default();

    // (1) over the program as it is.
    let observed = run(make, ops)?;
    let spec = spec_after(&ops[..classic])?;
    let mut written = Written([0; caps::MAX_MAPS]);
    let mut snaps = observed.snapshots.iter().peekable();
    for (i, op) in ops[..classic].iter().enumerate() {
        if let Op::Read { map, span, .. } = *op {
            let digests = match &observed.outcomes[i] {
                Outcome::Read { digests } | Outcome::Killed { digests, .. } => digests.clone(),
                _ => Vec::new(),
            };
            for (page, d) in span.page_range().pages().zip(digests) {
                if written.has(map, page) {
                    continue;
                }
                let zero = zero_digest(span.bytes_in_page(PAGE).len());
                if d != zero {
                    return Err(format!(
                        "fresh reads zero: op {} ({op}) read {map} page {page}, which no write \
                         op names, and saw digest {d:016x}, not the zero digest {zero:016x}",
                        i + 1
                    ));
                }
                checked.observations += 1;
            }
        }
        written.note(op);
        while let Some((after, snap)) = snaps.next_if(|(after, _)| *after <= i + 1) {
            if *after != i + 1 {
                continue;
            }
            for view in &snap.procs {
                for &(addr, d) in &view.pages {
                    let Some((map, page)) = locate(&spec, addr) else {
                        continue;
                    };
                    if written.has(map, page) {
                        continue;
                    }
                    if d != zero_digest(PAGE) {
                        return Err(format!(
                            "fresh reads zero: after op {} ({op}), {} sees {map} page {page} \
                             ({addr:#x}), which no write op names, with digest {d:016x}, not \
                             zeros",
                            i + 1,
                            view.proc
                        ));
                    }
                    checked.observations += 1;
                }
            }
        }
    }

    // (2) a mapping inserted at one point, chosen by `choice`.
    let at = (choice % (classic as u64 + 1)) as usize;
    let spec_at = spec_after(&ops[..at])?;
    let live: Vec<ProcId> = (0..caps::MAX_PROCS as u8)
        .map(ProcId)
        .filter(|&p| spec_at.life(p) == Life::Alive)
        .collect();
    let named: Vec<MapId> = ops.iter().filter_map(Op::map).collect();
    let spec_all = spec_after(ops)?;
    let fresh_map = (0..caps::MAX_MAPS as u8)
        .map(MapId)
        .find(|m| !named.contains(m) && spec_all.handle(*m).is_none());
    let fresh_child = (1..caps::MAX_PROCS as u8).map(ProcId).find(|p| {
        spec_all.life(*p) == Life::Unborn
            && !ops
                .iter()
                .any(|op| matches!(*op, Op::Fork { child, .. } if child == *p))
    });
    let (Some(map), false) = (fresh_map, live.is_empty()) else {
        return Ok(checked);
    };
    let proc = live[(choice >> 8) as usize % live.len()];
    let kind = MapKind::ALL[(choice >> 16) as usize % 4];
    let pages = 1 + (choice >> 24) as u16 % 8;
    let whole = Span::Pages(PageRange::new(0, pages));
    let mut inserted = ops[..at].to_vec();
    inserted.push(Op::Map {
        proc,
        map,
        kind,
        pages,
        tail: 0,
        args: Default::default(),
    });
    inserted.push(Op::Read {
        proc,
        map,
        span: whole,
    });
    let mut readers = vec![proc];
    if let Some(child) = fresh_child.filter(|_| live.len() < caps::MAX_LIVE) {
        inserted.push(Op::Fork { proc, child });
        inserted.push(Op::Read {
            proc: child,
            map,
            span: whole,
        });
        readers.push(child);
    }
    let first_read = at + 1;
    let observed = run(make, &inserted)?;
    let expected = Outcome::Read {
        digests: vec![zero_digest(PAGE); pages as usize],
    };
    for (k, reader) in readers.iter().enumerate() {
        let i = first_read + 2 * k;
        if observed.outcomes[i] != expected {
            return Err(format!(
                "fresh reads zero: {reader} read the new {kind:?} mapping {map} of {pages} pages \
                 and saw {:?}, not zeros\nprogram with the mapping:\n{}",
                observed.outcomes[i],
                with_ops(program, inserted)
            ));
        }
        checked.observations += pages as usize;
    }
    Ok(checked)
}

// ---- (d) frame accounting --------------------------------------------------------------------

/// Runs the program, then every live process but the root exits and the root unmaps every
/// mapping handle in full: no frame may stay in use.
fn frames_return(program: &Program, make: &Make) -> Result<Checked, String> {
    let mut subject = make();
    apply_all(&mut *subject, &program.ops)?;
    let mut cleanup = Vec::new();
    // The pipe holds vmspliced pages until someone reads them: a live process drains it
    // (a pipe read of an empty pipe is EAGAIN and changes nothing).
    if let Some(reader) = (0..caps::MAX_PROCS as u8)
        .map(ProcId)
        .find(|p| subject.life(*p) == Life::Alive)
    {
        for _ in 0..16 {
            cleanup.push(Op::PipeRead { proc: reader });
        }
    }
    for p in (1..caps::MAX_PROCS as u8).map(ProcId) {
        if subject.life(p) == Life::Alive {
            cleanup.push(Op::Exit { proc: p });
        }
    }
    for m in (0..caps::MAX_MAPS as u8).map(MapId) {
        if let Some(h) = subject.handle(m) {
            cleanup.push(Op::Unmap {
                proc: ProcId::ROOT,
                map: m,
                pages: PageRange::new(0, h.pages),
                tail: 0,
            });
        }
    }
    for op in &cleanup {
        subject.apply(op)?;
    }
    let frames = subject.frames_in_use();
    let snap = subject.snapshot();
    let left: Vec<String> = snap
        .procs
        .iter()
        .filter(|v| !v.regions.is_empty() || v.proc != ProcId::ROOT)
        .map(|v| format!("{} maps {:?}", v.proc, v.regions))
        .collect();
    if frames != 0 || !left.is_empty() {
        let mut all = program.ops.clone();
        all.extend(cleanup);
        return Err(format!(
            "frame accounting: after every process but the root exited and the root unmapped \
             every handle, {frames} frames are in use{}\nprogram with the clean-up:\n{}",
            if left.is_empty() {
                String::new()
            } else {
                format!(" and something is still mapped: {}", left.join("; "))
            },
            with_ops(program, all)
        ));
    }
    Ok(Checked {
        observations: program.ops.len(),
    })
}

// ---- (e) determinism -------------------------------------------------------------------------

fn deterministic(program: &Program, make: &Make) -> Result<Checked, String> {
    let first = run(make, &program.ops)?;
    let second = run(make, &program.ops)?;
    if first != second {
        let at = (0..first.outcomes.len())
            .find(|&i| first.outcomes.get(i) != second.outcomes.get(i))
            .map(|i| {
                format!(
                    "op {} ({}): {:?} then {:?}",
                    i + 1,
                    program.ops[i],
                    first.outcomes[i],
                    second.outcomes[i]
                )
            })
            .unwrap_or_else(|| "the snapshots or the frame count".to_string());
        return Err(format!(
            "determinism: two runs of the same program differ at {at}"
        ));
    }
    Ok(Checked {
        observations: first.outcomes.len(),
    })
}

// ---- running the properties ------------------------------------------------------------------

fn patterns() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        (1u8..=255).prop_map(Pattern::Fill),
        any::<u8>().prop_map(Pattern::Ramp)
    ]
}

/// Runs one property over generated programs and extra choices `X`; counts the cases in which
/// it compared anything, so that a property that silently checks nothing is seen.
fn run_property<X: std::fmt::Debug + Clone>(
    property: &Property,
    persist: bool,
    extra: impl Strategy<Value = X>,
    check: &dyn Fn(&Program, &X) -> Result<Checked, String>,
) -> (Ran<(Generated, X)>, u32) {
    let nontrivial = Cell::new(0u32);
    let ran = property.run(persist, &(programs(), extra), |(g, x)| {
        let checked = check(&g.program, &x).map_err(TestCaseError::fail)?;
        if checked.observations > 0 {
            nontrivial.set(nontrivial.get() + 1);
        }
        Ok(())
    });
    (ran, nontrivial.get())
}

/// proptest shrinks the generator's bytes, which leaves programs longer than they need be;
/// cowcheck's own shrinker (drop ops, simplify values) finishes the job with the property as
/// its oracle. Returns the shrunk program and the property's message about it.
fn shrink_further<X>(
    program: &Program,
    x: &X,
    check: &dyn Fn(&Program, &X) -> Result<Checked, String>,
) -> (Program, String) {
    let shrunk = cowcheck::check::shrink::shrink(program, |cand| check(cand, x).is_err());
    let message = match check(&shrunk, x) {
        Err(m) => m,
        Ok(_) => "(the shrunk program passes; see the original)".to_string(),
    };
    (shrunk, message)
}

/// A real run must pass, and must have compared something in at least `min_percent` of its
/// cases. On a failure, the report has proptest's minimal program and cowcheck's shrink of it.
fn expect_pass<X: std::fmt::Debug + Clone>(
    property: &Property,
    extra: impl Strategy<Value = X>,
    check: &dyn Fn(&Program, &X) -> Result<Checked, String>,
    min_percent: u32,
) {
    let (ran, nontrivial) = run_property(property, true, extra, check);
    match ran {
        Ran::Passed { cases, elapsed } => {
            passed(property.name, property.seed, cases, elapsed);
            eprintln!(
                "{}: {nontrivial} of {cases} cases compared something",
                property.name
            );
            assert!(
                nontrivial * 100 >= cases * min_percent,
                "{}: only {nontrivial} of {cases} cases compared anything (want {min_percent}%); \
                 the generator no longer reaches what the property needs",
                property.name
            );
        }
        Ran::Failed { reason, value, .. } => {
            let (g, x) = value;
            let (shrunk, message) = shrink_further(&g.program, &x, check);
            panic!(
                "{}",
                property.failure_report(
                    &format!(
                        "{reason}\nextra choices: {x:?}\n\nshrunk by cowcheck to {} ops:\n{message}",
                        shrunk.ops.len()
                    ),
                    &[("proptest-minimal", &g.program), ("shrunk", &shrunk)],
                    "cowcheck model"
                )
            )
        }
    }
}

/// A counter-run must fail with a message of the property's own, and stay failing when
/// cowcheck's shrinker shrinks it; returns the shrunk program and its message.
fn expect_fail<X: std::fmt::Debug + Clone>(
    property: &Property,
    extra: impl Strategy<Value = X>,
    check: &dyn Fn(&Program, &X) -> Result<Checked, String>,
    needle: &str,
) -> (Program, String) {
    let (ran, _) = run_property(property, false, extra, check);
    match ran {
        Ran::Failed {
            reason,
            value,
            elapsed,
        } => {
            assert!(reason.starts_with(needle), "unexpected failure: {reason}");
            let (g, x) = value;
            let (shrunk, message) = shrink_further(&g.program, &x, check);
            eprintln!(
                "{} (counter-test): caught in {:.2} s; proptest's minimal program has {} ops, \
                 cowcheck's shrink {}:\n{message}\n",
                property.name,
                elapsed.as_secs_f64(),
                g.program.ops.len(),
                shrunk.ops.len()
            );
            assert!(
                message.starts_with(needle),
                "the shrunk program passes: {message}"
            );
            assert!(shrunk.ops.len() <= g.program.ops.len());
            (shrunk, message)
        }
        Ran::Passed { cases, .. } => panic!(
            "{}: the broken model passed {cases} cases; the property cannot fail",
            property.name
        ),
    }
}

fn isolation_check(make: &Make) -> impl Fn(&Program, &Pattern) -> Result<Checked, String> + '_ {
    move |p, pattern| isolation(p, *pattern, make)
}

fn visibility_check(make: &Make) -> impl Fn(&Program, &(u64, u8)) -> Result<Checked, String> + '_ {
    move |p, &(choice, value)| shared_visibility(p, choice, value, make)
}

fn fresh_check(make: &Make) -> impl Fn(&Program, &u64) -> Result<Checked, String> + '_ {
    move |p, &choice| fresh_reads_zero(p, choice, make)
}

fn frames_check(make: &Make) -> impl Fn(&Program, &()) -> Result<Checked, String> + '_ {
    move |p, _| frames_return(p, make)
}

fn determinism_check(make: &Make) -> impl Fn(&Program, &()) -> Result<Checked, String> + '_ {
    move |p, _| deterministic(p, make)
}

fn visibility_choices() -> impl Strategy<Value = (u64, u8)> {
    (any::<u64>(), 1u8..=255)
}

#[test]
fn private_writes_after_fork_stay_private() {
    let property = Property::new("model_isolation", 4000);
    expect_pass(&property, patterns(), &isolation_check(&real_model), 20);
}

#[test]
fn shared_writes_are_seen_by_every_mapper() {
    let property = Property::new("model_shared_visibility", 4000);
    expect_pass(
        &property,
        visibility_choices(),
        &visibility_check(&real_model),
        15,
    );
}

#[test]
fn fresh_mappings_read_zero() {
    let property = Property::new("model_fresh_zero", 5000);
    expect_pass(&property, any::<u64>(), &fresh_check(&real_model), 80);
}

#[test]
fn frames_are_all_returned() {
    let property = Property::new("model_frames", 8000);
    expect_pass(&property, Just(()), &frames_check(&real_model), 50);
}

#[test]
fn the_model_is_deterministic() {
    let property = Property::new("model_determinism", 6000);
    expect_pass(&property, Just(()), &determinism_check(&real_model), 50);
}

// ---- counter-tests ---------------------------------------------------------------------------

#[test]
fn counter_isolation_catches_private_as_shared() {
    let property = Property::new("model_isolation", 4000);
    let (p, _) = expect_fail(
        &property,
        patterns(),
        &isolation_check(&private_as_shared),
        "isolation",
    );
    assert!(p.forks() > 0);
}

#[test]
fn counter_visibility_catches_shared_as_private() {
    let property = Property::new("model_shared_visibility", 4000);
    expect_fail(
        &property,
        visibility_choices(),
        &visibility_check(&shared_as_private),
        "shared visibility",
    );
}

#[test]
fn counter_fresh_zero_catches_dirty_pages() {
    let property = Property::new("model_fresh_zero", 5000);
    let dirty: &Make = &|| Box::new(DirtyFreshPages(Model::new(PAGE)));
    expect_fail(
        &property,
        any::<u64>(),
        &fresh_check(dirty),
        "fresh reads zero",
    );
}

#[test]
fn counter_frames_catches_exits_that_leak() {
    let property = Property::new("model_frames", 8000);
    let leaky: &Make = &|| {
        Box::new(ExitLeaks {
            model: Model::new(PAGE),
            exited: [false; caps::MAX_PROCS],
        })
    };
    let (_, message) = expect_fail(
        &property,
        Just(()),
        &frames_check(leaky),
        "frame accounting",
    );
    assert!(message.contains("frames are in use"), "{message}");
}

#[test]
fn counter_determinism_catches_drifting_placement() {
    let property = Property::new("model_determinism", 6000);
    let drifting: &Make = &|| Box::new(DriftingPlacement::new());
    let (p, _) = expect_fail(
        &property,
        Just(()),
        &determinism_check(drifting),
        "determinism",
    );
    assert!(p.ops.iter().any(|op| matches!(op, Op::Map { .. })));
}

/// The properties judge page states the model names; a smoke check that the generator reaches
/// the states that isolation and visibility are about.
#[test]
fn generated_programs_reach_cow_and_shared_pages() {
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..300u64 {
        let bytes: Vec<u8> = (0..400u64)
            .map(|j| (common::fnv1a(&(i * 1000 + j).to_le_bytes()) >> 7) as u8)
            .collect();
        let program = cowcheck::program::generate::from_bytes(&bytes, Default::default());
        let mut model = Model::new(PAGE);
        for op in &program.ops {
            let _ = model.apply(op, None);
            for m in (0..caps::MAX_MAPS as u8).map(MapId) {
                let Some(h) = model.handle(m) else { continue };
                for p in (0..caps::MAX_PROCS as u8).map(ProcId) {
                    if model.life(p) == Life::Alive {
                        seen.insert(model.page_state(p, h.base).0);
                    }
                }
            }
        }
    }
    for state in [
        PageState::PrivateCowShared,
        PageState::PrivateExclusive,
        PageState::SharedWithOthers,
    ] {
        assert!(seen.contains(&state), "never reached {state:?}: {seen:?}");
    }
}

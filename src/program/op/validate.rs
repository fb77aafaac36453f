//! The static rules of the op language ([`Validator`]), applied op by op: handles exist before
//! they are used, new handles are fresh, ranges lie inside their mapping, and the caps hold. An
//! error names the part of the op at fault ([`Culprit`]) so that the trace parser can point at
//! its token. Whether an op kills its process is dynamic, never a validation error.

use super::alloc::{AllocTable, Part, Refusal, check_alloc_span};
use super::args::{Advice, MapArgs, MapKind};
use super::caps;
use super::clone_vm::CloneRules;
use super::handle::{At, MapId, ProcId};
use super::ops::Op;
use super::program::Program;
use super::span::{PageRange, Span};
use super::thread::{Blame, Refused, ThreadRules};
use super::thread_ops::OpThreads;

/// Which part of an op a validation error is about, so that the trace parser can point at the
/// token's column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Culprit {
    Proc,
    Child,
    Map,
    Span,
    Count,
    /// A map's `fd` or `offset`.
    Args,
}

/// Why an op cannot stand where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidOp {
    pub culprit: Culprit,
    pub message: String,
}

fn invalid(culprit: Culprit, message: String) -> InvalidOp {
    InvalidOp { culprit, message }
}

/// The static rules of the language, applied op by op: handles exist before they are used, new
/// handles are fresh, ranges lie inside their mapping, and the caps hold. Whether an op kills its
/// process is dynamic and never an error: ops of a dead process are skipped on both sides.
#[derive(Clone, Debug)]
pub struct Validator {
    procs: [ProcState; caps::MAX_PROCS],
    maps: [Option<u16>; caps::MAX_MAPS],
    /// Allocation handles (`alloc.rs`): never mappings, live per process.
    allocs: AllocTable,
    live: usize,
    ops: usize,
    /// Pages of the maps past `caps::CLASSIC_MAP_PAGES` so far (bounded by `caps::MAX_BIG_PAGES`).
    big_pages: u32,
    threads: ThreadRules,
    clone_vm: CloneRules,
    op_threads: OpThreads,
    /// The handles made by a `map ... hugetlb` (a bit each): the ops the model does not cover
    /// on them are refused (`check_hugetlb`, docs/SEMANTICS.md L6).
    hugetlb: u32,
    /// Those of them that are shared.
    hugetlb_shared: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProcState {
    Unborn,
    Alive,
    Exited,
}

impl Default for Validator {
    fn default() -> Self {
        let mut procs = [ProcState::Unborn; caps::MAX_PROCS];
        procs[0] = ProcState::Alive;
        Validator {
            procs,
            maps: [None; caps::MAX_MAPS],
            allocs: AllocTable::default(),
            live: 1,
            ops: 0,
            big_pages: 0,
            threads: ThreadRules::default(),
            clone_vm: CloneRules::default(),
            op_threads: OpThreads::default(),
            hugetlb: 0,
            hugetlb_shared: 0,
        }
    }
}

impl Validator {
    pub fn new() -> Validator {
        Validator::default()
    }

    /// Pages declared for a mapping handle, if it exists yet.
    pub fn map_pages(&self, map: MapId) -> Option<u16> {
        self.maps.get(map.0 as usize).copied().flatten()
    }

    /// Whether a mapping handle was made by a `map ... hugetlb`.
    pub fn is_hugetlb(&self, map: MapId) -> bool {
        (map.0 as usize) < caps::MAX_MAPS && self.hugetlb & 1 << map.0 != 0
    }

    /// The allocation handles (which are live where).
    pub fn allocs(&self) -> &AllocTable {
        &self.allocs
    }

    /// Whether a process handle has been created and has not exited.
    pub fn is_alive(&self, proc: ProcId) -> bool {
        self.procs.get(proc.0 as usize) == Some(&ProcState::Alive)
    }

    /// Checks `op` against everything admitted before it and, if it is valid, admits it.
    pub fn admit(&mut self, op: &Op) -> Result<(), InvalidOp> {
        if self.ops >= caps::MAX_OPS {
            return Err(invalid(
                Culprit::Proc,
                format!("more than {} ops in one program", caps::MAX_OPS),
            ));
        }
        let proc = op.proc();
        match self.procs.get(proc.0 as usize) {
            None => {
                return Err(invalid(
                    Culprit::Proc,
                    format!(
                        "process handle {proc} is past the cap of {} processes",
                        caps::MAX_PROCS
                    ),
                ));
            }
            Some(ProcState::Unborn) => {
                return Err(invalid(
                    Culprit::Proc,
                    format!("unknown process {proc}: no fork created it"),
                ));
            }
            Some(ProcState::Exited) => {
                return Err(invalid(
                    Culprit::Proc,
                    format!("process {proc} has already exited"),
                ));
            }
            Some(ProcState::Alive) => {}
        }
        // Checked first and kept only if the op is admitted (a refused op changes nothing).
        let mut op_threads = self.op_threads.clone();
        op_threads.admit(op).map_err(thread_refused)?;
        self.check_hugetlb(op)?;
        let mut threads = self.threads.clone();
        threads.admit(op).map_err(thread_refused)?;
        let mut clone_vm = self.clone_vm.clone();
        clone_vm.admit(op).map_err(|message| InvalidOp {
            culprit: Culprit::Proc,
            message,
        })?;
        match *op {
            Op::Write { map, span, .. } | Op::Read { map, span, .. }
                if self.allocs.is_alloc(map) =>
            {
                check_alloc_span(span, self.allocs.live(proc, map).map_err(refused)?)
                    .map_err(refused)?;
            }
            Op::Alloc {
                map, call, size, ..
            } => {
                self.fresh(map)?;
                self.allocs.create(proc, map, call, size).map_err(refused)?;
            }
            Op::Free { map, .. } => {
                self.allocs.live(proc, map).map_err(refused)?;
                self.allocs.free(proc, map);
            }
            Op::Tune { .. } => {}
            Op::Map {
                map,
                kind,
                pages,
                tail,
                args,
                ..
            } => {
                check_tail(tail, Culprit::Count)?;
                check_args(kind, args)?;
                if args.hugetlb {
                    // The handle covers the whole huge pages the length rounds up to (L6).
                    self.new_map(
                        map,
                        pages.div_ceil(caps::HUGETLB_PAGES) * caps::HUGETLB_PAGES,
                    )?;
                    self.hugetlb |= 1 << map.0;
                    if kind.is_shared() {
                        self.hugetlb_shared |= 1 << map.0;
                    }
                } else {
                    self.new_map(map, pages)?
                }
            }
            Op::Write { map, span, .. }
            | Op::Read { map, span, .. }
            | Op::Poke { map, span, .. } => {
                let pages = self.known_map(map)?;
                check_span(span, pages)?;
            }
            // A vfork child stores only to a program mapping (docs/SEMANTICS.md T5).
            Op::Vfork { map, span, .. } => {
                if self.allocs.is_alloc(map) {
                    return Err(invalid(
                        Culprit::Map,
                        "a vfork child writes only to a mapping, not to an allocator's block (nothing of the allocator is safe in a vfork child)".into(),
                    ));
                }
                let pages = self.known_map(map)?;
                check_span(span, pages)?;
            }
            Op::PipeRead { .. } | Op::Stop { .. } => {}
            // Op threads: `thread_ops.rs`.
            Op::Thread { .. } | Op::By { .. } | Op::End { .. } => {}
            Op::Vmsplice { map, page, .. } | Op::Race { map, page, .. } => {
                let pages = self.known_map(map)?;
                // A remap race's spare page, the next one, lies in the handle too (T13).
                let n = match *op {
                    Op::Race { kind, .. } => kind.pages(),
                    _ => 1,
                };
                check_span(
                    Span::Pages(PageRange {
                        start: page,
                        end: page.saturating_add(n),
                    }),
                    pages,
                )?;
            }
            Op::Unmap {
                map,
                pages: range,
                tail,
                ..
            } => {
                let pages = self.known_map(map)?;
                check_span(Span::Pages(range), pages)?;
                check_tail(tail, Culprit::Span)?;
            }
            Op::Fork { child, .. } | Op::CloneVm { child, .. } => {
                match self.procs.get(child.0 as usize) {
                    None => {
                        return Err(invalid(
                            Culprit::Child,
                            format!(
                                "process handle {child} is past the cap of {} processes",
                                caps::MAX_PROCS
                            ),
                        ));
                    }
                    Some(ProcState::Unborn) => {}
                    Some(_) => {
                        return Err(invalid(
                            Culprit::Child,
                            format!(
                                "process handle {child} is already taken; a {} needs a new handle",
                                op.kind().name()
                            ),
                        ));
                    }
                }
                if self.live >= caps::MAX_LIVE {
                    return Err(invalid(
                        Culprit::Child,
                        format!("more than {} processes alive at once", caps::MAX_LIVE),
                    ));
                }
                self.procs[child.0 as usize] = ProcState::Alive;
                self.live += 1;
                self.allocs.fork(proc, child);
            }
            Op::Exit { .. } => {
                self.procs[proc.0 as usize] = ProcState::Exited;
                self.live -= 1;
            }
            Op::MapAt {
                map,
                kind,
                pages,
                tail,
                args,
                at,
                ..
            } => {
                check_tail(tail, Culprit::Count)?;
                check_args(kind, args)?;
                check_at(at)?;
                let target = self.known_map(at.map)?;
                if at.page >= target {
                    return Err(invalid(
                        Culprit::Span,
                        format!(
                            "page {} is out of range: {} has {target} pages",
                            at.page, at.map
                        ),
                    ));
                }
                // Placement stays inside the target's range, so MAP_FIXED can never land on
                // the harness's own memory.
                if at.page as u32 + pages as u32 > target as u32 {
                    return Err(invalid(
                        Culprit::Count,
                        format!(
                            "{pages} pages from {}+{} run past its {target} pages",
                            at.map, at.page
                        ),
                    ));
                }
                self.new_map(map, pages)?;
            }
            Op::Protect {
                map,
                pages: range,
                tail,
                ..
            } => {
                let pages = self.known_map(map)?;
                check_span(Span::Pages(range), pages)?;
                check_tail(tail, Culprit::Span)?;
            }
            // An empty range A..A (A inside the mapping) is a length of 0 (F14).
            Op::Advise {
                map,
                pages: range,
                tail,
                ..
            } => {
                let pages = self.known_map(map)?;
                if range.start == range.end {
                    check_empty(range, tail, pages)?;
                } else {
                    check_span(Span::Pages(range), pages)?;
                    check_tail(tail, Culprit::Span)?;
                }
            }
            Op::Remap {
                map,
                old,
                old_tail,
                new_pages,
                new_tail,
                flags,
                result,
                ..
            } => {
                let pages = self.known_map(map)?;
                if old.start > old.end || old.end > pages || old.start >= pages {
                    return Err(invalid(
                        Culprit::Span,
                        format!(
                            "page range {}..{} is out of range: the mapping has {pages} pages",
                            old.start, old.end
                        ),
                    ));
                }
                if old.start == old.end {
                    check_empty(old, old_tail, pages)?;
                }
                check_tail(old_tail, Culprit::Span)?;
                check_tail(new_tail, Culprit::Count)?;
                if let Some(at) = flags.fixed {
                    check_at(at)?;
                    let target = self.known_map(at.map)?;
                    if at.page as u32 + new_pages as u32 > target as u32 {
                        return Err(invalid(
                            Culprit::Count,
                            format!(
                                "{new_pages} pages from {}+{} run past its {target} pages",
                                at.map, at.page
                            ),
                        ));
                    }
                }
                self.new_map(result, new_pages)?;
            }
            Op::Invalid { map, call, bad, .. } => {
                self.known_map(map)?;
                if !bad.applies_to(call) {
                    return Err(invalid(
                        Culprit::Count,
                        format!(
                            "{} is not a bad argument cowcheck checks for {}",
                            bad.name(),
                            call.name()
                        ),
                    ));
                }
            }
        }
        self.threads = threads;
        self.clone_vm = clone_vm;
        self.op_threads = op_threads;
        self.ops += 1;
        Ok(())
    }

    /// A handle no map, remap or allocation has taken.
    fn fresh(&self, map: MapId) -> Result<(), InvalidOp> {
        if self.allocs.is_alloc(map) || matches!(self.maps.get(map.0 as usize), Some(Some(_))) {
            return Err(invalid(
                Culprit::Map,
                format!("handle {map} is already taken; an allocation needs a new handle"),
            ));
        }
        if map.0 as usize >= caps::MAX_MAPS {
            return Err(invalid(
                Culprit::Map,
                format!("handle {map} is past the cap of {} handles", caps::MAX_MAPS),
            ));
        }
        Ok(())
    }

    /// The racing threads' rules and state (the generator asks them what may race).
    pub fn threads(&self) -> &ThreadRules {
        &self.threads
    }

    /// The op threads' rules and state (`thread_ops.rs`: who owns a thread, which are free).
    pub fn op_threads(&self) -> &OpThreads {
        &self.op_threads
    }

    fn new_map(&mut self, map: MapId, pages: u16) -> Result<(), InvalidOp> {
        if self.allocs.is_alloc(map) {
            return Err(invalid(
                Culprit::Map,
                format!("handle {map} is taken by an allocation; a map needs a new handle"),
            ));
        }
        match self.maps.get(map.0 as usize) {
            None => {
                return Err(invalid(
                    Culprit::Map,
                    format!(
                        "mapping handle {map} is past the cap of {} mappings",
                        caps::MAX_MAPS
                    ),
                ));
            }
            Some(Some(_)) => {
                return Err(invalid(
                    Culprit::Map,
                    format!("mapping handle {map} is already taken; a map needs a new handle"),
                ));
            }
            Some(None) => {}
        }
        if pages == 0 || pages > caps::MAX_MAP_PAGES {
            return Err(invalid(
                Culprit::Count,
                format!(
                    "a map takes 1 to {} pages, not {pages}",
                    caps::MAX_MAP_PAGES
                ),
            ));
        }
        if pages > caps::CLASSIC_MAP_PAGES {
            let big = self.big_pages + pages as u32;
            if big > caps::MAX_BIG_PAGES {
                return Err(invalid(
                    Culprit::Count,
                    format!(
                        "maps longer than {} pages may take {} pages together, not {big}",
                        caps::CLASSIC_MAP_PAGES,
                        caps::MAX_BIG_PAGES
                    ),
                ));
            }
            self.big_pages = big;
        }
        self.maps[map.0 as usize] = Some(pages);
        Ok(())
    }

    fn known_map(&self, map: MapId) -> Result<u16, InvalidOp> {
        self.map_pages(map).ok_or_else(|| {
            invalid(
                Culprit::Map,
                format!("unknown mapping {map}: no earlier map op created it"),
            )
        })
    }
}

impl Validator {
    /// The ops the model does not cover on hugetlb memory (docs/SEMANTICS.md L6): a placed
    /// map that is hugetlb or lands in a hugetlb handle, mremap from or onto one (L5 measured
    /// it; not modelled), vmsplice, forced writes, racing threads, vfork children, calls with
    /// a bad argument, MADV_REMOVE of shared hugetlb memory (hugetlbfs punches whole huge
    /// pages and zeroes partial ones) and MADV_POPULATE_*.
    fn check_hugetlb(&self, op: &Op) -> Result<(), InvalidOp> {
        let refuse = |what: &str| {
            Err(invalid(
                Culprit::Map,
                format!("{what} is not covered on hugetlb memory (docs/SEMANTICS.md L6)"),
            ))
        };
        let huge = |m: MapId| self.is_hugetlb(m);
        match *op {
            Op::MapAt { args, at, .. } if args.hugetlb || huge(at.map) => {
                refuse("a map with a placement")
            }
            Op::Remap { map, flags, .. }
                if huge(map) || flags.fixed.is_some_and(|a| huge(a.map)) =>
            {
                refuse("mremap")
            }
            Op::Vmsplice { map, .. }
            | Op::Poke { map, .. }
            | Op::Race { map, .. }
            | Op::Vfork { map, .. }
            | Op::Invalid { map, .. }
                if huge(map) =>
            {
                refuse(op.kind().name())
            }
            Op::Advise { map, advice, .. }
                if huge(map)
                    && (matches!(advice, Advice::PopulateRead | Advice::PopulateWrite)
                        || (advice == Advice::Remove && self.hugetlb_shared & 1 << map.0 != 0)) =>
            {
                refuse(advice.name())
            }
            _ => Ok(()),
        }
    }
}

/// An allocator op's refusal (`alloc.rs`) as a validation error.
fn refused(r: Refusal) -> InvalidOp {
    let culprit = match r.part {
        Part::Map => Culprit::Map,
        Part::Span => Culprit::Span,
        Part::Count => Culprit::Count,
        Part::Args => Culprit::Args,
    };
    invalid(culprit, r.message)
}

/// A length's tail: at most the smallest page size (`caps::MAX_BYTE_OFFSET`), so that the
/// length rounds to the same pages on every page size.
fn check_tail(tail: u16, culprit: Culprit) -> Result<(), InvalidOp> {
    if tail > caps::MAX_BYTE_OFFSET {
        return Err(invalid(
            culprit,
            format!(
                "a length's last page holds 1 to {} bytes, not {tail}",
                caps::MAX_BYTE_OFFSET
            ),
        ));
    }
    Ok(())
}

/// An empty range (a length of 0): it starts inside the mapping and has no tail.
fn check_empty(range: PageRange, tail: u16, pages: u16) -> Result<(), InvalidOp> {
    if range.start >= pages {
        return Err(invalid(
            Culprit::Span,
            format!(
                "page {} is out of range: the mapping has {pages} pages",
                range.start
            ),
        ));
    }
    if tail != 0 {
        return Err(invalid(
            Culprit::Span,
            "an empty range has no bytes of a last page".to_string(),
        ));
    }
    Ok(())
}

/// An address's byte inside its page: less than the smallest page size, so that it is
/// unaligned on every page size.
fn check_at(at: At) -> Result<(), InvalidOp> {
    if at.byte >= caps::MAX_BYTE_OFFSET {
        return Err(invalid(
            Culprit::Span,
            format!(
                "an address lies 0 to {} bytes into its page, not {}",
                caps::MAX_BYTE_OFFSET - 1,
                at.byte
            ),
        ));
    }
    Ok(())
}

/// A map's fd and offset: an offset only for anonymous memory (what Linux does with a
/// /dev/zero offset is not modelled), its bytes less than the smallest page size.
fn check_args(kind: MapKind, args: MapArgs) -> Result<(), InvalidOp> {
    if !args.offset.is_zero() && kind.uses_dev_zero() {
        return Err(invalid(
            Culprit::Args,
            format!(
                "only anonymous mappings take an offset here, not {}",
                kind.name()
            ),
        ));
    }
    if args.hugetlb && (kind.uses_dev_zero() || args.fd || !args.offset.is_zero()) {
        return Err(invalid(
            Culprit::Args,
            "hugetlb maps only anonymous memory here (private or shared), with no fd and no offset"
                .to_string(),
        ));
    }
    if args.offset.bytes >= caps::MAX_BYTE_OFFSET {
        return Err(invalid(
            Culprit::Args,
            format!(
                "an offset's bytes past its pages are 0 to {}, not {}",
                caps::MAX_BYTE_OFFSET - 1,
                args.offset.bytes
            ),
        ));
    }
    Ok(())
}

fn check_span(span: Span, pages: u16) -> Result<(), InvalidOp> {
    match span {
        Span::Pages(r) => {
            if r.start >= r.end {
                return Err(invalid(
                    Culprit::Span,
                    format!("empty page range {}..{}", r.start, r.end),
                ));
            }
            if r.end > pages {
                return Err(invalid(
                    Culprit::Span,
                    format!(
                        "page range {}..{} is out of range: the mapping has {pages} pages",
                        r.start, r.end
                    ),
                ));
            }
        }
        Span::Bytes { page, start, end } => {
            if page >= pages {
                return Err(invalid(
                    Culprit::Span,
                    format!("page {page} is out of range: the mapping has {pages} pages"),
                ));
            }
            if start >= end || end > caps::MAX_BYTE_OFFSET {
                return Err(invalid(
                    Culprit::Span,
                    format!(
                        "byte range {start}..{end} must be non-empty and end at most {}",
                        caps::MAX_BYTE_OFFSET
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl Program {
    /// Checks the whole program; on error, the index of the first invalid op.
    pub fn validate(&self) -> Result<(), (usize, InvalidOp)> {
        let mut v = Validator::new();
        for (i, op) in self.ops.iter().enumerate() {
            v.admit(op).map_err(|e| (i, e))?;
        }
        Ok(())
    }
}

/// A refusal of the racing threads' or the op threads' rules, as the validator reports it.
fn thread_refused(r: Refused) -> InvalidOp {
    InvalidOp {
        culprit: match r.blame {
            Blame::Proc => Culprit::Proc,
            Blame::Thread => Culprit::Child,
            Blame::Span => Culprit::Span,
        },
        message: r.message,
    }
}

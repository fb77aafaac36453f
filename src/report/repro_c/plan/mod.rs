//! The plan of a C reproducer: the model walked over the program, op by op, and what each op
//! and each state check must find on the real kernel. Pure data: this module decides what to
//! expect and never writes C (that is `emit`); it never touches the kernel.
//!
//! Expectations come from the model, run with `Model::apply(op, None)`. Where the kernel, not
//! the model, decides (where a mapping lands, what a pipe page shows), the plan leaves out what
//! depends on that choice or allows every view the model allows; where the model allows two
//! lines of events (a successful MADV_FREE, a vmsplice of a write-only page), it refuses.

mod layout;
mod pipe;

use std::collections::VecDeque;
use std::ops::Range;

use layout::Placed;
use pipe::{PipePage, pipe_read_digests};

use super::error::ReproError;
use super::race::{RaceCheck, Races};
use crate::model::{Model, UNREADABLE, Watch};
use crate::program::outcome::Outcome;
use crate::program::tables::{self, errno::EFAULT};
use crate::program::{Advice, MapId, Op, ProcId, Program, Via, caps};

/// What the reproducer of one program checks, for pages of `page_size` bytes.
pub struct Plan {
    pub page_size: usize,
    /// Process handles p0..p(nproc-1).
    pub nproc: usize,
    /// Pages of each mapping handle m0..m(n-1), the largest its making ops declare (at least
    /// one handle).
    pub map_pages: Vec<u16>,
    /// One step per op of the program, in order.
    pub steps: Vec<Step>,
    /// The state checks, in the order they run (after their op, by process).
    pub checks: Vec<StateCheck>,
    /// Whether the program has racing threads (then the reproducer runs it in rounds).
    pub racing: bool,
    /// Reads with a racing page: (op index, per page of the span, how its word is checked).
    pub read_races: Vec<(usize, Vec<Option<RaceCheck>>)>,
}

/// What one op must do.
pub struct Step {
    pub want: Want,
    /// The model's prediction, in words.
    pub says: String,
}

/// The outcome the model predicts for an op.
#[derive(Debug, PartialEq, Eq)]
pub enum Want {
    /// Nothing runs: the process is not alive, or a handle the op needs was never made.
    Skipped,
    /// The call succeeds (where a mapping lands is checked only where it is not the kernel's
    /// choice).
    Ok,
    /// A read: one digest per page of the span.
    Read { digests: Vec<u64> },
    /// A pipe-read: one page whose digest is any of these (the views the model allows).
    ReadAny { digests: Vec<u64> },
    /// The process dies by `signal` with `code`, in page `page` of a handle (`None`: outside
    /// every handle), after reading pages with these digests.
    Killed {
        signal: i32,
        code: i32,
        page: Option<(MapId, u16)>,
        digests: Vec<u64>,
    },
    /// The call fails with this errno.
    Failed { errno: i32 },
    /// A reader's stop: what it loaded must pass this check (docs/SEMANTICS.md T10).
    Watched { watch: Watch },
}

/// After op `after_op`, process `proc` must be in this state.
pub struct StateCheck {
    pub after_op: usize,
    pub proc: ProcId,
    pub rows: Vec<Row>,
}

/// One row of a state check: page `page` of handle `map` must be mapped or not, and if
/// readable, have this digest.
pub struct Row {
    pub map: u8,
    pub page: u16,
    pub mapped: bool,
    pub readable: bool,
    pub digest: u64,
    /// What pagemap must say of it (`phys::*` bits; docs/SEMANTICS.md I3, I5, I7).
    pub phys: u8,
    /// Where a racing thread decides its last word, how that is checked.
    pub race: Option<RaceCheck>,
}

/// The physical facts a row checks, as `runtime.c`'s `PHYS_*` bits.
pub mod phys {
    /// Present (or swapped out) (I3).
    pub const MUST: u8 = 1;
    /// Not present (I3).
    pub const NEVER: u8 = 2;
    /// If present, the zero page: not exclusive, not a file page (I5).
    pub const ZERO: u8 = 4;
    /// If present, a file/shared page (I7).
    pub const SHARED: u8 = 8;
    /// If present, an anonymous page (I7).
    pub const ANON: u8 = 16;
}

/// The physical facts of one page's prediction that hold whatever other processes do.
fn phys_bits(p: &crate::model::Prediction) -> u8 {
    use crate::model::{Identity, Presence};
    let mut b = match p.presence {
        Presence::Must => phys::MUST,
        Presence::Never => phys::NEVER,
        Presence::May => 0,
    };
    if !p.open {
        b |= match p.identity {
            Some(Identity::Zero) => phys::ZERO,
            _ if p.shared => phys::SHARED,
            _ => phys::ANON,
        };
    }
    b
}

/// Walks the model over `program` and records what every op and state check must find.
pub fn plan(program: &Program, page_size: usize) -> Result<Plan, ReproError> {
    program
        .validate()
        .map_err(|(index, e)| ReproError::Invalid {
            index: index + 1,
            message: e.message,
        })?;
    let nproc = program
        .ops
        .iter()
        .map(|op| match *op {
            Op::Fork { proc, child } | Op::CloneVm { proc, child } => proc.0.max(child.0),
            _ => op.proc().0,
        })
        .max()
        .map_or(1, |m| m as usize + 1);
    let mut map_pages = [0u16; caps::MAX_MAPS];
    for op in &program.ops {
        match *op {
            Op::Map {
                map, pages, args, ..
            }
            | Op::MapAt {
                map, pages, args, ..
            } => {
                // A hugetlb map's handle covers whole huge pages (docs/SEMANTICS.md L6).
                let h = if args.hugetlb { caps::HUGETLB_PAGES } else { 1 };
                map_pages[map.0 as usize] = map_pages[map.0 as usize].max(pages.div_ceil(h) * h)
            }
            Op::Remap {
                result, new_pages, ..
            } => map_pages[result.0 as usize] = map_pages[result.0 as usize].max(new_pages),
            // A block's handle is a handle too (its "pages": its 4096-byte units).
            Op::Alloc { map, size, .. } => {
                map_pages[map.0 as usize] =
                    crate::program::alloc_units(size).min(u16::MAX as u32) as u16
            }
            _ => {}
        }
    }
    let nmap = map_pages.iter().rposition(|&p| p > 0).map_or(1, |i| i + 1);

    let mut walk = Walk {
        model: Model::new(page_size),
        page_size,
        uncertain: Vec::new(),
        placed: Vec::new(),
        birth: [0; caps::MAX_PROCS],
        pipe: VecDeque::new(),
        races: Races::default(),
        read_races: Vec::new(),
    };
    let mut steps = Vec::with_capacity(program.ops.len());
    let mut checks = Vec::new();
    let last = program.ops.len().saturating_sub(1);
    for (i, op) in program.ops.iter().enumerate() {
        steps.push(walk.step(i, op)?);
        if op.snapshot_after() || i == last {
            checks.extend(walk.state_checks(i));
        }
    }
    Ok(Plan {
        page_size,
        nproc,
        map_pages: map_pages[..nmap].to_vec(),
        steps,
        checks,
        racing: walk.races.any,
        read_races: walk.read_races,
    })
}

/// The model as the plan follows it, with what the kernel's own choices leave open.
struct Walk {
    model: Model,
    page_size: usize,
    /// Pages of handles where the kernel, not the model, decides what is mapped: the source of a
    /// remap that may move (moved or grown in place), the range a hint names (taken or not).
    uncertain: Vec<(u8, Range<u16>)>,
    /// Handles the kernel placed by its own choice, with the op that made them: in processes
    /// that did not inherit them, whether their range is mapped depends on that choice.
    placed: Vec<Placed>,
    /// The op index of each process's fork.
    birth: [usize; caps::MAX_PROCS],
    /// The pages in the program's pipe, oldest first, as the model holds them.
    pipe: VecDeque<PipePage>,
    /// The program's racing threads, as the plan follows them.
    races: Races,
    read_races: Vec<(usize, Vec<Option<RaceCheck>>)>,
}

impl Walk {
    /// Runs op `i` in the model and says what the kernel must do.
    fn step(&mut self, i: usize, op: &Op) -> Result<Step, ReproError> {
        let page_size = self.page_size;
        let stopping = self.races.before(&self.model, i, op);
        // A vfork child that stores and exits is expressed (docs/SEMANTICS.md T5); one that
        // dies would meet the parent's fault handler, which shares its memory.
        if let Op::Vfork { .. } = op
            && let Ok(Outcome::Killed { .. }) = self.model.clone().apply(op, None)
        {
            return Err(ReproError::Unsupported {
                index: i + 1,
                op: op.to_string(),
                kind: "vfork whose child dies",
                known: "vfork children that store and exit: a dying child would meet the parent's fault handler".into(),
            });
        }
        // A vmsplice of a write-only page may fail with EFAULT or succeed, at the kernel's
        // choice (the model allows both): the pipe's later contents would then differ, and the
        // reproducer follows one line of events only.
        if let Op::Vmsplice { .. } = op {
            let a = self.model.clone().apply(op, None);
            let b = self
                .model
                .clone()
                .step(op, Some(&Outcome::Failed { errno: EFAULT }));
            if let (Ok(a), Ok(b)) = (a, b)
                && a != b
            {
                return Err(ReproError::Unsupported {
                    index: i + 1,
                    op: op.to_string(),
                    kind: "vmsplice of a write-only page",
                    known: "every other vmsplice: the model allows both success and EFAULT there, and the pipe's later contents depend on which".into(),
                });
            }
        }
        // A read of bytes the allocator left open (M2): the kernel's run says what they are,
        // the model alone cannot, and the reproducer checks exact digests.
        if let Op::Read { map, .. } = op
            && self.model.is_alloc(*map)
        {
            let a = self.model.clone().apply(op, None);
            let b = self.model.clone().step(
                op,
                Some(&Outcome::Read {
                    digests: vec![UNREADABLE; caps::MAX_MAP_PAGES as usize],
                }),
            );
            if let (Ok(a), Ok(b)) = (a, b)
                && a != b
            {
                return Err(ReproError::Unsupported {
                    index: i + 1,
                    op: op.to_string(),
                    kind: "read of allocated bytes never written",
                    known: "reads of bytes the program wrote, and of calloc's: malloc leaves the others open".into(),
                });
            }
        }
        // An access to a page whose layout a racing thread left open (T11, T12).
        if let Some(e) = super::race::open_layout_refusal(&self.model, i, op, page_size) {
            return Err(e);
        }
        // What a pipe-read may see: computed before the model consumes the page.
        let pipe_allowed = match op {
            Op::PipeRead { .. } => self
                .pipe
                .front()
                .map(|p| pipe_read_digests(&self.model, op, p)),
            _ => None,
        };
        let watch = super::race::watch_before(&self.model, op);
        let outcome = self
            .model
            .apply(op, None)
            .map_err(|e| ReproError::Model(e.to_string()))?;
        self.follow_pipe(op, &outcome);
        if let Some(at) = stopping {
            self.races.stopped(&self.model, i, at);
        }
        let racy_read = match self.races.read_checks(&self.model, op, &outcome) {
            Ok(Some((per_page, words))) => {
                self.read_races.push((i, per_page));
                Some(words)
            }
            Ok(None) => None,
            Err(()) => {
                return Err(ReproError::Unsupported {
                    index: i + 1,
                    op: op.to_string(),
                    kind: "a read of part of a racing thread's word",
                    known: "reads that cover the whole word or none of it".into(),
                });
            }
        };
        // (A length of 0 frees nothing: docs/SEMANTICS.md F14.)
        if let (
            Op::Advise {
                advice: Advice::Free,
                pages,
                ..
            },
            Outcome::Done,
        ) = (op, &outcome)
            && !pages.is_empty()
        {
            return Err(ReproError::Unsupported {
                index: i + 1,
                op: op.to_string(),
                kind: "advise free (when it succeeds)",
                known: "every other op: after MADV_FREE each page reads old or zero at the kernel's choice, and the reproducer checks exact bytes".into(),
            });
        }
        // A free thread's page reads old or zero at the kernel's choice too (T15).
        if let (
            Op::Race {
                kind: crate::program::RaceKind::Free,
                ..
            },
            Outcome::Done,
        ) = (op, &outcome)
        {
            return Err(ReproError::Unsupported {
                index: i + 1,
                op: op.to_string(),
                kind: "race free (when it starts)",
                known: "every other race kind: a page a free thread frees reads old or zero at the kernel's choice, and the reproducer checks exact bytes".into(),
            });
        }
        let mapped = matches!(outcome, Outcome::Mapped { .. });
        let step = match outcome {
            // The model never predicts a hang (only an observation can be one).
            Outcome::Skipped | Outcome::Hung => Step {
                want: Want::Skipped,
                says: format!(
                    "skipped: {} is not alive or the mapping was never made",
                    op.proc()
                ),
            },
            Outcome::Watched { .. } => {
                let (watch, says) = super::race::watched(watch);
                Step {
                    want: Want::Watched { watch },
                    says,
                }
            }
            Outcome::Mapped { .. }
            | Outcome::Done
            | Outcome::Stopped { .. }
            | Outcome::Forked { .. }
            | Outcome::Allocated { .. } => Step {
                want: Want::Ok,
                says: success_words(op),
            },
            Outcome::Read { .. } if matches!(op, Op::PipeRead { .. }) => {
                let allowed = pipe_allowed.ok_or_else(|| {
                    ReproError::Model(format!(
                        "op {} ({op}): the model reads a page from a pipe the generator sees empty",
                        i + 1
                    ))
                })?;
                let words: Vec<String> = allowed
                    .iter()
                    .map(|(d, b)| {
                        if b.is_empty() {
                            format!("digest {d:016x}")
                        } else {
                            crate::report::describe_bytes(b)
                        }
                    })
                    .collect();
                let says = if words.len() == 1 {
                    format!("reads one page from the pipe: {}", words[0])
                } else {
                    format!(
                        "reads one page from the pipe, any of: {} (whether the splicer's own later write went in place is the kernel's choice)",
                        words.join(" | ")
                    )
                };
                Step {
                    want: Want::ReadAny {
                        digests: allowed.iter().map(|(d, _)| *d).collect(),
                    },
                    says,
                }
            }
            Outcome::Read { digests } => Step {
                want: Want::Read { digests },
                // A racing word's value is the run's: the model's is only a stand-in.
                says: match racy_read {
                    None => format!("reads {}", read_words(&self.model, op, page_size)),
                    Some(words) => format!("reads {words}"),
                },
            },
            Outcome::Killed { death, digests } => {
                let page = self.model.locate(death.page);
                let at = page.map_or(String::new(), |(m, p)| format!(" at m{} page {p}", m.0));
                Step {
                    says: format!(
                        "dies by {} ({}){at}",
                        tables::signal_name(death.signal).unwrap_or("a signal"),
                        tables::code_c_name(death.signal, death.code).unwrap_or("si_code")
                    ),
                    want: Want::Killed {
                        signal: death.signal,
                        code: death.code,
                        page,
                        digests,
                    },
                }
            }
            Outcome::Failed { errno } => Step {
                want: Want::Failed { errno },
                says: format!(
                    "fails with {}",
                    tables::errno_name(errno)
                        .map_or_else(|| format!("errno {errno}"), String::from)
                ),
            },
        };
        self.note_placement(i, op, mapped);
        Ok(step)
    }
}

/// What a successful op does, in words.
fn success_words(op: &Op) -> String {
    match op {
        Op::Map { pages, tail, .. } | Op::MapAt { pages, tail, .. } if *tail != 0 => {
            let whole = pages - 1;
            match whole {
                0 => format!("maps {tail} byte(s): one page"),
                _ => format!("maps {whole} page(s) and {tail} byte(s): {pages} pages"),
            }
        }
        Op::Map { pages, .. } | Op::MapAt { pages, .. } => format!("maps {pages} page(s)"),
        Op::Remap { result, .. } => format!("remaps as {result}"),
        Op::Protect { prot, .. } => format!("mprotect {} succeeds", prot.name()),
        Op::Advise { advice, .. } => format!("madvise {} succeeds", advice.name()),
        Op::Write { .. } => "writes".into(),
        Op::Fork { child, .. } => format!("forks {child}"),
        Op::Exit { .. } => "exits".into(),
        Op::Unmap { .. } => "unmaps".into(),
        Op::Poke { via, .. } => format!(
            "writes through {}",
            match via {
                Via::Mem => "/proc/self/mem",
                Via::Vm => "process_vm_writev",
            }
        ),
        Op::Vmsplice { .. } => "vmsplices one page into the pipe".into(),
        Op::Read { .. } | Op::Invalid { .. } | Op::PipeRead { .. } => "succeeds".into(),
        Op::Alloc { call, size, .. } => format!("{} of {size} bytes succeeds", call.name()),
        Op::Free { .. } => "frees".into(),
        Op::Tune { .. } => "returns".into(),
        Op::Race { thread, .. } => format!("starts {thread}"),
        Op::Stop { thread, .. } => format!("stops {thread}"),
        Op::Thread { thread, .. } => format!("starts {thread}"),
        Op::By { thread, .. } => format!("hands the next op to {thread}"),
        Op::End { thread, .. } => format!("ends {thread}"),
        Op::Vfork { .. } => "vforks a child that writes and exits".into(),
        Op::CloneVm { child, .. } => format!("clones {child} into its address space"),
    }
}

/// The bytes a read sees in the model, in words (up to three pages).
fn read_words(model: &Model, op: &Op, page_size: usize) -> String {
    if let Some(words) = super::alloc::read_words(model, op) {
        return words;
    }
    let Op::Read { proc, map, span } = *op else {
        return String::new();
    };
    let Some(h) = model.handle(map) else {
        return String::new();
    };
    let pages: Vec<u16> = span.page_range().pages().collect();
    let mut parts = Vec::new();
    for &page in pages.iter().take(3) {
        let addr = h.base + page as u64 * page_size as u64;
        let bytes = model.page_bytes(proc, addr).unwrap_or_default();
        let shown = bytes.get(span.bytes_in_page(page_size)).unwrap_or(&bytes);
        let mut text = crate::report::describe_bytes(shown);
        // sizeof(int) bytes: the int a C program sees there.
        if let Ok(int) = <[u8; 4]>::try_from(shown) {
            text = format!("the int {} ({text})", i32::from_ne_bytes(int));
        }
        if pages.len() == 1 {
            return text;
        }
        parts.push(format!("page {page}: {text}"));
    }
    if pages.len() > 3 {
        parts.push("…".into());
    }
    parts.join("; ")
}

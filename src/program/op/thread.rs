//! Threads in the op language (docs/SEMANTICS.md part T): a process starts a racing thread
//! (`p0 race t0 write m0 3`) that stores an increasing counter into the last 8 bytes of one page
//! until the process stops it (`p0 stop t0`), while the process goes on with other ops (a
//! `fork` among them). Thread handles (`t0`, ...) are named like processes: each `race` takes a
//! fresh one. This file owns the handle, the race kinds and the static rules of racing
//! ([`ThreadRules`], called by the `Validator`): what may run while a thread races, so that the
//! raced word is decided by the counter alone and the thread's page stays mapped and writable.

use super::args::{Advice, MAX_THREADS, Prot, RACE_WORD, RaceKind};
use super::caps;
use super::handle::{MapId, ProcId, ThreadId};
use super::ops::Op;
use super::span::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Racing {
    proc: ProcId,
    kind: RaceKind,
    map: MapId,
    page: u16,
}

/// The most threads racing at once: a pair, in one process (T7).
pub const MAX_RACING: usize = 2;

/// The static rules of racing (T1): a thread handle is fresh and below the cap; one thread
/// races at a time in a program, or a pair in one process: one `dontneed` thread beside one
/// that stores (`write` or `poke`, T7), or a `read` thread joining a storing one in any
/// process (T10); only its own process stops it; while it runs, nothing but the thread may
/// store to its word, and its process keeps its layout (`check_op`); while a `dontneed`,
/// `protect`, `unmap` or `remap` thread runs, its process stores nothing at all, and while an
/// `unmap` or `remap` one runs it loads and maps nothing either (T11-T13).
#[derive(Clone, Debug, Default)]
pub struct ThreadRules {
    used: [bool; MAX_THREADS],
    running: [Option<Racing>; MAX_THREADS],
    /// Whether a vmsplice ran: the pipe may hold a page a race would then write, whose bytes
    /// in the pipe no observation bounds (K3). A program uses the pipe or races, not both.
    spliced: bool,
    /// Whether a page was made write-only: a view does not read such a page (/proc/self/maps
    /// does not list it readable), so a fork's child's copy of a raced write-only page could
    /// not be learnt when the child appears (T2). A program makes write-only pages or races.
    write_only: bool,
}

/// Which part of an op a refusal is about (the validator's `Culprit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    Proc,
    Thread,
    Span,
}

/// Why racing refuses an op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub blame: Blame,
    pub message: String,
}

fn refuse(blame: Blame, message: String) -> Result<(), Refused> {
    Err(Refused { blame, message })
}

/// Whether a store to `span` may reach the last `RACE_WORD` bytes of a page (on any page
/// size: a byte span lies in the first 4096 bytes of its page).
fn reaches_word(span: Span) -> bool {
    match span {
        Span::Pages(_) => true,
        Span::Bytes { end, .. } => end as usize > caps::MAX_BYTE_OFFSET as usize - RACE_WORD,
    }
}

impl ThreadRules {
    /// Whether any thread is racing (the generator asks, to put forks inside racing windows).
    pub fn any_running(&self) -> bool {
        self.running.iter().any(Option::is_some)
    }

    /// The thread racing in `proc`, if any.
    pub fn running_in(&self, proc: ProcId) -> Option<ThreadId> {
        (0..MAX_THREADS)
            .find(|&t| self.running[t].is_some_and(|r| r.proc == proc))
            .map(|t| ThreadId(t as u8))
    }

    /// Every running race in `proc`: its thread, kind, mapping and page.
    pub fn races_in(&self, proc: ProcId) -> Vec<(ThreadId, RaceKind, MapId, u16)> {
        (0..MAX_THREADS)
            .filter_map(|t| {
                self.running[t]
                    .filter(|r| r.proc == proc)
                    .map(|r| (ThreadId(t as u8), r.kind, r.map, r.page))
            })
            .collect()
    }

    /// A thread handle never used yet.
    pub fn fresh(&self) -> Option<ThreadId> {
        (0..MAX_THREADS)
            .find(|&t| !self.used[t])
            .map(|t| ThreadId(t as u8))
    }

    /// Checks `op` against the running threads; on success notes what it changes.
    pub fn admit(&mut self, op: &Op) -> Result<(), Refused> {
        let proc = op.proc();
        match *op {
            Op::Race {
                thread,
                kind,
                map,
                page,
                ..
            } => {
                let t = thread.0 as usize;
                if t >= MAX_THREADS {
                    return refuse(
                        Blame::Thread,
                        format!("thread handle {thread} is past the cap of {MAX_THREADS} threads"),
                    );
                }
                if self.used[t] {
                    return refuse(
                        Blame::Thread,
                        format!("thread handle {thread} is already taken; a race needs a new one"),
                    );
                }
                let running: Vec<Racing> = self.running.iter().flatten().copied().collect();
                if let Some(r) = running.first() {
                    // A pair: one dontneed, free or pageout beside one storing thread, in one
                    // process (T7, T15, T16), or a reader joining a storing thread, in any process
                    // (T10); never beside a fault thread, which zaps its own page (T17).
                    let storer = |k: RaceKind| k.stores() && !k.zaps_itself();
                    let pair = running.len() < MAX_RACING
                        && ((r.proc == proc
                            && ((r.kind.pairs_with_storer() && storer(kind))
                                || (storer(r.kind) && kind.pairs_with_storer())))
                            || (kind.watches() && storer(r.kind)));
                    if !pair {
                        return refuse(
                            Blame::Proc,
                            format!(
                                "a thread of {} races already: one race at a time, or a pair in one process (one dontneed, free or pageout, one write or poke), or a reader joining a write or poke thread",
                                r.proc
                            ),
                        );
                    }
                }
                if self.write_only {
                    return refuse(
                        Blame::Proc,
                        "a program that made a page write-only does not race (a child's copy of it could not be seen at the fork)".into(),
                    );
                }
                if self.spliced {
                    return refuse(
                        Blame::Proc,
                        "a program that vmspliced does not race (the pipe may hold the page)"
                            .into(),
                    );
                }
                self.used[t] = true;
                self.running[t] = Some(Racing {
                    proc,
                    kind,
                    map,
                    page,
                });
                Ok(())
            }
            Op::Stop { thread, .. } => match self.running.get(thread.0 as usize).copied().flatten()
            {
                Some(r) if r.proc == proc => {
                    self.running[thread.0 as usize] = None;
                    Ok(())
                }
                Some(r) => refuse(
                    Blame::Proc,
                    format!("{thread} races in {}, not in {proc}", r.proc),
                ),
                None => refuse(Blame::Thread, format!("{thread} is not racing")),
            },
            Op::Exit { .. } => {
                // Exit ends the process's threads (exit_group).
                for r in self.running.iter_mut() {
                    if r.is_some_and(|r| r.proc == proc) {
                        *r = None;
                    }
                }
                Ok(())
            }
            _ => self.check_op(op),
        }
    }

    /// Refuses an op that could store to a raced word, or change the racing process's layout,
    /// while a thread races. Mapping handles do not tell which addresses an op reaches (a map
    /// may land in a hole of another handle's range, MAP_FIXED places over one, a private
    /// handle's page may be a shared object placed there), so the rule holds for every handle:
    /// no process stores to the last word of a page or punches a hole
    /// (MADV_REMOVE); the racing process changes no layout and gives no advice.
    fn check_op(&mut self, op: &Op) -> Result<(), Refused> {
        let raced = self.used.iter().any(|u| *u);
        if let Op::Vmsplice { .. } | Op::PipeRead { .. } = op {
            if raced {
                return refuse(
                    Blame::Proc,
                    "a program that raced does not use the pipe (it may hold a raced page)".into(),
                );
            }
            self.spliced |= matches!(op, Op::Vmsplice { .. });
        }
        if let Op::Protect {
            prot: Prot::Write, ..
        } = op
        {
            if raced {
                return refuse(
                    Blame::Proc,
                    "a program that raced makes no page write-only (a child's copy of a raced page could not be seen at the fork)".into(),
                );
            }
            self.write_only = true;
        }
        let Some(r) = self.running.iter().flatten().next().copied() else {
            return Ok(());
        };
        // A reader may race in another process than the storing thread it joined (T10).
        let mine = self.running.iter().flatten().any(|r| r.proc == op.proc());
        // A dontneed thread zaps its page whenever it runs: a store of its process to that
        // page would be kept or not as the interleaving goes, and handles do not tell which
        // page a store reaches (T7).
        let zapping = mine && self.running.iter().flatten().any(|r| r.kind.bars_stores());
        // An unmap thread's page comes and goes: its process loads nothing and maps nothing
        // (T12). A layout thread's process makes no allocator call either: the allocator's
        // accounting compares the layout before and after the call, which the thread changes
        // (found by `run --time 120 --seed 4`: a free beside a protect thread measured twice
        // the bytes it unmapped, 1 run in 5).
        let racing = |k: fn(RaceKind) -> bool| {
            mine && (self.running.iter().flatten()).any(|r| r.proc == op.proc() && k(r.kind))
        };
        // Starting or joining an op thread goes through libc, which may map or unmap memory of
        // its own for the thread (TLS, its allocator's arena), noted as the allocator's: under
        // an unmap thread such a mapping can land in the page's hole, which the next round
        // maps over (found by `run --seed 5`: p0's raced page missing from its layout after
        // `race t0 unmap`, `thread t7`, 4 runs in 5).
        let allocator = matches!(
            op,
            Op::Alloc { .. }
                | Op::Free { .. }
                | Op::Tune { .. }
                | Op::Thread { .. }
                | Op::End { .. }
        );
        if (racing(RaceKind::bars_loads) && matches!(op, Op::Read { .. } | Op::Map { .. }))
            || (racing(RaceKind::changes_layout) && allocator)
        {
            return refuse(
                Blame::Proc,
                format!(
                    "a protect, unmap or remap thread of {} races: meanwhile it makes no allocator call and starts or ends no op thread, and under an unmap or remap thread it loads and maps nothing (its page comes and goes)",
                    op.proc()
                ),
            );
        }
        let refused = match *op {
            Op::Write { span, .. } | Op::Poke { span, .. } | Op::Vfork { span, .. } => {
                zapping || reaches_word(span)
            }
            Op::Vmsplice { .. } | Op::PipeRead { .. } => true,
            Op::Advise { advice, .. } => mine || advice == Advice::Remove,
            Op::Unmap { .. } | Op::Protect { .. } | Op::Remap { .. } | Op::MapAt { .. } => mine,
            Op::Map { .. }
            | Op::Read { .. }
            | Op::Fork { .. }
            | Op::CloneVm { .. }
            | Op::Exit { .. }
            | Op::Invalid { .. }
            | Op::Race { .. }
            | Op::Stop { .. } => false,
            // Op threads' own ops change nothing; the op a thread runs is checked as its
            // process's.
            Op::Thread { .. } | Op::By { .. } | Op::End { .. } => false,
            // The allocator's memory never overlaps the program's mappings (M6), and a write to
            // a block is a write to the block, wherever its units end.
            Op::Alloc { .. } | Op::Free { .. } | Op::Tune { .. } => false,
        };
        if refused {
            return refuse(
                Blame::Span,
                format!(
                    "a thread of {} races: meanwhile no store may reach a page's last {RACE_WORD} bytes, nothing is vmspliced or punched out, and {} keeps its layout (and stores nothing while a dontneed or protect thread runs)",
                    r.proc, r.proc
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::Pattern;

    fn race(proc: u8, thread: u8, kind: RaceKind) -> Op {
        Op::Race {
            proc: ProcId(proc),
            thread: ThreadId(thread),
            kind,
            map: MapId(0),
            page: 0,
        }
    }

    fn write(proc: u8, end: u16) -> Op {
        Op::Write {
            proc: ProcId(proc),
            map: MapId(0),
            span: Span::Bytes {
                page: 0,
                start: 0,
                end,
            },
            pattern: Pattern::Fill(1),
        }
    }

    /// T9: one dontneed thread beside one storing thread, in one process, and no more.
    #[test]
    fn a_pair_races_in_one_process() {
        let mut r = ThreadRules::default();
        r.admit(&race(1, 0, RaceKind::Poke))
            .expect("the first race");
        assert!(
            r.admit(&race(1, 1, RaceKind::Write)).is_err(),
            "two storers"
        );
        assert!(
            r.admit(&race(2, 1, RaceKind::DontNeed)).is_err(),
            "another process"
        );
        r.admit(&race(1, 1, RaceKind::DontNeed)).expect("the pair");
        assert!(
            r.admit(&race(1, 2, RaceKind::DontNeed)).is_err(),
            "a third thread"
        );
        assert_eq!(r.races_in(ProcId(1)).len(), 2);
    }

    /// T12: while an unmap thread runs, its process starts and ends no op thread (libc may map
    /// for it, into the page's hole); another process may.
    #[test]
    fn a_layout_racing_process_starts_no_op_thread() {
        for kind in [RaceKind::Unmap, RaceKind::Protect, RaceKind::Remap] {
            let mut r = ThreadRules::default();
            r.admit(&race(1, 0, kind)).expect("the race");
            let start = |p: u8| Op::Thread {
                proc: ProcId(p),
                thread: ThreadId(7),
            };
            assert!(r.admit(&start(1)).is_err(), "{kind:?}");
            r.admit(&start(0)).expect("another process");
        }
    }

    /// T7: while a dontneed thread runs, its process stores nothing; others store as in T1.
    #[test]
    fn a_zapping_process_stores_nothing() {
        let mut r = ThreadRules::default();
        r.admit(&race(1, 0, RaceKind::DontNeed)).expect("the race");
        assert!(r.admit(&write(1, 8)).is_err());
        r.admit(&write(0, 8))
            .expect("another process, off the word");
        r.admit(&Op::Stop {
            proc: ProcId(1),
            thread: ThreadId(0),
        })
        .expect("stop");
        r.admit(&write(1, 8)).expect("after the stop");
    }
}

//! Threads in the op language (docs/SEMANTICS.md part T): a process starts a racing thread
//! (`p0 race t0 write m0 3`) that stores an increasing counter into the last 8 bytes of one page
//! until the process stops it (`p0 stop t0`), while the process goes on with other ops (a
//! `fork` among them). Thread handles (`t0`, ...) are named like processes: each `race` takes a
//! fresh one. This file owns the handle, the race kinds and the static rules of racing
//! ([`ThreadRules`], called by the `Validator`): what may touch a raced mapping while its thread
//! runs, so that the final contents of the raced page are decided by the counter alone.

use std::fmt;

use super::args::MapKind;
use super::caps;
use super::handle::{MapId, ProcId};
use super::ops::Op;
use super::validate::{Culprit, InvalidOp};

/// A thread handle, `t0`, `t1`, ...: named once by the `race` that starts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(pub u8);

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// What a racing thread does again and again until it is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RaceKind {
    /// Stores 1, 2, 3, ... (u64, little-endian) into the last 8 bytes of the page, each store
    /// followed by publishing the value it stored (so that a reader of the published counter
    /// knows the page holds at least that value).
    Write,
}

impl RaceKind {
    pub const ALL: [RaceKind; 1] = [RaceKind::Write];
    pub fn name(self) -> &'static str {
        match self {
            RaceKind::Write => "write",
        }
    }
    pub fn from_name(s: &str) -> Option<RaceKind> {
        RaceKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// The most thread handles in one program.
pub const MAX_THREADS: usize = 8;

/// Where a racing thread stores: the last 8 bytes of its page.
pub const RACE_WORD: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Racing {
    proc: ProcId,
    map: MapId,
    /// The mapping the raced one was made from by remaps (itself if none): every handle with
    /// the same root may name the same shared object.
    root: MapId,
    shared: bool,
}

/// The static rules of racing (T1): a thread handle is fresh and below the cap; a process races
/// one thread at a time; only its own process stops it; while it runs, its process only reads
/// the raced mapping, and no other process names it (or a handle made from it) unless the
/// mapping is private (their copy is theirs), and never with a remap or a placement.
#[derive(Clone, Debug)]
pub struct ThreadRules {
    used: [bool; MAX_THREADS],
    running: [Option<Racing>; MAX_THREADS],
    /// Per mapping handle: (shared, root).
    kinds: [Option<(bool, MapId)>; caps::MAX_MAPS],
}

impl Default for ThreadRules {
    fn default() -> Self {
        ThreadRules {
            used: [false; MAX_THREADS],
            running: [None; MAX_THREADS],
            kinds: [None; caps::MAX_MAPS],
        }
    }
}

fn shared(kind: MapKind) -> bool {
    matches!(kind, MapKind::Shared | MapKind::SharedZero)
}

fn refuse(culprit: Culprit, message: String) -> Result<(), InvalidOp> {
    Err(InvalidOp { culprit, message })
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

    /// A thread handle never used yet.
    pub fn fresh(&self) -> Option<ThreadId> {
        (0..MAX_THREADS)
            .find(|&t| !self.used[t])
            .map(|t| ThreadId(t as u8))
    }

    fn root(&self, m: MapId) -> MapId {
        self.kinds
            .get(m.0 as usize)
            .copied()
            .flatten()
            .map_or(m, |k| k.1)
    }

    /// Checks `op` (already checked by the other rules: its handles exist) against the running
    /// threads; on success notes what it changes.
    pub fn admit(&mut self, op: &Op) -> Result<(), InvalidOp> {
        let proc = op.proc();
        match *op {
            Op::Race { thread, map, .. } => {
                let t = thread.0 as usize;
                if t >= MAX_THREADS {
                    return refuse(
                        Culprit::Child,
                        format!("thread handle {thread} is past the cap of {MAX_THREADS} threads"),
                    );
                }
                if self.used[t] {
                    return refuse(
                        Culprit::Child,
                        format!("thread handle {thread} is already taken; a race needs a new one"),
                    );
                }
                if let Some(other) = self.running_in(proc) {
                    return refuse(
                        Culprit::Proc,
                        format!("{proc} already races {other}: one racing thread per process"),
                    );
                }
                let (shared, root) = self
                    .kinds
                    .get(map.0 as usize)
                    .copied()
                    .flatten()
                    .unwrap_or((false, map));
                self.check_names(op)?;
                self.used[t] = true;
                self.running[t] = Some(Racing {
                    proc,
                    map,
                    root,
                    shared,
                });
                return Ok(());
            }
            Op::Stop { thread, .. } => {
                let t = thread.0 as usize;
                match self.running.get(t).copied().flatten() {
                    Some(r) if r.proc == proc => {
                        self.running[t] = None;
                        return Ok(());
                    }
                    Some(r) => {
                        return refuse(
                            Culprit::Proc,
                            format!("{thread} races in {}, not in {proc}", r.proc),
                        );
                    }
                    None => {
                        return refuse(Culprit::Child, format!("{thread} is not racing"));
                    }
                }
            }
            Op::Exit { .. } => {
                // Exit ends the process's threads (exit_group).
                for r in self.running.iter_mut() {
                    if r.is_some_and(|r| r.proc == proc) {
                        *r = None;
                    }
                }
            }
            _ => self.check_names(op)?,
        }
        match *op {
            Op::Map { map, kind, .. } | Op::MapAt { map, kind, .. } => {
                if let Some(k) = self.kinds.get_mut(map.0 as usize) {
                    *k = Some((shared(kind), map));
                }
            }
            Op::Remap { map, result, .. } => {
                let k = self.kinds.get(map.0 as usize).copied().flatten();
                let root = self.root(map);
                if let Some(r) = self.kinds.get_mut(result.0 as usize) {
                    *r = Some((k.is_some_and(|k| k.0), root));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Refuses an op that names a raced mapping where racing forbids it.
    fn check_names(&self, op: &Op) -> Result<(), InvalidOp> {
        let proc = op.proc();
        let is_read = matches!(op, Op::Read { .. });
        for r in self.running.iter().flatten() {
            for m in op.maps() {
                let same = if r.shared {
                    self.root(m) == r.root
                } else {
                    m == r.map
                };
                if !same {
                    continue;
                }
                let mine = proc == r.proc;
                let placing = matches!(op, Op::Remap { .. } | Op::MapAt { .. } | Op::Race { .. });
                if (mine || r.shared || placing) && !is_read {
                    return refuse(
                        Culprit::Map,
                        format!(
                            "{m} is raced by a thread of {}: while it runs, only reads name it{}",
                            r.proc,
                            if r.shared { "" } else { " there" }
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}

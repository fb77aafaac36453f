//! Op threads in the op language (docs/SEMANTICS.md T20 to T24): a process starts a thread that
//! waits for ops (`p0 thread t1`), an op is run by that thread while the process's other threads
//! wait (`t1 write m0 0 fill 0x11`: the pair `p0 by t1`, `p0 write ...` on one line), and the
//! thread ends (`t1 end`). A `fork` run by a thread (`t1 fork p1`) makes a child whose only
//! thread is that one: the child is an ordinary process (`p1 ...`). This file owns the static
//! rules of op threads ([`OpThreads`], called by the `Validator` before the racing rules): which
//! handles are free, who owns a thread, and which ops a thread may run.

use super::args::MAX_THREADS;
use super::handle::{ProcId, ThreadId};
use super::ops::{Op, OpKind};
use super::thread::{Blame, Refused};

/// The most op threads alive at once in one process. The worker keeps one more region than
/// this for a fork's child whose worker runs on the region of the thread that forked.
pub const MAX_OP_THREADS: usize = 2;

/// The static rules of op threads: a `thread` takes a fresh handle (never one a `race` took);
/// `by` and `end` name a live thread of their own process; the op after a `by` is its process's
/// and one a thread may run ([`runs_on_thread`]); `exit` ends the process's threads; a fork's
/// child has none of them.
#[derive(Clone, Debug, Default)]
pub struct OpThreads {
    /// The process each live op thread belongs to.
    owner: [Option<ProcId>; MAX_THREADS],
    /// Handles named by a `thread` so far.
    op_named: [bool; MAX_THREADS],
    /// Handles named by a `race` so far.
    race_named: [bool; MAX_THREADS],
    /// A `by` waiting for its op.
    pending: Option<(ProcId, ThreadId)>,
}

/// Why a thread may not run an op of this kind, or `None` if it may: an op thread runs every op
/// a process runs but these.
pub fn runs_on_thread(kind: OpKind) -> Option<&'static str> {
    match kind {
        OpKind::Exit => Some(
            "a thread does not exit its process (`tK end` ends the thread, `pN exit` the process with all its threads)",
        ),
        OpKind::Alloc | OpKind::Free | OpKind::Tune => Some(
            "malloc-family ops are not run by threads (glibc gives a thread its own arena, which the model does not follow)",
        ),
        OpKind::Race | OpKind::Stop => {
            Some("a racing thread is started and stopped by its process, not by an op thread")
        }
        OpKind::Vfork => Some(
            "a vfork from a thread suspends only that thread while the others run in the shared memory, which the model does not follow",
        ),
        OpKind::Thread | OpKind::By | OpKind::End => {
            Some("threads are started, handed ops and ended by their process")
        }
        OpKind::CloneVm => Some(
            "a program with a clone child has no op threads (docs/SEMANTICS.md T34: pthread_create's bookkeeping would be shared)",
        ),
        OpKind::Map
        | OpKind::Write
        | OpKind::Read
        | OpKind::Fork
        | OpKind::Unmap
        | OpKind::Protect
        | OpKind::Advise
        | OpKind::Remap
        | OpKind::Invalid
        | OpKind::Poke
        | OpKind::Vmsplice
        | OpKind::PipeRead => None,
    }
}

fn refuse(blame: Blame, message: String) -> Result<(), Refused> {
    Err(Refused { blame, message })
}

impl OpThreads {
    /// The process op thread `thread` belongs to, if it is alive.
    pub fn owner(&self, thread: ThreadId) -> Option<ProcId> {
        self.owner.get(thread.0 as usize).copied().flatten()
    }

    /// The live op threads of `proc`.
    pub fn of(&self, proc: ProcId) -> Vec<ThreadId> {
        (0..MAX_THREADS)
            .filter(|&t| self.owner[t] == Some(proc))
            .map(|t| ThreadId(t as u8))
            .collect()
    }

    /// A handle never named yet, taken from the top (a `race` takes the lowest free one), so that
    /// op threads and races rarely compete for a handle.
    pub fn fresh(&self) -> Option<ThreadId> {
        (0..MAX_THREADS)
            .rev()
            .find(|&t| !self.op_named[t] && !self.race_named[t])
            .map(|t| ThreadId(t as u8))
    }

    /// Whether a `by` waits for its op.
    pub fn pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Checks `op` against the op threads; on success notes what it changes.
    pub fn admit(&mut self, op: &Op) -> Result<(), Refused> {
        let proc = op.proc();
        if let Some((p, t)) = self.pending.take() {
            if proc != p {
                return refuse(
                    Blame::Proc,
                    format!("{p} by {t} hands the next op to {t}: it must be {p}'s, not {proc}'s"),
                );
            }
            if let Some(why) = runs_on_thread(op.kind()) {
                return refuse(Blame::Proc, format!("{t} cannot run this op: {why}"));
            }
            return Ok(());
        }
        match *op {
            Op::Thread { thread, .. } => {
                let t = thread.0 as usize;
                if t >= MAX_THREADS {
                    return refuse(
                        Blame::Thread,
                        format!("thread handle {thread} is past the cap of {MAX_THREADS} threads"),
                    );
                }
                if self.op_named[t] || self.race_named[t] {
                    return refuse(
                        Blame::Thread,
                        format!(
                            "thread handle {thread} is already taken; a thread needs a new one"
                        ),
                    );
                }
                if self.of(proc).len() >= MAX_OP_THREADS {
                    return refuse(
                        Blame::Proc,
                        format!("{proc} runs {MAX_OP_THREADS} op threads already"),
                    );
                }
                self.op_named[t] = true;
                self.owner[t] = Some(proc);
            }
            Op::By { thread, .. } | Op::End { thread, .. } => match self.owner(thread) {
                Some(p) if p == proc => {
                    if let Op::By { .. } = op {
                        self.pending = Some((proc, thread));
                    } else {
                        self.owner[thread.0 as usize] = None;
                    }
                }
                Some(p) => {
                    return refuse(
                        Blame::Thread,
                        format!("{thread} is a thread of {p}, not of {proc}"),
                    );
                }
                None => {
                    return refuse(
                        Blame::Thread,
                        format!("{thread} is no live thread (a `pN thread {thread}` starts it)"),
                    );
                }
            },
            // The racing rules check a race's handle against other races'.
            Op::Race { thread, .. } => {
                let t = thread.0 as usize;
                if self.op_named.get(t) == Some(&true) {
                    return refuse(
                        Blame::Thread,
                        format!("thread handle {thread} is already taken; a race needs a new one"),
                    );
                }
                if let Some(named) = self.race_named.get_mut(t) {
                    *named = true;
                }
            }
            // exit_group ends every thread of the process (T4).
            Op::Exit { .. } => {
                for o in self.owner.iter_mut() {
                    if *o == Some(proc) {
                        *o = None;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::program::{MapArgs, MapId, MapKind, Op, ProcId, ThreadId, Validator};

    fn admit_all(ops: &[Op]) -> Result<(), String> {
        let mut v = Validator::new();
        for op in ops {
            v.admit(op).map_err(|e| e.message)?;
        }
        Ok(())
    }

    const P0: ProcId = ProcId(0);
    const T1: ThreadId = ThreadId(1);

    fn map() -> Op {
        Op::Map {
            proc: P0,
            map: MapId(0),
            kind: MapKind::Private,
            pages: 1,
            tail: 0,
            args: MapArgs::default(),
        }
    }

    /// T20-T22: a thread runs ops of its process, forks, ends; its handle is never reused.
    #[test]
    fn a_thread_runs_its_process_ops() {
        let start = Op::Thread {
            proc: P0,
            thread: T1,
        };
        let by = Op::By {
            proc: P0,
            thread: T1,
        };
        let fork = Op::Fork {
            proc: P0,
            child: ProcId(1),
        };
        let end = Op::End {
            proc: P0,
            thread: T1,
        };
        admit_all(&[start, by, map(), by, fork, end]).expect("valid");
        // After the end, the thread is gone and its handle taken.
        assert!(admit_all(&[start, end, by, map()]).is_err());
        assert!(admit_all(&[start, end, start]).is_err());
        // The child of a fork has none of its parent's threads.
        let child_by = Op::By {
            proc: ProcId(1),
            thread: T1,
        };
        assert!(admit_all(&[start, fork, child_by]).is_err());
        // Exit ends the threads.
        let exit = Op::Exit { proc: P0 };
        let fork1 = Op::Fork {
            proc: P0,
            child: ProcId(1),
        };
        assert!(admit_all(&[fork1, start, exit]).is_ok());
    }

    /// T20: the op after a `by` is its process's, and one a thread may run.
    #[test]
    fn a_by_is_followed_by_a_thread_op_of_its_process() {
        let start = Op::Thread {
            proc: P0,
            thread: T1,
        };
        let by = Op::By {
            proc: P0,
            thread: T1,
        };
        let fork = Op::Fork {
            proc: P0,
            child: ProcId(1),
        };
        let exit = Op::Exit { proc: P0 };
        let other = Op::Exit { proc: ProcId(1) };
        assert!(admit_all(&[start, by, exit]).is_err(), "exit by a thread");
        assert!(
            admit_all(&[fork, start, by, other]).is_err(),
            "another's op"
        );
        assert!(admit_all(&[start, by, by]).is_err(), "by after by");
        let race = Op::Race {
            proc: P0,
            thread: T1,
            kind: crate::program::RaceKind::Write,
            map: MapId(0),
            page: 0,
        };
        assert!(
            admit_all(&[map(), start, race]).is_err(),
            "a race on t1's handle"
        );
    }

    /// At most MAX_OP_THREADS op threads per process.
    #[test]
    fn op_threads_are_capped_per_process() {
        let ops: Vec<Op> = (0..=super::MAX_OP_THREADS as u8)
            .map(|t| Op::Thread {
                proc: P0,
                thread: ThreadId(t),
            })
            .collect();
        assert!(admit_all(&ops[..super::MAX_OP_THREADS]).is_ok());
        assert!(admit_all(&ops).is_err());
    }
}

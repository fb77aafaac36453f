//! Racing vmsplice (docs/SEMANTICS.md T14): a `vmsplice` thread splices one page into a pipe of
//! its own and reads it all back, again and again, until its process stops it; the `stop`
//! reports as a `read` thread's (T10): its rounds, the first and the last word it drained and its
//! drops, where a drained page whose other bytes differ from the first one's counts as a drop.
//! The words are a reader's (`racers.rs`): the page's word, a racing storer's rising counter
//! (the pair with a `write` thread), or a fork's copy's learnt value. What the model adds:
//! - the first round is the `race` op's own vmsplice, which fails as `vmsplice` does (EFAULT
//!   where a load would fault, J1) instead of killing the process; a shared object's page is
//!   faulted into the object (a read fault on shmem allocates it);
//! - the page's other bytes never change while the thread runs (its process stores nothing,
//!   `ThreadRules`), so no drained page differs from the first: no drop, unless the page is a
//!   shared object's (another mapper's stores reach it, B5), a lazily freed page (MADV_FREE's
//!   reclaim may zero it) or a page whose writer died racing, whose drops are learnt. A fork
//!   relative's store to its copy of a private page never shows in the pipe (K3): it would be
//!   a drop.
//!
//! The thread's pipe is its own: the program's pipe (the `vmsplice` and `pipe-read` ops) is
//! untouched, and a fork's child closes its copy of it (the child has no thread).

use super::Model;
use super::errno::EFAULT;
use super::space::{PageBacking, flag};
use crate::program::outcome::{Outcome, PROT_R};
use crate::program::{ProcId, ThreadId};

impl Model {
    /// `race tK vmsplice`: the first round is the op's (T14).
    pub(super) fn race_vmsplice(&mut self, proc: ProcId, thread: ThreadId, vpn: u64) -> Outcome {
        if self.fault(proc, vpn, PROT_R).is_some() {
            return Outcome::Failed { errno: EFAULT };
        }
        let pte = *self.space(proc).get(vpn).expect("checked");
        if let PageBacking::Object { obj, index } = pte.backing {
            self.shmem_fault(obj, index);
        }
        let open = matches!(pte.backing, PageBacking::Object { .. })
            || pte.flags & flag::LAZY != 0
            || (self.threads.wild.iter()).any(|&f| self.frame_at(proc, vpn) == Some(f));
        let done = self.race_read(proc, thread, vpn);
        self.threads.spliced.push((proc, thread, open));
        done
    }

    /// A `vmsplice` thread's `stop`: a reader's `watched`, whose drops are none, or as
    /// observed where the page's other bytes may change (T14). Anything else is returned as it
    /// is.
    pub(super) fn stop_spliced(
        &mut self,
        proc: ProcId,
        thread: ThreadId,
        watched: Outcome,
        observed: Option<&Outcome>,
    ) -> Outcome {
        let Some(i) = (self.threads.spliced.iter()).position(|s| (s.0, s.1) == (proc, thread))
        else {
            return watched;
        };
        let (_, _, open) = self.threads.spliced.remove(i);
        let Outcome::Watched {
            rounds,
            first,
            last,
            ..
        } = watched
        else {
            return watched;
        };
        let drops = match observed {
            Some(&Outcome::Watched { drops, .. }) if open => drops,
            _ => 0,
        };
        Outcome::Watched {
            rounds,
            first,
            last,
            drops,
        }
    }

    /// Forgets the `vmsplice` threads of `proc`, which exited or died (T4).
    pub(super) fn spliced_end(&mut self, proc: ProcId) {
        self.threads.spliced.retain(|s| s.0 != proc);
    }
}

#[cfg(test)]
#[path = "race_splice_tests.rs"]
mod tests;

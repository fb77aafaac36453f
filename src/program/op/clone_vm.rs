//! `clone(CLONE_VM)` children in the op language (docs/SEMANTICS.md T30 to T34): `p0 clone p1`
//! starts `p1` as a process of its own (its own pid, its own exit) in `p0`'s address space.
//! This file owns the static rules of such programs ([`CloneRules`], called by the
//! `Validator`): which op families a program with a `clone` leaves out, and why (T34).

use super::ops::Op;

/// What a program with a `clone` leaves out (T34), and what it has used so far.
#[derive(Clone, Debug, Default)]
pub struct CloneRules {
    /// Whether a `clone` was admitted.
    cloned: bool,
    /// The first op family admitted that a `clone` excludes, as the reason to give.
    excluded: Option<&'static str>,
}

/// Why an op family cannot share a program with a `clone` (T34), or `None`.
fn exclusion(op: &Op) -> Option<&'static str> {
    match op {
        // glibc's malloc state (arenas, and the thread cache in TLS, which a CLONE_VM child
        // without CLONE_SETTLS shares with its parent) is not made for two processes at once.
        Op::Alloc { .. } | Op::Free { .. } | Op::Tune { .. } => Some(
            "the malloc family (a clone child without CLONE_SETTLS shares its parent's heap and TLS, so glibc's allocator would run in two processes at once)",
        ),
        // Racing threads are modelled per process (T1): a thread racing in a shared address
        // space would be seen by two processes, which T1 to T9 do not model.
        Op::Race { .. } | Op::Stop { .. } => Some(
            "racing threads (T1 to T9 model a racer's page per process, not in a shared address space)",
        ),
        // An op thread is started by libc's pthread_create, whose thread list and stack cache
        // live in the process's statics and TLS, which a CLONE_VM child without CLONE_SETTLS
        // shares with its parent: two processes would run one libc's thread bookkeeping.
        Op::Thread { .. } | Op::By { .. } | Op::End { .. } => Some(
            "op threads (pthread_create's bookkeeping lives in statics and TLS that a clone child without CLONE_SETTLS shares with its parent)",
        ),
        // The pipe's pages are modelled per splicing process (J2).
        Op::Vmsplice { .. } | Op::PipeRead { .. } => Some(
            "the pipe (J2 models whose later write shows through it per process, not per shared address space)",
        ),
        _ => None,
    }
}

impl CloneRules {
    /// Checks `op` against what was admitted before; admits it if allowed.
    pub fn admit(&mut self, op: &Op) -> Result<(), String> {
        if let Op::CloneVm { .. } = op {
            if let Some(why) = self.excluded {
                return Err(format!(
                    "a program with a clone child leaves out {why}; this one used it before"
                ));
            }
            self.cloned = true;
            return Ok(());
        }
        let Some(why) = exclusion(op) else {
            return Ok(());
        };
        if self.cloned {
            return Err(format!("a program with a clone child leaves out {why}"));
        }
        self.excluded.get_or_insert(why);
        Ok(())
    }

    /// Whether a `clone` was admitted.
    pub fn cloned(&self) -> bool {
        self.cloned
    }
}

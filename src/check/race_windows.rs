//! Which races were running when each fork was made (docs/SEMANTICS.md part 13): the
//! campaign summary counts the forks inside each kind's racing windows, the measure of how
//! often the generator put a fork where the T rules bite. Followed from the program and what
//! the kernel reported (a race that started, a stop, a process that ended), nothing else.

use crate::program::outcome::Outcome;
use crate::program::{Op, ProcId, RaceKind, ThreadId};

/// The races running now, as the program and the kernel's outcomes say.
#[derive(Default)]
pub struct RaceWindows {
    running: Vec<(ProcId, ThreadId, RaceKind)>,
}

impl RaceWindows {
    /// Follows op `op`, which the kernel reported as `observed`; adds one to `by_kind` (indexed
    /// by `RaceKind::code()`) for each kind racing in a process whose fork this was.
    pub fn note(&mut self, op: &Op, observed: &Outcome, by_kind: &mut [usize]) {
        let proc = op.proc();
        match *op {
            Op::Race { thread, kind, .. } if *observed == Outcome::Done => {
                self.running.push((proc, thread, kind));
            }
            Op::Stop { thread, .. } => self.running.retain(|r| (r.0, r.1) != (proc, thread)),
            Op::Fork { .. } if matches!(observed, Outcome::Forked { .. }) => {
                for r in self.running.iter().filter(|r| r.0 == proc) {
                    if let Some(n) = by_kind.get_mut(r.2.code() as usize) {
                        *n += 1;
                    }
                }
            }
            _ => {}
        }
        if matches!(op, Op::Exit { .. }) || observed.death().is_some() {
            self.running.retain(|r| r.0 != proc);
        }
    }
}

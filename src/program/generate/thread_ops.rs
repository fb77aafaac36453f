//! The op threads' decoder (docs/SEMANTICS.md T20 to T24), reached from the threads family
//! (`threads.rs`). The top three bits of `c` choose: where a process runs an op thread, five in
//! eight hand one of them an op (a classic op drawn as `add` draws it, or, one in five, a fork:
//! T22) and one in eight ends it; one in eight starts an op thread in a process; every other
//! raw op is left to the rest of the family. The op handed to a
//! thread is drawn by `add` for the same process (`who` chooses the previous op's process, the
//! `by`'s); if the validator refuses it (an `exit`, a cap), the `by` goes too.

use super::{Builder, RawOp};
use crate::program::{Op, ProcId, caps};

impl Builder {
    /// Adds an op-thread op from `r`; false if `r` is left to the rest of the family.
    pub(super) fn add_thread_ops(&mut self, r: &RawOp) -> bool {
        let choice = r.c >> 5;
        // Processes that run an op thread: one of them hands it an op or ends it.
        let owners: Vec<ProcId> = self
            .live
            .iter()
            .copied()
            .filter(|p| !self.v.op_threads().of(*p).is_empty())
            .collect();
        if let Some(&p) = owners.get(r.who as usize % owners.len().max(1))
            && choice <= 5
        {
            let threads = self.v.op_threads().of(p);
            let thread = threads[r.what as usize % threads.len()];
            if choice == 5 {
                return self.push(Op::End { proc: p, thread });
            }
            let saved = (self.v.clone(), self.ops.len());
            if !self.push(Op::By { proc: p, thread }) {
                return false;
            }
            let handed = if choice == 0 {
                self.fork_by(p)
            } else {
                // `who` chooses the previous op's process (`pick_proc`), the `by`'s; an exit
                // (which a thread does not run) becomes a write.
                let mut inner = *r;
                inner.who = 0x40 | (r.who & 0x3f);
                if (49..=52).contains(&(inner.verb % 64)) {
                    inner.verb -= 40;
                }
                self.add(&inner);
                self.ops.len() > saved.1 + 1
            };
            if !handed {
                self.v = saved.0;
                self.ops.truncate(saved.1);
            }
            return true;
        }
        if choice != 7 {
            return false;
        }
        let p = self.pick_proc(r.who);
        let Some(thread) = self.v.op_threads().fresh() else {
            return false;
        };
        self.push(Op::Thread { proc: p, thread })
    }

    /// `p`'s op thread forks (after its `by`): false if the caps or the validator refuse.
    fn fork_by(&mut self, p: ProcId) -> bool {
        if self.live.len() >= caps::MAX_LIVE || self.next_proc as usize >= caps::MAX_PROCS {
            return false;
        }
        let child = ProcId(self.next_proc);
        if !self.push(Op::Fork { proc: p, child }) {
            return false;
        }
        self.next_proc += 1;
        self.live.push(child);
        self.holds[child.0 as usize] = self.holds[p.0 as usize];
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::program::Op;
    use crate::program::generate::{GenConfig, random_program};

    /// Campaigns start op threads, hand them ops and forks, and end them.
    #[test]
    fn campaigns_draw_op_threads() {
        let (mut by, mut forks, mut ends) = (0, 0, 0);
        for i in 0..2000 {
            let p = random_program(1, i, GenConfig::default());
            for (k, op) in p.ops.iter().enumerate() {
                match op {
                    Op::By { .. } => {
                        by += 1;
                        forks += usize::from(matches!(p.ops.get(k + 1), Some(Op::Fork { .. })));
                    }
                    Op::End { .. } => ends += 1,
                    _ => {}
                }
            }
        }
        assert!(by > 100 && forks > 20 && ends > 20, "{by} {forks} {ends}");
    }
}

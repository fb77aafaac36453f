//! A program's schedule: its ops cut into batches of one process, with the views after forks
//! and exits and at the end, and the dumps asked for, as steps run one after another by turns
//! (`worker::Turn`). Pure: it sends nothing and forks nothing (the coordinator does).

use crate::program::outcome::DumpRequest;
use crate::program::{Advice, Op, Program, Syscall, caps};

/// The end of the batch that starts at op `i`: consecutive ops of one process, up to the first
/// that needs a snapshot or a dump after it. The requests go out together, so the worker
/// wakes once. (An op may name a handle that an earlier op of the batch creates: the worker
/// resolves handles when it runs the op.)
fn batch_end(ops: &[Op], i: usize, dumps: &[DumpRequest]) -> usize {
    let p = ops[i].proc();
    let mut j = i + 1;
    while j < ops.len()
        && ops[j].proc() == p
        && !ops[j - 1].snapshot_after()
        && !dumps.iter().any(|d| d.after_op as usize == j - 1)
    {
        j += 1;
    }
    j
}

/// One step of a program's schedule. Steps run one after the other by turns: a step waits
/// for the turn the step before it passes (0: none to wait for) and passes its own.
pub(super) enum Step {
    /// Consecutive ops of one process (`batch_end`).
    Batch {
        ops: std::ops::Range<usize>,
        wait: u32,
        pass: u32,
        /// Whether the process can be alive here (else every op is skipped, unsent).
        live: bool,
    },
    /// After op `after`, every process that may be alive looks at itself (the fork's new
    /// child unasked); each waits for `serial` (the turn the batch passed), and the last to
    /// finish passes `next` (`worker::Board::barrier`; `mask` names the viewers).
    Views {
        after: usize,
        serial: u32,
        mask: u32,
        next: u32,
        viewers: Vec<usize>,
        child: Option<usize>,
        /// After an exit: the views run while the process is torn down, but the next step
        /// waits until the coordinator has seen it gone (its end of file), so only the
        /// coordinator passes `next`.
        after_exit: bool,
    },
    /// A page's full bytes, for a report.
    Dump {
        dump: DumpRequest,
        wait: u32,
        pass: u32,
    },
}

impl Step {
    pub(super) fn describe(&self, ops: &[Op]) -> String {
        match self {
            Step::Batch { ops: r, .. } => format!("op {} ({})", r.start + 1, ops[r.start]),
            Step::Views { after, .. } => format!("snapshot after op {}", after + 1),
            Step::Dump { dump, .. } => format!("dump after op {}", dump.after_op + 1),
        }
    }
}

/// The schedule of a program: its batches in order, after every fork and exit and at the end
/// the snapshot of every process that may then be alive (from the program alone: a process
/// that died of a signal is found out while collecting), and the dumps asked for.
pub(super) fn schedule(
    ops: &[Op],
    dumps: &[DumpRequest],
    new_turn: &mut dyn FnMut() -> u32,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut live = [false; caps::MAX_PROCS];
    live[0] = true;
    let last = ops.len().saturating_sub(1);
    let mut wait = 0u32;
    let mut i = 0;
    while i < ops.len() {
        let j = batch_end(ops, i, dumps);
        let k = j - 1;
        let p = ops[i].proc().0 as usize;
        if live[p] {
            let pass = new_turn();
            steps.push(Step::Batch {
                ops: i..j,
                wait,
                pass,
                live: true,
            });
            wait = pass;
            for op in &ops[i..j] {
                match *op {
                    Op::Fork { child, .. } | Op::CloneVm { child, .. } => {
                        live[child.0 as usize] = true
                    }
                    Op::Exit { .. } => live[p] = false,
                    _ => {}
                }
            }
        } else {
            // Never alive here: every op is skipped, on both sides.
            steps.push(Step::Batch {
                ops: i..j,
                wait: 0,
                pass: 0,
                live: false,
            });
        }
        if ops[k].snapshot_after() || k == last {
            let viewers: Vec<usize> = (0..caps::MAX_PROCS).filter(|&q| live[q]).collect();
            let child = match ops[k] {
                Op::Fork { child, .. } | Op::CloneVm { child, .. } if live[child.0 as usize] => {
                    Some(child.0 as usize)
                }
                _ => None,
            };
            let next = new_turn();
            steps.push(Step::Views {
                after: k,
                serial: wait,
                mask: viewers.iter().map(|&q| 1u32 << q).sum(),
                next,
                viewers,
                child,
                after_exit: matches!(ops[k], Op::Exit { .. }),
            });
            wait = next;
        }
        for d in dumps.iter().filter(|d| d.after_op as usize == k) {
            let pass = new_turn();
            steps.push(Step::Dump {
                dump: *d,
                wait,
                pass,
            });
            wait = pass;
        }
        i = j;
    }
    steps
}

/// The index of the first op of `program` that can make a page that /proc/self/maps lists as
/// readable fault on a load (`ops.len()` if none): the views of the steps before it may read
/// pages directly instead of through `process_vm_readv` or /proc/self/mem (measured:
/// `process_vm_readv` was ~8% of a bench run's CPU, mostly pinning pages; /proc/self/mem,
/// which the physical channel uses, ~15% of the default workload's, `mem_rw`). A guard
/// region (MADV_GUARD_INSTALL) faults inside a readable VMA; an mremap can map a shared object
/// past its end (SIGBUS), and so could an invalid mremap that a kernel wrongly took. Until
/// such an op has run, no process of the tree has such a page (a fork copies its parent's
/// layout, which had none), so the cut is per view, not per program.
pub(super) fn first_unsafe_read(program: &Program) -> usize {
    program
        .ops
        .iter()
        .position(|op| {
            matches!(
                op,
                Op::Remap { .. }
                    | Op::Invalid {
                        call: Syscall::Mremap,
                        ..
                    }
                    | Op::Advise {
                        advice: Advice::GuardInstall,
                        ..
                    }
                    // A hugetlb page may have no huge page to fault in (SIGBUS, L9).
                    | Op::Map {
                        args: crate::program::MapArgs { hugetlb: true, .. },
                        ..
                    }
            )
        })
        .unwrap_or(program.ops.len())
}

#[cfg(test)]
mod tests {
    use super::first_unsafe_read;
    use crate::program::trace;

    fn first(text: &str) -> usize {
        first_unsafe_read(&trace::parse_str(text).expect("trace"))
    }

    /// Views may read by plain loads up to the first mremap or guard install, and all along in
    /// a program without one.
    #[test]
    fn direct_reads_end_at_the_first_op_that_can_make_a_readable_page_fault() {
        let head = "cowcheck-trace 1\np0 map m0 shared 4\np0 write m0 0 fill 0x01\np0 fork p1\n";
        assert_eq!(first(head), 3);
        assert_eq!(first(&format!("{head}p0 remap m0 0 1 maymove as m1\n")), 3);
        assert_eq!(
            first(&format!(
                "{head}p1 write m0 1 fill 0x02\np1 advise m0 1 guard-install\n"
            )),
            4
        );
    }
}

//! A program's schedule: its ops cut into batches of one process, with the views after forks
//! and exits and at the end, and the dumps asked for, as steps run one after another by turns
//! (`worker::Turn`). Pure: it sends nothing and forks nothing (the coordinator does).

use crate::kernel::protocol::Barrier;
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
        /// The viewers that look after the others (`late_viewers`).
        late: u32,
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
    /// What each view of a snapshot is told of it (`worker::Board::barrier`); nothing for
    /// another step. After an exit only the coordinator passes `next`, once it has seen the
    /// process gone.
    pub(super) fn barrier(&self) -> Barrier {
        match self {
            Step::Views {
                serial,
                mask,
                next,
                late,
                after_exit,
                ..
            } => Barrier {
                serial: *serial,
                mask: *mask,
                next: if *after_exit { 0 } else { *next },
                late: *late,
            },
            _ => Barrier::default(),
        }
    }

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
    // Each process's address space, named by the process that made it: a fork's child makes
    // its own, a clone's child joins its parent's (T30).
    let mut mm: [usize; caps::MAX_PROCS] = std::array::from_fn(|q| q);
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
                    Op::Fork { child, .. } => {
                        live[child.0 as usize] = true;
                        mm[child.0 as usize] = child.0 as usize;
                    }
                    Op::CloneVm { child, .. } => {
                        live[child.0 as usize] = true;
                        mm[child.0 as usize] = mm[p];
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
                late: late_viewers(&viewers, &mm),
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

/// The viewers that take their views after every other viewer of the snapshot: the first
/// (lowest-numbered) user of each address space that another viewer uses too, as the model
/// names it (`Model::mm_first_user`). Its view alone is checked against the physical channel
/// (T31), and every other user's view loads every readable page. In one address space, a
/// load by one is seen by all, in whatever order they look (the model allows both); but
/// under a runtime whose `clone` copies the address space (as a fork would), the other's
/// loads fault pages into a page table of its own, and the checked view shows it (a second
/// mapper: no longer exclusive, half the Pss) only if it looks after them. Unordered, the
/// shrunk trace of `tests/faults_clonevm.rs` showed the copy in 14 replays of 20; ordered,
/// in every one. Without a clone there is nothing to order: 0.
fn late_viewers(viewers: &[usize], mm: &[usize; caps::MAX_PROCS]) -> u32 {
    let mut late = 0u32;
    for (i, &q) in viewers.iter().enumerate() {
        let first = !viewers[..i].iter().any(|&o| mm[o] == mm[q]);
        let shared = viewers[i + 1..].iter().any(|&o| mm[o] == mm[q]);
        if first && shared {
            late |= 1 << q;
        }
    }
    late
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
    use super::{Step, first_unsafe_read, schedule};
    use crate::program::trace;

    /// The `late` masks of a program's snapshots, in order.
    fn late_masks(text: &str) -> Vec<u32> {
        let program = trace::parse_str(text).expect("trace");
        let mut turn = 0u32;
        schedule(&program.ops, &[], &mut || {
            turn += 1;
            turn
        })
        .iter()
        .filter_map(|s| match s {
            Step::Views { late, .. } => Some(*late),
            _ => None,
        })
        .collect()
    }

    /// The first user of each address space that another viewer shares looks last: a clone's
    /// parent (not a fork's), then, once it has exited, the next user of its space; with no
    /// clone, nobody waits.
    #[test]
    fn the_first_user_of_a_shared_address_space_views_late() {
        let head = "cowcheck-trace 1\np0 map m0 shared 1\n";
        assert_eq!(
            late_masks(&format!("{head}p0 fork p1\np1 fork p2\n")),
            [0, 0]
        );
        assert_eq!(
            late_masks(&format!(
                "{head}p0 clone p1\np0 fork p2\np2 clone p3\np2 clone p4\np0 exit\np1 exit\n"
            )),
            [
                0b1, 0b1, 0b101, 0b101,
                // p0 gone: p1 is alone in its space; p2 still shares with p3 and p4.
                0b100, 0b100,
            ]
        );
        // A clone child with a lower number than its parent is the first user.
        assert_eq!(
            late_masks(&format!("{head}p0 fork p2\np2 clone p1\n")),
            [0, 0b10]
        );
    }

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

//! Reading what a program did: the replies of each step, in program order, become the run's
//! outcomes, views and dumps. A worker that died, hung, vanished or exited is found out here,
//! and its turn passed for it. It records what was seen and never judges it (the checker
//! does).

use std::os::fd::AsRawFd;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::receive::Received;
use super::{Coordinator, Unborn};
use crate::kernel::executor::Worker;
use crate::kernel::executor::schedule::Step;
use crate::kernel::protocol::{DumpRequest, KernelRun, REPLY_PAYLOAD, Reply, region_from_words};
use crate::program::outcome::{Death, Outcome, ProcView, Snapshot};
use crate::program::{Op, ProcId};

impl Coordinator {
    /// Reads what step `step` produced, in program order, into `run`; passes the step's turn
    /// if its process could not (it died, hung, vanished or exited), so that the steps after
    /// it run.
    pub(super) fn collect(
        &mut self,
        ops: &[Op],
        step: &Step,
        workers: &mut [Option<Worker>],
        unborn: &mut Unborn,
        run: &mut KernelRun,
    ) -> Result<(), String> {
        match step {
            Step::Batch {
                ops: range,
                pass,
                live,
                ..
            } => {
                let p = ops[range.start].proc().0 as usize;
                for op in &ops[range.clone()] {
                    let Some(fd) = workers[p]
                        .as_ref()
                        .map(|w| w.fd.as_raw_fd())
                        .filter(|_| *live)
                    else {
                        run.outcomes.push(Outcome::Skipped);
                        continue;
                    };
                    let mut reply = self.recv(fd)?;
                    if let Received::Hung = reply {
                        reply = self.salvage(p, fd, workers)?;
                    }
                    let outcome = self.outcome(op, reply, workers, unborn)?;
                    run.outcomes.push(outcome);
                }
                self.slots.turn.pass(*pass);
            }
            Step::Views {
                after,
                next,
                viewers,
                ..
            } => {
                let mut snap = Snapshot::default();
                for &q in viewers {
                    if let Some(view) = self.read_view(q, workers)? {
                        snap.procs.push(view);
                    }
                }
                // Complete whatever a viewer that died could not.
                self.slots.turn.pass(*next);
                run.snapshots.push((*after, snap));
            }
            Step::Dump { dump, pass, .. } => {
                let bytes = self.read_dump(dump, workers);
                run.dumps.push((*dump, bytes));
                self.slots.turn.pass(*pass);
            }
        }
        Ok(())
    }

    fn outcome(
        &mut self,
        op: &Op,
        reply: Received,
        workers: &mut [Option<Worker>],
        unborn: &mut Unborn,
    ) -> Result<Outcome, String> {
        let p = op.proc().0 as usize;
        let reply = match reply {
            Received::Hung => {
                // A hang is an observation (an emulator's deadlock is a finding): the worker is
                // killed and the op says so.
                if let Some(w) = workers[p].take() {
                    let _ = kill(w.pid, Signal::SIGKILL);
                }
                return Ok(Outcome::Hung);
            }
            Received::Gone => {
                workers[p] = None;
                return Ok(Outcome::Killed {
                    death: Death {
                        signal: 0,
                        code: 0,
                        page: 0,
                    },
                    digests: Vec::new(),
                });
            }
            Received::Msg { reply, .. } => reply,
        };
        let value = match reply {
            Reply::Skipped => return Ok(Outcome::Skipped),
            Reply::Failed { errno } => return Ok(Outcome::Failed { errno }),
            Reply::Fault {
                signal, code, addr, ..
            } => {
                // The worker dies of it: wait for its end of file (its memory is gone by
                // then, as after an exit), so that nothing after it races the teardown (the
                // physical channel's exclusive bit would).
                let digests = self.payload().to_vec();
                if let Some(w) = workers[p].take() {
                    self.wait_gone(&w)?;
                }
                return Ok(Outcome::Killed {
                    death: Death {
                        signal,
                        code,
                        page: addr & !(self.page_size - 1),
                    },
                    digests,
                });
            }
            Reply::Refused => return Err("the worker refused the request".into()),
            Reply::Digests { .. } if matches!(op, Op::Read { .. } | Op::PipeRead { .. }) => {
                return Ok(Outcome::Read {
                    digests: self.payload().to_vec(),
                });
            }
            Reply::Digests { count: 1 } if matches!(op, Op::Stop { .. }) => {
                return Ok(Outcome::Stopped {
                    rounds: self.payload()[0],
                });
            }
            // A reader's stop (`worker::race_kinds`, T10).
            Reply::Digests { count: 4 } if matches!(op, Op::Stop { .. }) => {
                let w = self.payload();
                return Ok(Outcome::Watched {
                    rounds: w[0],
                    first: w[1],
                    last: w[2],
                    drops: w[3],
                });
            }
            // A fork in a process whose thread races: the child's pid and the thread's
            // counter before and after (`worker::thread`).
            Reply::Digests { count: 3 } if matches!(op, Op::Fork { .. }) => {
                let w = self.payload().to_vec();
                self.fork_outcome(op, w[0], workers, unborn)?;
                return Ok(Outcome::Forked {
                    before: w[1],
                    after: w[2],
                });
            }
            // A vfork child that died of a signal; its parent lives on (`worker::vfork`).
            Reply::Digests { count: 3 } if matches!(op, Op::Vfork { .. }) => {
                let w = self.payload().to_vec();
                return Ok(Outcome::Killed {
                    death: Death {
                        signal: w[0] as i32,
                        code: w[1] as i32,
                        page: w[2] & !(self.page_size - 1),
                    },
                    digests: Vec::new(),
                });
            }
            // An allocator op: the block's address and what it did to the layout
            // (`worker::alloc::placed`).
            Reply::Digests { count: 3 } if matches!(op, Op::Alloc { .. } | Op::Free { .. }) => {
                let w = self.payload();
                return Ok(Outcome::Allocated {
                    addr: w[0],
                    appeared: w[1],
                    vanished: w[2],
                });
            }
            Reply::Done { value }
                if !matches!(op, Op::Read { .. } | Op::PipeRead { .. } | Op::Stop { .. }) =>
            {
                value
            }
            _ => return Err(format!("the worker replied {reply:?} to {op}")),
        };
        Ok(match *op {
            Op::Map { .. } | Op::MapAt { .. } | Op::Remap { .. } | Op::Alloc { .. } => {
                Outcome::Mapped { addr: value }
            }
            Op::Fork { .. } | Op::CloneVm { .. } => {
                self.fork_outcome(op, value, workers, unborn)?;
                Outcome::Done
            }
            Op::Exit { .. } => {
                // The worker replies, then exits: wait for the end of file that follows, so
                // that the next op sees the process gone, its memory too (do_exit releases the
                // mm in exit_mm before it closes files in exit_files). Without this the next
                // op could race the teardown, and whatever depends on whether a page is still
                // mapped by the exited process (reclaim, KSM, pagemap's exclusive bit) would
                // depend on timing.
                if let Some(w) = workers[p].take() {
                    self.wait_gone(&w)?;
                }
                Outcome::Done
            }
            Op::Read { .. }
            | Op::PipeRead { .. }
            | Op::Write { .. }
            | Op::Unmap { .. }
            | Op::Protect { .. }
            | Op::Advise { .. }
            | Op::Invalid { .. }
            | Op::Poke { .. }
            | Op::Vmsplice { .. }
            | Op::Free { .. }
            | Op::Tune { .. }
            | Op::Race { .. }
            | Op::Stop { .. }
            | Op::Vfork { .. }
            | Op::Thread { .. }
            | Op::By { .. }
            | Op::End { .. } => Outcome::Done,
        })
    }

    /// The child of a fork that succeeded (pid `pid`) becomes a worker.
    fn fork_outcome(
        &mut self,
        op: &Op,
        pid: u64,
        workers: &mut [Option<Worker>],
        unborn: &mut Unborn,
    ) -> Result<(), String> {
        let Some(child) = op.born() else {
            return Ok(());
        };
        let (fd, _) = unborn[child.0 as usize]
            .take()
            .ok_or("no socket was made for the child")?;
        workers[child.0 as usize] = Some(Worker {
            pid: Pid::from_raw(pid as i32),
            fd,
        });
        Ok(())
    }

    /// Reads process `p`'s view (asked in advance, or sent unasked by a new child); `None`
    /// if the process is gone (it died while looking at itself, or before).
    fn read_view(
        &mut self,
        p: usize,
        workers: &mut [Option<Worker>],
    ) -> Result<Option<ProcView>, String> {
        let Some(fd) = workers[p].as_ref().map(|w| w.fd.as_raw_fd()) else {
            return Ok(None);
        };
        match self.recv(fd)? {
            Received::Gone => workers[p] = None,
            Received::Hung => {
                if let Some(w) = workers[p].take() {
                    let _ = kill(w.pid, Signal::SIGKILL);
                }
            }
            Received::Msg {
                reply:
                    Reply::View {
                        regions,
                        pages,
                        phys,
                    },
                ..
            } => {
                let w = self.payload();
                let (r, rest) = w.split_at(regions * 3);
                let (phys, pg) = rest.split_at(phys);
                let regions = r
                    .chunks_exact(3)
                    .map(|t| region_from_words(t[0], t[1], t[2]))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("p{p}'s view has a malformed region"))?;
                debug_assert_eq!(pg.len(), pages * 2);
                let pages = pg.chunks_exact(2).map(|t| (t[0], t[1])).collect();
                let covered: u64 = regions
                    .iter()
                    .map(|r| (r.end - r.start) / self.page_size)
                    .sum();
                let smaps = (regions.len() * crate::program::physical::smaps::WORDS) as u64 + 1;
                if !phys.is_empty()
                    && phys.len() as u64 != covered
                    && phys.len() as u64 != covered + smaps
                {
                    return Err(format!(
                        "p{p}'s view has {} pagemap words for {covered} pages",
                        phys.len()
                    ));
                }
                return Ok(Some(ProcView {
                    proc: ProcId(p as u8),
                    regions,
                    pages,
                    phys: phys.to_vec(),
                }));
            }
            Received::Msg {
                reply: Reply::Fault { .. },
                ..
            } => workers[p] = None,
            Received::Msg { .. } => {
                return Err(format!(
                    "p{p}'s layout does not fit in a reply ({} words)",
                    REPLY_PAYLOAD
                ));
            }
        }
        Ok(None)
    }

    /// Waits for a worker's end of file: it has exited, its memory released before (do_exit
    /// runs exit_mm before exit_files). A worker that hangs instead is killed.
    fn wait_gone(&mut self, w: &Worker) -> Result<(), String> {
        let fd = w.fd.as_raw_fd();
        loop {
            match self.recv(fd)? {
                Received::Gone => return Ok(()),
                Received::Msg { .. } => continue,
                Received::Hung => {
                    let _ = kill(w.pid, Signal::SIGKILL);
                    return Ok(());
                }
            }
        }
    }

    /// Reads a page dump; `None` if the page was not readable (the process is then gone).
    fn read_dump(&mut self, d: &DumpRequest, workers: &mut [Option<Worker>]) -> Option<Vec<u8>> {
        let p = d.proc.0 as usize;
        let fd = workers.get(p)?.as_ref()?.fd.as_raw_fd();
        match self.recv(fd).ok()? {
            Received::Msg {
                reply: Reply::Page { .. },
                ..
            } => Some(
                self.payload()
                    .iter()
                    .flat_map(|w| w.to_le_bytes())
                    .collect(),
            ),
            _ => {
                workers[p] = None;
                None
            }
        }
    }
}

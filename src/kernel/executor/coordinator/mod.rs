//! The coordinator: runs one program's process tree at a time. It sends every worker its steps
//! of the schedule at once (`send`), then reads the replies in program order into a
//! `KernelRun` (`receive` takes replies off the sockets, `collect` turns them into outcomes,
//! views and dumps), passing a turn itself wherever a worker could not; at the end it kills
//! the tree and reaps it while the next program runs. This file owns the program's life:
//! roots from the zygote, the run, the teardown.
//!
//! It only observes and reports; judging is the checker's job.

mod collect;
mod receive;
mod send;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::guardian::Guardian;
use super::schedule::{Step, first_unsafe_read, schedule};
use super::{Worker, set_deadline};
use crate::kernel::protocol::{DumpRequest, KernelRun, Reply, Request};
use crate::kernel::worker;
use crate::program::{Program, caps};
use receive::Received;

/// Per process handle: the sockets made for a child before its fork (ours, and theirs until
/// it is passed with the FORK).
type Unborn = [Option<(OwnedFd, Option<OwnedFd>)>];

pub(super) struct Coordinator {
    guardian: Guardian,
    op_deadline: Duration,
    page_size: u64,
    /// Receive buffer: the last message from a worker (one or more replies) lands here.
    buf: Vec<u64>,
    /// Words of the message in `buf`, the fd it came from, where its next unread reply
    /// starts, and where the reply last returned by `recv` starts.
    buf_len: usize,
    buf_fd: RawFd,
    next_reply: usize,
    reply_at: usize,
    /// The socket of the worker (of this program) killed as hung, whose unsent replies
    /// `salvage` loaded into `buf`: once they are read, every reply from it is `Hung`.
    salvaged: Option<RawFd>,
    /// The workers' slots and the trees' board (`worker::SlotsView`).
    slots: worker::SlotsView,
    /// The next turn to hand out (never 0).
    next_turn: u32,
    /// The process that forks every program's root (`worker::serve_zygote`).
    zygote: Worker,
    /// The next program's root, asked of the zygote once the current program is sent, so that
    /// neither the fork nor the root's setup waits in line. `spare_asked`: asked, reply not
    /// read yet.
    spare: Option<Worker>,
    spare_asked: bool,
    /// Process groups of finished programs: killed (SIGKILL sent to every member), not yet
    /// all reaped. Their teardown runs beside the next program instead of before it.
    dying: Vec<Pid>,
    /// The current program's first op after which snapshots may no longer read pages by
    /// plain loads (`schedule::first_unsafe_read`, `worker::Scratch::direct_reads`).
    first_unsafe: usize,
    /// Set when the guardian or the zygote died (killed from outside): every program from then
    /// on is refused with this reason.
    lost: Option<String>,
}

/// How many killed trees may be dying at once before the executor waits for the oldest.
const MAX_DYING: usize = 4;

impl Coordinator {
    /// The coordinator of an executor whose zygote is started.
    pub(super) fn new(
        guardian: Guardian,
        op_deadline: Duration,
        page_size: u64,
        slots: worker::SlotsView,
        zygote: Worker,
    ) -> Coordinator {
        Coordinator {
            guardian,
            op_deadline,
            zygote,
            spare_asked: false,
            page_size,
            buf: vec![0u64; worker::REPLY_AREA],
            buf_len: 0,
            buf_fd: -1,
            next_reply: 0,
            reply_at: 0,
            salvaged: None,
            slots,
            next_turn: 1,
            spare: None,
            dying: Vec::new(),
            first_unsafe: 0,
            lost: None,
        }
    }

    /// Runs one program in a fresh process tree: what every op did, the snapshots after forks
    /// and exits and at the end, the dumps asked for; or a harness error where the run had to
    /// stop.
    pub(super) fn run(&mut self, program: &Program, dumps: &[DumpRequest]) -> KernelRun {
        let mut run = KernelRun::default();
        if let Some(lost) = &self.lost {
            run.harness_error = Some(lost.clone());
            return run;
        }
        self.first_unsafe = first_unsafe_read(program);
        let mut workers: Vec<Option<Worker>> = (0..caps::MAX_PROCS).map(|_| None).collect();
        let root = match self.take_root() {
            Ok(w) => w,
            Err(e) => {
                run.harness_error = Some(format!("cannot fork the root process: {e}"));
                return run;
            }
        };
        let pgid = root.pid;
        // A group id is free for reuse once its tree is gone; never wait for our own.
        self.dying.retain(|g| *g != pgid);
        self.guardian.watch(pgid);
        workers[0] = Some(root);
        self.slots.board().clear_bases();
        self.salvaged = None;
        self.buf_len = 0;
        self.next_reply = 0;
        let ops = &program.ops;
        // The whole program goes out at once, as a schedule of steps that run one after the
        // other by turns (`worker::Turn`); the coordinator then reads the replies in program
        // order, and passes the turn itself for a worker that died, hung or exited.
        let mut next_turn = || self.new_turn();
        let steps = schedule(ops, dumps, &mut next_turn);
        // Every child's socket is made before the batch with its FORK is sent (and passed
        // with it), so that the child's requests can be sent before it exists; made step by
        // step, so that the root starts on its first batch without waiting for them.
        let mut unborn: Vec<Option<(OwnedFd, Option<OwnedFd>)>> =
            (0..caps::MAX_PROCS).map(|_| None).collect();
        for (n, step) in steps.iter().enumerate() {
            if let Step::Batch { ops: range, .. } = step {
                for op in &ops[range.clone()] {
                    if let Some(child) = op.born() {
                        match socketpair(
                            AddressFamily::Unix,
                            SockType::SeqPacket,
                            None,
                            SockFlag::SOCK_CLOEXEC,
                        ) {
                            Ok((ours, theirs)) => {
                                set_deadline(&ours, self.op_deadline);
                                unborn[child.0 as usize] = Some((ours, Some(theirs)));
                            }
                            Err(e) => {
                                run.harness_error = Some(format!("socketpair for {child}: {e}"));
                            }
                        }
                    }
                }
            }
            if run.harness_error.is_some() {
                break;
            }
            if let Err(e) = self.dispatch(ops, &steps, n, &workers, &mut unborn) {
                run.harness_error = Some(format!("sending {}: {e}", step.describe(ops)));
                break;
            }
        }
        self.ask_spare();
        if run.harness_error.is_none() {
            for step in &steps {
                if let Err(e) = self.collect(ops, step, &mut workers, &mut unborn, &mut run) {
                    run.harness_error = Some(format!("{}: {e}", step.describe(ops)));
                    break;
                }
            }
        }
        if run.harness_error.is_none() && self.next_reply < self.buf_len {
            run.harness_error = Some(format!(
                "{} words of replies from fd {} were never asked for",
                self.buf_len - self.next_reply,
                self.buf_fd
            ));
        }
        // End of program: kill the whole tree and reap everything, orphans included (we are
        // their subreaper).
        let _ = kill(Pid::from_raw(-pgid.as_raw()), Signal::SIGKILL);
        for w in workers.iter().flatten() {
            let _ = kill(w.pid, Signal::SIGKILL);
        }
        drop(workers);
        // The tree is reaped later (`reap`), while the next program runs.
        self.dying.push(pgid);
        run
    }

    /// Reaps the killed trees. A dying process hands its children to us (we are the
    /// subreaper; under an emulator that does not pass PR_SET_CHILD_SUBREAPER on, to init), so
    /// the processes of a killed tree but its root end as our zombies; the zygote reaps the
    /// roots. Our zombies are reaped with waitpid(-1) first, so that the per-tree
    /// waitpid(-pgid) that follows scans a short list of children (with every zombie still in
    /// it, that scan was 3.6% of a single-CPU `cowcheck run`, in wait_consider_task). A tree is
    /// gone when none of its processes is our child any more (ECHILD). `all`: wait until
    /// every tree is gone; else wait only for the oldest trees beyond MAX_DYING.
    pub(super) fn reap(&mut self, all: bool) {
        loop {
            match waitpid(
                Pid::from_raw(-1),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            ) {
                Ok(nix::sys::wait::WaitStatus::StillAlive) => break,
                Ok(status) => {
                    // The guardian and the zygote live as long as the executor: one that is
                    // gone was killed from outside, and the run stops (its next program says
                    // why).
                    let pid = status.pid();
                    let who = if pid.is_some() && pid == self.guardian.pid {
                        Some("guardian")
                    } else if pid == Some(self.zygote.pid) {
                        Some("zygote")
                    } else {
                        None
                    };
                    // Without the guardian nobody would give the hugetlb pool share back if
                    // we were killed next (the front kills us when the run stops): now
                    // (docs/SEMANTICS.md L7; found by tests/lifetime.rs, SIGKILL of it).
                    if who == Some("guardian") {
                        // SAFETY: the guardian's shared page stays mapped in this process.
                        unsafe {
                            crate::kernel::hugetlb_pool::give_back(self.guardian.pool_slot())
                        };
                    }
                    if let (Some(who), Some(pid)) = (who, pid)
                        && self.lost.is_none()
                    {
                        self.lost = Some(format!(
                            "the executor's {who} (pid {pid}) is gone ({status:?}), killed from outside the run: stopping, as the run can no longer promise to clean up after itself"
                        ));
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        let mut k = 0;
        while k < self.dying.len() {
            let must_wait = all || self.dying.len() - k > MAX_DYING;
            let group = Pid::from_raw(-self.dying[k].as_raw());
            let flags = (!must_wait).then_some(nix::sys::wait::WaitPidFlag::WNOHANG);
            let gone = loop {
                match waitpid(group, flags) {
                    Ok(nix::sys::wait::WaitStatus::StillAlive) => break false,
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(_) => break true,
                }
            };
            if gone {
                self.dying.remove(k);
            } else {
                k += 1;
            }
        }
    }

    /// Before the executor exits: the spare root and every dying tree are killed and reaped.
    pub(super) fn shut_down(&mut self) {
        if self.spare_asked {
            self.spare = self.receive_root().ok();
        }
        if let Some(spare) = self.spare.take() {
            let _ = kill(spare.pid, Signal::SIGKILL);
            self.dying.push(spare.pid);
        }
        // The zygote goes first: a spare it forked is then our child (we are the subreaper),
        // which `reap` can wait for.
        let _ = kill(self.zygote.pid, Signal::SIGKILL);
        while let Err(Errno::EINTR) = waitpid(self.zygote.pid, None) {}
        self.reap(true);
    }

    /// A turn never handed out before (`worker::Turn`).
    fn new_turn(&mut self) -> u32 {
        let t = self.next_turn;
        self.next_turn = self.next_turn.wrapping_add(1).max(1);
        t
    }

    /// Asks the zygote for the next program's root, unless one is ready or asked for.
    pub(super) fn ask_spare(&mut self) {
        if self.spare.is_some() || self.spare_asked {
            return;
        }
        let req = Request::SpawnRoot.encode();
        let fd = self.zygote.fd.as_raw_fd();
        self.spare_asked = matches!(self.send_message(fd, &req, None), Ok(true));
    }

    /// The root for a new program: the spare, else one asked for now.
    fn take_root(&mut self) -> Result<Worker, String> {
        if let Some(root) = self.spare.take() {
            return Ok(root);
        }
        self.ask_spare();
        if !self.spare_asked {
            return Err("the zygote is gone".into());
        }
        self.receive_root()
    }

    /// Reads the zygote's reply to SPAWN_ROOT.
    fn receive_root(&mut self) -> Result<Worker, String> {
        self.spare_asked = false;
        let fd = self.zygote.fd.as_raw_fd();
        match self.recv(fd)? {
            Received::Msg {
                reply: Reply::Done { value: pid },
                fd: Some(fd),
            } => {
                set_deadline(&fd, self.op_deadline);
                Ok(Worker {
                    pid: Pid::from_raw(pid as i32),
                    fd,
                })
            }
            Received::Msg {
                reply: Reply::Failed { errno },
                ..
            } => Err(Errno::from_raw(errno).to_string()),
            Received::Msg { reply, .. } => Err(format!("the zygote refused ({reply:?})")),
            Received::Gone => Err("the zygote is gone".into()),
            Received::Hung => Err("the zygote did not answer".into()),
        }
    }
}

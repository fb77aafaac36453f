//! The executor: a separate, single-threaded process (`cowcheck __executor`, possibly started
//! through `--under CMD`) that takes programs on stdin, runs each in a fresh process tree and
//! writes what happened to stdout. It is the coordinator of the tree: it holds one socket to
//! every worker, sends every worker its part of the program at once (a schedule of steps, run
//! one after another by turns that the workers pass each other through shared memory, see
//! `worker::Turn`), then reads the replies in program order.
//!
//! Roots are forked by a zygote (`worker::serve_zygote`), never by the executor itself.
//!
//! Lifetime rules: the executor dies with its parent (PR_SET_PDEATHSIG); it is the child
//! subreaper of its tree, so orphans come back to it; every program's tree is one process group,
//! killed and reaped at the end of the program; a worker whose coordinator is gone sees end of
//! file on its socket and exits. Nothing outlives a run.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, socketpair,
};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::protocol::{
    DumpRequest, Enc, Hello, KernelRun, REPLY_HEAD, REPLY_PAYLOAD, REQ_CREATES, REQ_RELOC,
    REQ_WORDS, region_from_words, status, verb,
};
use super::worker::{self, Scratch};
use crate::program::outcome::{Death, Outcome, ProcView, Snapshot};
use crate::program::{
    Advice, BadArg, MapId, MapKind, Op, Pattern, PlaceHow, ProcId, Program, Prot, Syscall, Via,
    caps, trace,
};

/// How long one op may take by default before its worker counts as hung (an observation: the
/// worker is killed and the op's outcome is `Hung`).
pub const DEFAULT_OP_DEADLINE: Duration = Duration::from_secs(10);

struct Worker {
    pid: Pid,
    fd: OwnedFd,
}

/// A reply from a worker.
enum Reply {
    /// Status, header words, payload words, and a passed fd if any.
    Msg {
        st: u64,
        head: [u64; REPLY_HEAD],
        payload: usize,
        fd: Option<OwnedFd>,
    },
    /// End of file: the process is gone without a word.
    Gone,
    /// No reply within the op deadline.
    Hung,
}

struct Coordinator {
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
    /// Whether the current program lets snapshots read pages by plain loads
    /// (`worker::Scratch::direct_reads`).
    direct_reads: bool,
}

/// How many killed trees may be dying at once before the executor waits for the oldest.
const MAX_DYING: usize = 4;

/// The executor's main: returns the process exit status.
pub fn main(inject: u32, op_deadline: Duration) -> i32 {
    // SIGKILL us if the cowcheck that started us dies (even by SIGKILL). If it already died
    // before this line, exit now.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if nix::unistd::getppid() == Pid::from_raw(1) {
        return 0;
    }
    let _ = nix::sys::prctl::set_child_subreaper(true);
    keep_heap();
    let guardian = Guardian::start();
    worker::set_inject(inject);
    let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    let (release, machine) = match nix::sys::utsname::uname() {
        Ok(u) => (
            u.release().to_string_lossy().into_owned(),
            u.machine().to_string_lossy().into_owned(),
        ),
        Err(_) => ("unknown".into(), "unknown".into()),
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut input = stdin.lock();
    let mut output = stdout.lock();
    let mut enc = Enc::default();
    let features = probe_features(page_size as usize);
    enc.hello(&Hello {
        page_size,
        release,
        machine,
        features,
    });
    if write_frame(&mut output, &enc.buf).is_err() {
        return 2;
    }
    let scratch = Scratch::new(page_size as usize);
    let slots = scratch.slots_view();
    if !slots.turn.works() {
        eprintln!("cowcheck executor: cannot map its shared slots (mmap MAP_SHARED|MAP_ANONYMOUS)");
        return 2;
    }
    let zygote = match spawn_zygote(scratch, op_deadline) {
        Ok(z) => z,
        Err(_) => return 2,
    };
    let mut c = Coordinator {
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
        direct_reads: false,
    };
    loop {
        let frame = match read_frame(&mut input) {
            Ok(Some(f)) => f,
            Ok(None) => {
                c.shut_down();
                return 0;
            }
            Err(_) => {
                c.shut_down();
                return 2;
            }
        };
        let mut enc = Enc::default();
        match frame.first() {
            Some(&REQUEST_FORK_BENCH) => {
                let n = frame
                    .get(1..5)
                    .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                // The yardstick runs alone: no tree dying beside it.
                c.reap(true);
                let samples = fork_bench(n.min(100_000));
                enc.u32(samples.len() as u32);
                for s in samples {
                    enc.u64(s);
                }
            }
            _ => {
                let run = match decode_request(frame.get(1..).unwrap_or(&[])) {
                    Ok((program, dumps)) => c.run(&program, &dumps),
                    Err(e) => KernelRun {
                        harness_error: Some(e),
                        ..KernelRun::default()
                    },
                };
                enc.run(&run);
            }
        }
        if write_frame(&mut output, &enc.buf).is_err() {
            c.shut_down();
            return 2;
        }
        // While the front checks this program: reap what has died; fork the next root if the
        // program did not (it had no batch, or the fork failed).
        c.reap(false);
        c.ask_spare();
    }
}

/// Keeps freed memory in the executor's heap instead of returning it to the kernel: a
/// program's buffers (its trace, its reply with every snapshot) are allocated and freed once
/// per program, and glibc's defaults (mmap above 128 KiB, trim above 128 KiB) made each
/// program pay for fresh mappings and their page faults (perf record: munmap and page faults
/// in the executor every program). The working set is a few MiB.
fn keep_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before anything is allocated in
    // bulk, from the single thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// A tiny process beside the tree whose only job is to kill the current program's process
/// group if the executor dies (PR_SET_PDEATHSIG): workers see end of file on their sockets
/// and exit by themselves, but one stuck inside an op (an emulator spinning on a fault) would
/// not. The executor tells it the current group through a shared page.
struct Guardian {
    pgid: *mut i32,
}

impl Guardian {
    fn start() -> Guardian {
        // SAFETY: a fresh shared anonymous page for one i32, kept for the executor's life.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if page == libc::MAP_FAILED {
            return Guardian {
                pgid: std::ptr::null_mut(),
            };
        }
        let pgid = page as *mut i32;
        // SAFETY: the executor is single-threaded; the child only makes async-signal-safe
        // calls (prctl, sigsuspend, kill, _exit) and reads the shared page.
        if let Ok(nix::unistd::ForkResult::Child) = unsafe { nix::unistd::fork() } {
            unsafe {
                libc::close(0);
                libc::close(1);
                let mut mask: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut mask);
                libc::sigaddset(&mut mask, libc::SIGUSR1);
                libc::sigprocmask(libc::SIG_BLOCK, &mask, std::ptr::null_mut());
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGUSR1);
                if libc::getppid() != 1 {
                    let mut sig = 0;
                    libc::sigwait(&mask, &mut sig);
                }
                let g = std::ptr::read_volatile(pgid);
                if g > 0 {
                    libc::kill(-g, libc::SIGKILL);
                }
                libc::_exit(0);
            }
        }
        Guardian { pgid }
    }

    fn watch(&self, pgid: Pid) {
        if !self.pgid.is_null() {
            // SAFETY: the shared page lives as long as the executor.
            unsafe { std::ptr::write_volatile(self.pgid, pgid.as_raw()) };
        }
    }
}

/// Finds out what the kernel supports by trying each thing once, in the executor itself, before
/// any program runs (never by parsing the version: backports and emulators make versions lie).
fn probe_features(ps: usize) -> crate::program::features::Features {
    // SAFETY: every call below works on a scratch mapping made and removed here, or is
    // madvise(NULL, 0, advice), which touches nothing (SEMANTICS F0: returns 0 iff the advice
    // is supported).
    unsafe {
        let advice_known = |a: i32| libc::madvise(std::ptr::null_mut(), 0, a) == 0;
        let scratch = |flags: i32| {
            let p = libc::mmap(
                std::ptr::null_mut(),
                ps,
                libc::PROT_READ | libc::PROT_WRITE,
                flags | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            (p != libc::MAP_FAILED).then_some(p)
        };
        let works_on = |flags: i32, f: &dyn Fn(*mut libc::c_void) -> bool| match scratch(flags) {
            Some(p) => {
                let ok = f(p);
                libc::munmap(p, ps);
                ok
            }
            None => false,
        };
        let dontunmap = |flags: i32| {
            works_on(flags, &|p| {
                let q = libc::mremap(
                    p,
                    ps,
                    ps,
                    libc::MREMAP_MAYMOVE | libc::MREMAP_DONTUNMAP,
                    std::ptr::null_mut::<libc::c_void>(),
                );
                if q == libc::MAP_FAILED {
                    return false;
                }
                libc::munmap(q, ps);
                true
            })
        };
        let guard = advice_known(102);
        crate::program::features::Features {
            guard,
            guard_shared: guard && works_on(libc::MAP_SHARED, &|p| libc::madvise(p, ps, 102) == 0),
            populate: advice_known(libc::MADV_POPULATE_READ),
            cold_pageout: advice_known(libc::MADV_PAGEOUT),
            wipeonfork: advice_known(libc::MADV_WIPEONFORK),
            free: advice_known(libc::MADV_FREE),
            dontunmap: dontunmap(libc::MAP_PRIVATE),
            dontunmap_shared: dontunmap(libc::MAP_SHARED),
            // Before 4.17 the flag is ignored and the address is only a hint (D4).
            // proc_mem.force_override=never (6.12) forbids forced writes: try one into a
            // read-only private scratch page.
            force_write: works_on(libc::MAP_PRIVATE, &|p| {
                let fd = libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
                if fd < 0 {
                    return false;
                }
                let ok = libc::mprotect(p, ps, libc::PROT_READ) == 0
                    && libc::pwrite(fd, b"x".as_ptr() as *const libc::c_void, 1, p as i64) == 1;
                libc::close(fd);
                ok
            }),
            noreplace: works_on(libc::MAP_PRIVATE, &|p| {
                let q = libc::mmap(
                    p,
                    ps,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                );
                if q == libc::MAP_FAILED {
                    return nix::errno::Errno::last() == Errno::EEXIST;
                }
                if q != p {
                    libc::munmap(q, ps);
                }
                false
            }),
        }
    }
}

pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&(payload.len() as u32).to_le_bytes())?;
    w.write_all(payload)?;
    w.flush()
}

/// One frame, or `None` at a clean end of file.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > 64 << 20 {
        return Err(std::io::Error::other("frame too large"));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

pub const REQUEST_RUN: u8 = 0;
pub const REQUEST_FORK_BENCH: u8 = 1;

/// The bare cost of fork + _exit + waitpid in this process image, `n` times, in nanoseconds:
/// the yardstick `cowcheck bench` holds program times against.
fn fork_bench(n: u32) -> Vec<u64> {
    let mut samples = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        // SAFETY: the executor is single-threaded; the child only calls _exit.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => unsafe { libc::_exit(0) },
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                while let Err(Errno::EINTR) = waitpid(child, None) {}
            }
            Err(_) => break,
        }
        samples.push(t.elapsed().as_nanos() as u64);
    }
    samples
}

/// A run request: the dump requests, then the program as a text trace.
pub fn encode_request(program: &Program, dumps: &[DumpRequest]) -> Vec<u8> {
    let mut enc = Enc::default();
    enc.u8(REQUEST_RUN);
    enc.u32(dumps.len() as u32);
    for d in dumps {
        enc.dump_request(d);
    }
    enc.buf.extend_from_slice(program.to_string().as_bytes());
    enc.buf
}

fn decode_request(frame: &[u8]) -> Result<(Program, Vec<DumpRequest>), String> {
    let mut dec = super::protocol::Dec::new(frame);
    let bad = |e: super::protocol::DecodeError| e.to_string();
    let n = dec.u32().map_err(bad)? as usize;
    let mut dumps = Vec::new();
    for _ in 0..n.min(1024) {
        dumps.push(dec.dump_request().map_err(bad)?);
    }
    let text = dec.rest();
    let program =
        trace::parse(text).map_err(|e| format!("executor could not parse the program: {e}"))?;
    Ok((program, dumps))
}

fn set_deadline(fd: &OwnedFd, deadline: Duration) {
    let tv =
        nix::sys::time::TimeVal::new(deadline.as_secs() as i64, deadline.subsec_micros() as i64);
    let _ = nix::sys::socket::setsockopt(fd, nix::sys::socket::sockopt::ReceiveTimeout, &tv);
}

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
enum Step {
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
    fn describe(&self, ops: &[Op]) -> String {
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
fn schedule(ops: &[Op], dumps: &[DumpRequest], new_turn: &mut dyn FnMut() -> u32) -> Vec<Step> {
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
                    Op::Fork { child, .. } => live[child.0 as usize] = true,
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
                Op::Fork { child, .. } if live[child.0 as usize] => Some(child.0 as usize),
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

/// Whether no op of `program` can make a page that /proc/self/maps lists as readable fault on
/// a load, so that snapshots may read pages directly instead of through `process_vm_readv`
/// (measured: `process_vm_readv` was ~8% of a bench run's CPU, mostly pinning pages). A guard
/// region (MADV_GUARD_INSTALL) faults inside a readable VMA; an mremap can map a shared object
/// past its end (SIGBUS), and so could an invalid mremap that a kernel wrongly took.
fn direct_reads_allowed(program: &Program) -> bool {
    !program.ops.iter().any(|op| {
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
        )
    })
}

fn kind_code(k: MapKind) -> u64 {
    match k {
        MapKind::Private => 0,
        MapKind::Shared => 1,
        MapKind::PrivateZero => 2,
        MapKind::SharedZero => 3,
    }
}

/// Forks the zygote (`worker::serve_zygote`), which forks every program's root. It holds
/// nothing of the executor's but its own socket (as fd 3) and `scratch`, and dies with the
/// executor. It ignores SIGCHLD, so the kernel reaps the roots it forks (they are not ours
/// to wait for; their orphaned descendants come to us, the subreaper).
fn spawn_zygote(mut scratch: Scratch, op_deadline: Duration) -> Result<Worker, Errno> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let executor = nix::unistd::getpid();
    // SAFETY: the executor is single-threaded; the child runs only the zygote loop, which
    // allocates nothing.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            if nix::unistd::getppid() != executor {
                // SAFETY: _exit is always safe to call.
                unsafe { libc::_exit(0) };
            }
            // Roots and their trees must not hold the executor's pipes (the front detects the
            // executor's death by end of file on them), nor any socket of a live program (a
            // worker would then never see end of file). Its stderr goes to /dev/null too: under
            // an emulator, the emulator's own "uncaught target signal" lines for workers that
            // die on purpose are noise. Keep only our own socket, as fd 3.
            drop(ours);
            let mut fd = theirs.into_raw_fd();
            // SAFETY: closing and replacing fds this process owns and never uses again; the
            // SIGCHLD disposition only concerns this process's children (the roots).
            unsafe {
                libc::close(0);
                libc::close(1);
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
                if null >= 0 {
                    libc::dup2(null, 2);
                    libc::close(null);
                }
                if fd != 3 && libc::dup2(fd, 3) == 3 {
                    fd = 3;
                }
                if libc::close_range(fd as u32 + 1, u32::MAX, 0) != 0 {
                    for other in fd + 1..4096 {
                        libc::close(other);
                    }
                }
                for other in 3..fd {
                    libc::close(other);
                }
                let mut ign: libc::sigaction = std::mem::zeroed();
                ign.sa_sigaction = libc::SIG_IGN;
                libc::sigaction(libc::SIGCHLD, &ign, std::ptr::null_mut());
            }
            worker::serve_zygote(fd, &mut scratch)
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            set_deadline(&ours, op_deadline);
            Ok(Worker {
                pid: child,
                fd: ours,
            })
        }
    }
}

impl Coordinator {
    fn run(&mut self, program: &Program, dumps: &[DumpRequest]) -> KernelRun {
        let mut run = KernelRun::default();
        self.direct_reads = direct_reads_allowed(program);
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
                    if let Op::Fork { child, .. } = *op {
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
    fn reap(&mut self, all: bool) {
        loop {
            match waitpid(
                Pid::from_raw(-1),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            ) {
                Ok(nix::sys::wait::WaitStatus::StillAlive) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
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
    fn shut_down(&mut self) {
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
    fn ask_spare(&mut self) {
        if self.spare.is_some() || self.spare_asked {
            return;
        }
        let mut req = [0u64; REQ_WORDS];
        req[0] = verb::SPAWN_ROOT;
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
            Reply::Msg {
                st: status::OK,
                head,
                fd: Some(fd),
                ..
            } => {
                set_deadline(&fd, self.op_deadline);
                Ok(Worker {
                    pid: Pid::from_raw(head[1] as i32),
                    fd,
                })
            }
            Reply::Msg {
                st: status::ERR,
                head,
                ..
            } => Err(Errno::from_raw(head[1] as i32).to_string()),
            Reply::Msg { st, .. } => Err(format!("the zygote refused (status {st})")),
            Reply::Gone => Err("the zygote is gone".into()),
            Reply::Hung => Err("the zygote did not answer".into()),
        }
    }

    /// The next reply from the worker at `fd`: the next one of its last message if that had
    /// more (a worker replies to a batch's ops in one message), else the first of a new
    /// message. Each worker socket carries SO_RCVTIMEO = the op deadline, so a hung worker
    /// shows as EAGAIN, without a poll per message.
    fn recv(&mut self, fd: RawFd) -> Result<Reply, String> {
        if self.next_reply >= self.buf_len && self.salvaged == Some(fd) {
            return Ok(Reply::Hung);
        }
        if self.next_reply < self.buf_len {
            if self.buf_fd != fd {
                return Err(format!(
                    "replies of fd {} left unread before a reply from fd {fd}",
                    self.buf_fd
                ));
            }
            return self.next_from_buffer(None);
        }
        let buf: &mut [u8] = {
            let len = self.buf.len() * 8;
            // SAFETY: viewing the u64 buffer as bytes of the same length; u8 has no alignment.
            unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr() as *mut u8, len) }
        };
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        // No spinning before sleeping: with two CPUs a spinning coordinator takes the CPU
        // that the worker it waits for (or the workers looking at themselves in parallel)
        // need. Measured with `cowcheck bench --programs 4000`: 1.63 ms per program without,
        // 2.0 ms with a 200 us spin (the spin paid off before snapshots went parallel).
        let (n, passed) = loop {
            let mut iov = [std::io::IoSliceMut::new(&mut *buf)];
            match recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(msg) => {
                    let mut passed = None;
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(fds) = c {
                                for f in fds {
                                    // SAFETY: the kernel just gave us this fd.
                                    let owned = unsafe { OwnedFd::from_raw_fd(f) };
                                    passed.get_or_insert(owned);
                                }
                            }
                        }
                    }
                    break (msg.bytes, passed);
                }
                // A worker that died with requests still unread in its queue leaves a one-shot
                // ECONNRESET on our socket, which the kernel reports before the replies it sent
                // before dying (net/core/datagram.c checks sock_error() first): take it and
                // read on; end of file follows the replies.
                Err(Errno::EINTR) | Err(Errno::ECONNRESET) => continue,
                Err(Errno::EAGAIN) => return Ok(Reply::Hung),
                Err(e) => return Err(format!("recvmsg from worker: {e}")),
            }
        };
        if n == 0 {
            return Ok(Reply::Gone);
        }
        if n % 8 != 0 {
            return Err(format!("reply of {n} bytes"));
        }
        self.buf_len = n / 8;
        self.buf_fd = fd;
        self.next_reply = 0;
        self.next_from_buffer(passed)
    }

    /// A worker answered no message within the op deadline: it is killed, and the replies it
    /// had built but not sent (the ops of its batch that did finish) are read from its slot,
    /// so that the hang is named at the op that hung. Returns the first of them, or `Hung`.
    fn salvage(
        &mut self,
        p: usize,
        fd: RawFd,
        workers: &[Option<Worker>],
    ) -> Result<Reply, String> {
        if let Some(w) = &workers[p] {
            let _ = kill(w.pid, Signal::SIGKILL);
        }
        if self.salvaged == Some(fd) {
            // Its unsent replies were read already: this is the op it hung in.
            return Ok(Reply::Hung);
        }
        self.salvaged = Some(fd);
        let words = self.slots.unsent(p);
        if words.is_empty() {
            return Ok(Reply::Hung);
        }
        self.buf[..words.len()].copy_from_slice(&words);
        self.buf_len = words.len();
        self.buf_fd = fd;
        self.next_reply = 0;
        self.next_from_buffer(None)
    }

    /// Parses the reply at `next_reply` (a head, whose word 5 is the payload's length, then
    /// the payload).
    fn next_from_buffer(&mut self, fd: Option<OwnedFd>) -> Result<Reply, String> {
        let at = self.next_reply;
        if at + REPLY_HEAD > self.buf_len {
            return Err(format!("short reply of {} words", self.buf_len - at));
        }
        let mut head = [0u64; REPLY_HEAD];
        head.copy_from_slice(&self.buf[at..at + REPLY_HEAD]);
        let payload = head[5] as usize;
        if payload > self.buf_len - at - REPLY_HEAD {
            return Err(format!("a reply's payload of {payload} words is cut short"));
        }
        self.reply_at = at;
        self.next_reply = at + REPLY_HEAD + payload;
        Ok(Reply::Msg {
            st: head[0],
            head,
            payload,
            fd,
        })
    }

    /// The first `n` payload words of the reply last returned by `recv`.
    fn payload(&self, n: usize) -> &[u64] {
        let start = self.reply_at + REPLY_HEAD;
        &self.buf[start..start + n]
    }

    fn death(&self, head: &[u64; REPLY_HEAD]) -> Death {
        Death {
            signal: head[1] as i32,
            code: head[2] as i32,
            page: head[3] & !(self.page_size - 1),
        }
    }

    /// The request for `op`, or `None` if it names a mapping that has no address (its map
    /// never ran or failed: skipped on both sides).
    /// The request for `op`. Mappings are named by handle (`REQ_RELOC`): the worker resolves
    /// them when it runs the op, so that requests can be sent before the maps they name ran.
    fn request(&self, op: &Op) -> [u64; REQ_WORDS] {
        let ps = self.page_size;
        let mask = std::cell::Cell::new(0u64);
        let reloc = |i: usize, m: MapId, page: u64| {
            mask.set(mask.get() | 1 << i);
            ((m.0 as u64 + 1) << 32) | page
        };
        let mut req = [0u64; REQ_WORDS];
        match *op {
            Op::Map { kind, pages, .. } => {
                req[0] = verb::MAP;
                req[1] = kind_code(kind);
                req[2] = pages as u64 * ps;
            }
            Op::MapAt {
                kind,
                pages,
                how,
                at: a,
                ..
            } => {
                req[0] = verb::MAP_AT;
                req[1] = kind_code(kind);
                req[2] = pages as u64 * ps;
                req[3] = reloc(3, a.map, a.page as u64);
                req[4] = match how {
                    PlaceHow::Fixed => 1,
                    PlaceHow::NoReplace => 2,
                    PlaceHow::Hint => 3,
                };
            }
            Op::Write { map, span, .. }
            | Op::Read { map, span, .. }
            | Op::Poke { map, span, .. } => {
                let r = span.page_range();
                let b = span.bytes_in_page(ps as usize);
                req[1] = reloc(1, map, 0);
                req[2] = r.start as u64;
                req[3] = r.len() as u64;
                req[4] = b.start as u64;
                req[5] = b.end as u64;
                let code = |p: Pattern| match p {
                    Pattern::Fill(b) => b as u64,
                    Pattern::Ramp(b) => 1 << 8 | b as u64,
                };
                match *op {
                    Op::Write { pattern, .. } => {
                        req[0] = verb::WRITE;
                        req[6] = code(pattern);
                    }
                    Op::Poke { pattern, via, .. } => {
                        req[0] = verb::POKE;
                        req[6] = code(pattern);
                        req[7] = (via == Via::Vm) as u64;
                    }
                    _ => req[0] = verb::READ,
                }
            }
            Op::Fork { child, .. } => {
                req[0] = verb::FORK;
                // The child's slot, and how its first view reads; words 3-5 (the snapshot
                // after the fork) are filled in by the schedule.
                req[1] = child.0 as u64;
                req[2] = self.direct_reads as u64;
            }
            Op::Exit { .. } => req[0] = verb::EXIT,
            Op::Vmsplice { map, page, .. } => {
                req[0] = verb::VMSPLICE;
                req[1] = reloc(1, map, 0);
                req[2] = page as u64;
            }
            Op::PipeRead { .. } => req[0] = verb::PIPE_READ,
            Op::Unmap { map, pages, .. } => {
                req[0] = verb::UNMAP;
                req[1] = reloc(1, map, 0);
                req[2] = pages.start as u64;
                req[3] = pages.len() as u64;
            }
            Op::Protect {
                map, pages, prot, ..
            } => {
                req[0] = verb::PROTECT;
                req[1] = reloc(1, map, 0);
                req[2] = pages.start as u64;
                req[3] = pages.len() as u64;
                req[4] = match prot {
                    Prot::None => libc::PROT_NONE,
                    Prot::Read => libc::PROT_READ,
                    Prot::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
                    Prot::Write => libc::PROT_WRITE,
                } as u64;
            }
            Op::Advise {
                map, pages, advice, ..
            } => {
                req[0] = verb::ADVISE;
                req[1] = reloc(1, map, 0);
                req[2] = pages.start as u64;
                req[3] = pages.len() as u64;
                req[4] = advice.number() as u64;
            }
            Op::Remap {
                map,
                old,
                new_pages,
                flags,
                ..
            } => {
                req[0] = verb::REMAP;
                req[1] = reloc(1, map, 0);
                req[2] = old.start as u64;
                req[3] = (old.end - old.start) as u64;
                req[4] = new_pages as u64;
                let mut f = 0;
                if flags.maymove {
                    f |= libc::MREMAP_MAYMOVE;
                }
                if flags.dontunmap {
                    f |= libc::MREMAP_DONTUNMAP;
                }
                if let Some(a) = flags.fixed {
                    f |= libc::MREMAP_FIXED;
                    req[6] = reloc(6, a.map, a.page as u64);
                }
                req[5] = f as u64;
            }
            Op::Invalid { map, call, bad, .. } => {
                req[0] = verb::INVALID;
                req[1] = reloc(1, map, 0);
                req[2] = Syscall::ALL.iter().position(|c| *c == call).unwrap_or(0) as u64;
                req[3] = BadArg::ALL.iter().position(|b| *b == bad).unwrap_or(0) as u64;
            }
        }
        req[REQ_RELOC] = mask.get();
        req[REQ_CREATES] = op.creates().map_or(0, |m| m.0 as u64 + 1);
        req
    }

    /// Sends step `n` of the schedule to its process (the root, or a child's socket made in
    /// advance); a FORK's message carries the child's socket. A step of a process that is
    /// gone or never exists is not sent (its collection says so).
    fn dispatch(
        &mut self,
        ops: &[Op],
        steps: &[Step],
        n: usize,
        workers: &[Option<Worker>],
        unborn: &mut [Option<(OwnedFd, Option<OwnedFd>)>],
    ) -> Result<(), String> {
        let fd_of = |p: usize, unborn: &[Option<(OwnedFd, Option<OwnedFd>)>]| {
            workers[p]
                .as_ref()
                .map(|w| w.fd.as_raw_fd())
                .or_else(|| unborn[p].as_ref().map(|(ours, _)| ours.as_raw_fd()))
        };
        let mut words: Vec<u64> = Vec::new();
        let push = |words: &mut Vec<u64>, verb: u64, args: &[u64]| {
            let mut req = [0u64; REQ_WORDS];
            req[0] = verb;
            req[1..1 + args.len()].copy_from_slice(args);
            words.extend_from_slice(&req);
        };
        match &steps[n] {
            Step::Batch {
                ops: range,
                wait,
                pass,
                live,
            } => {
                let p = ops[range.start].proc().0 as usize;
                let Some(fd) = fd_of(p, unborn).filter(|_| *live) else {
                    return Ok(());
                };
                if *wait != 0 {
                    push(&mut words, verb::AWAIT, &[*wait as u64]);
                }
                let mut passed = None;
                for op in &ops[range.clone()] {
                    let mut req = self.request(op);
                    if let Op::Exit { .. } = *op {
                        // Passed by the process on its way out (the views after it start).
                        req[1] = *pass as u64;
                    }
                    if let Op::Fork { child, .. } = *op {
                        // The snapshot after the fork, which the child's first view joins.
                        if let Some(Step::Views {
                            serial, mask, next, ..
                        }) = steps.get(n + 1)
                        {
                            req[3] = *serial as u64;
                            req[4] = *mask as u64;
                            req[5] = *next as u64;
                        }
                        passed = unborn[child.0 as usize]
                            .as_mut()
                            .and_then(|(_, theirs)| theirs.take());
                    }
                    words.extend_from_slice(&req);
                }
                // An exit's turn is passed by the coordinator, once the process is gone.
                if *pass != 0 && !matches!(ops[range.end - 1], Op::Exit { .. }) {
                    push(&mut words, verb::PASS, &[*pass as u64]);
                }
                // Sent, the child's end is the parent's (and then the child's) alone: we must
                // not hold it, or we would never see the child's end of file.
                self.send_message(fd, &words, passed.as_ref().map(|f| f.as_raw_fd()))?;
                drop(passed);
            }
            Step::Views {
                serial,
                mask,
                next,
                viewers,
                child,
                after_exit,
                ..
            } => {
                let next = if *after_exit { &0 } else { next };
                for &q in viewers {
                    if Some(q) == *child {
                        // It sends its first view unasked.
                        continue;
                    }
                    let Some(fd) = fd_of(q, unborn) else {
                        continue;
                    };
                    words.clear();
                    push(&mut words, verb::AWAIT, &[*serial as u64]);
                    push(
                        &mut words,
                        verb::SNAPSHOT,
                        &[
                            self.direct_reads as u64,
                            *serial as u64,
                            *mask as u64,
                            *next as u64,
                        ],
                    );
                    self.send_message(fd, &words, None)?;
                }
            }
            Step::Dump { dump, wait, pass } => {
                let p = dump.proc.0 as usize;
                let Some(fd) = fd_of(p, unborn) else {
                    return Ok(());
                };
                push(&mut words, verb::AWAIT, &[*wait as u64]);
                let mut req = [0u64; REQ_WORDS];
                req[0] = verb::DUMP;
                req[1] = ((dump.map.0 as u64 + 1) << 32) | dump.page as u64;
                req[REQ_RELOC] = 1 << 1;
                words.extend_from_slice(&req);
                push(&mut words, verb::PASS, &[*pass as u64]);
                self.send_message(fd, &words, None)?;
            }
        }
        Ok(())
    }

    /// Sends one message of requests (split into several if it has more than a worker takes
    /// at once), passing `pass_fd` with the first; `false` if the peer is already gone (not an
    /// error: the step's collection finds out).
    fn send_message(
        &mut self,
        fd: RawFd,
        words: &[u64],
        pass_fd: Option<RawFd>,
    ) -> Result<bool, String> {
        let mut pass_fd = pass_fd;
        for chunk in words.chunks(worker::MAX_BATCH * REQ_WORDS) {
            // SAFETY: viewing u64 words as bytes of the same length (native order, as the
            // worker, a fork of this process, reads them).
            let bytes =
                unsafe { std::slice::from_raw_parts(chunk.as_ptr() as *const u8, chunk.len() * 8) };
            let iov = [std::io::IoSlice::new(bytes)];
            let fds: Vec<RawFd> = pass_fd.take().into_iter().collect();
            let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
            let cmsgs: &[nix::sys::socket::ControlMessage] =
                if fds.is_empty() { &[] } else { &cmsg };
            loop {
                match nix::sys::socket::sendmsg::<()>(fd, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
                {
                    Ok(_) => break,
                    Err(Errno::EINTR) => continue,
                    Err(Errno::EPIPE) | Err(Errno::ECONNRESET) => return Ok(false),
                    Err(e) => return Err(format!("send to worker: {e}")),
                }
            }
        }
        Ok(true)
    }

    /// Reads what step `step` produced, in program order, into `run`; passes the step's turn
    /// if its process could not (it died, hung, vanished or exited), so that the steps after
    /// it run.
    fn collect(
        &mut self,
        ops: &[Op],
        step: &Step,
        workers: &mut [Option<Worker>],
        unborn: &mut [Option<(OwnedFd, Option<OwnedFd>)>],
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
                    if let Reply::Hung = reply {
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
        reply: Reply,
        workers: &mut [Option<Worker>],
        unborn: &mut [Option<(OwnedFd, Option<OwnedFd>)>],
    ) -> Result<Outcome, String> {
        let p = op.proc().0 as usize;
        let (st, head, payload) = match reply {
            Reply::Hung => {
                // A hang is an observation (an emulator's deadlock is a finding): the worker is
                // killed and the op says so.
                if let Some(w) = workers[p].take() {
                    let _ = kill(w.pid, Signal::SIGKILL);
                }
                return Ok(Outcome::Hung);
            }
            Reply::Gone => {
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
            Reply::Msg {
                st, head, payload, ..
            } => (st, head, payload),
        };
        match st {
            status::OK => {}
            status::SKIPPED => return Ok(Outcome::Skipped),
            status::ERR => {
                return Ok(Outcome::Failed {
                    errno: head[1] as i32,
                });
            }
            status::FAULT => {
                workers[p] = None;
                let n = (head[4] as usize).min(payload);
                return Ok(Outcome::Killed {
                    death: self.death(&head),
                    digests: self.payload(n).to_vec(),
                });
            }
            _ => return Err(format!("the worker refused the request (status {st})")),
        }
        Ok(match *op {
            Op::Map { .. } | Op::MapAt { .. } | Op::Remap { .. } => {
                Outcome::Mapped { addr: head[1] }
            }
            Op::Read { .. } | Op::PipeRead { .. } => Outcome::Read {
                digests: self.payload((head[4] as usize).min(payload)).to_vec(),
            },
            Op::Fork { child, .. } => {
                let (fd, _) = unborn[child.0 as usize]
                    .take()
                    .ok_or("no socket was made for the child")?;
                workers[child.0 as usize] = Some(Worker {
                    pid: Pid::from_raw(head[1] as i32),
                    fd,
                });
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
                    let fd = w.fd.as_raw_fd();
                    loop {
                        match self.recv(fd)? {
                            Reply::Gone => break,
                            Reply::Msg { .. } => continue,
                            Reply::Hung => {
                                let _ = kill(w.pid, Signal::SIGKILL);
                                break;
                            }
                        }
                    }
                }
                Outcome::Done
            }
            Op::Write { .. }
            | Op::Unmap { .. }
            | Op::Protect { .. }
            | Op::Advise { .. }
            | Op::Invalid { .. }
            | Op::Poke { .. }
            | Op::Vmsplice { .. } => Outcome::Done,
        })
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
            Reply::Gone => workers[p] = None,
            Reply::Hung => {
                if let Some(w) = workers[p].take() {
                    let _ = kill(w.pid, Signal::SIGKILL);
                }
            }
            Reply::Msg {
                st, head, payload, ..
            } => match st {
                status::OK => {
                    let (nr, np) = (head[4] as usize, head[3] as usize);
                    if nr * 3 + np * 2 > payload {
                        return Err("truncated snapshot".into());
                    }
                    let w = self.payload(payload);
                    let regions = (0..nr)
                        .map(|i| region_from_words(w[i * 3], w[i * 3 + 1], w[i * 3 + 2]))
                        .collect();
                    let pages = (0..np)
                        .map(|i| (w[nr * 3 + i * 2], w[nr * 3 + i * 2 + 1]))
                        .collect();
                    return Ok(Some(ProcView {
                        proc: ProcId(p as u8),
                        regions,
                        pages,
                    }));
                }
                status::FAULT => workers[p] = None,
                _ => {
                    return Err(format!(
                        "p{p}'s layout does not fit in a reply ({} words)",
                        REPLY_PAYLOAD
                    ));
                }
            },
        }
        Ok(None)
    }

    /// Reads a page dump; `None` if the page was not readable (the process is then gone).
    fn read_dump(&mut self, d: &DumpRequest, workers: &mut [Option<Worker>]) -> Option<Vec<u8>> {
        let p = d.proc.0 as usize;
        let fd = workers.get(p)?.as_ref()?.fd.as_raw_fd();
        match self.recv(fd).ok()? {
            Reply::Msg {
                st: status::OK,
                payload,
                ..
            } => Some(
                self.payload(payload)
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

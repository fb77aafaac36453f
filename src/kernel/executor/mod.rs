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
//!
//! This file owns the executor's main loop (frames in, frames out) and the fork yardstick;
//! - `guardian`: the process that kills the current tree if the executor dies;
//! - `zygote`: starting the zygote;
//! - `schedule`: a program as steps run by turns (pure);
//! - `coordinator`: running one program's tree and reading what it did.
//!
//! The executor never interprets what it observes (that is the checker's job): it reports.

mod coordinator;
mod guardian;
mod schedule;
mod zygote;

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::malloc_probe::glibc_dynamic_threshold;
use super::probe::probe_features;
use super::protocol::{
    Enc, FrontRequest, Hello, KernelRun, decode_request, read_frame, write_frame,
};
use super::worker::{self, Scratch};
use coordinator::Coordinator;
use guardian::Guardian;

/// How long one op may take by default before its worker counts as hung (an observation: the
/// worker is killed and the op's outcome is `Hung`).
pub const DEFAULT_OP_DEADLINE: Duration = Duration::from_secs(10);

/// A process of the tree (or the zygote), and the coordinator's end of its socket.
struct Worker {
    pid: Pid,
    fd: OwnedFd,
}

/// The executor's main: returns the process exit status. `cpus` (if not empty) is the job's
/// CPU set, where its racing threads run; with `cpu`, the executor and every process it forks
/// (guardian, zygote, program trees) run on that CPU only (`ExecutorConfig::for_job`,
/// `kernel::cpus`); a CPU that cannot be had leaves the affinity as it was.
/// With `physical_off`, no worker reads the physical channel, for that reason; with
/// `smaps_off`, no worker reads smaps (I11: its cost; campaigns ask for it with `--smaps`).
pub fn main(
    inject: u32,
    op_deadline: Duration,
    cpu: Option<usize>,
    cpus: &[usize],
    physical_off: Option<crate::program::physical::Skip>,
    smaps_off: bool,
) -> i32 {
    // SIGKILL us if the cowcheck that started us dies (even by SIGKILL). If it already died
    // before this line, exit now.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if nix::unistd::getppid() == Pid::from_raw(1) {
        return 0;
    }
    let _ = nix::sys::prctl::set_child_subreaper(true);
    super::cpus::place(cpu, cpus);
    let guardian = Guardian::start();
    // The hugetlb pool share, given back when this returns or, if we are killed, by the
    // guardian (docs/SEMANTICS.md L7). Before the probe, which needs a pool.
    // SAFETY: the slot is a word of the guardian's shared page, mapped for our whole life.
    let _pool = unsafe { super::hugetlb_pool::Lease::take(guardian.pool_slot()) };
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
    let mut features = probe_features(page_size as usize);
    let physical = worker::physical::probe(page_size as usize, physical_off, smaps_off);
    let scratch = Scratch::new(page_size as usize);
    // Last before the zygote's fork, from the allocator state every root inherits
    // (docs/SEMANTICS.md M11).
    features.glibc_dynamic_threshold =
        glibc_dynamic_threshold(features.glibc_malloc, page_size as usize);
    enc.hello(&Hello {
        page_size,
        release,
        machine,
        features,
        physical,
    });
    if write_frame(&mut output, &enc.buf).is_err() {
        return 2;
    }
    let slots = scratch.slots_view();
    if !slots.turn.works() {
        eprintln!("cowcheck executor: cannot map its shared slots (mmap MAP_SHARED|MAP_ANONYMOUS)");
        return 2;
    }
    let zygote = match zygote::spawn_zygote(scratch, op_deadline) {
        Ok(z) => z,
        Err(_) => return 2,
    };
    // Only now, so that the zygote and every program keep glibc's defaults (M11).
    keep_heap();
    let mut c = Coordinator::new(guardian, op_deadline, page_size, slots, zygote);
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
        match decode_request(&frame) {
            Ok(FrontRequest::ForkBench { samples }) => {
                // The yardstick runs alone: no tree dying beside it.
                c.reap(true);
                enc.samples(&fork_bench(samples.min(100_000)));
            }
            Ok(FrontRequest::Run { program, dumps }) => enc.run(&c.run(&program, &dumps)),
            Err(e) => enc.run(&KernelRun {
                harness_error: Some(e),
                ..KernelRun::default()
            }),
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

/// Keeps freed memory in the coordinator's heap instead of returning it to the kernel: a
/// program's buffers (its trace, its reply with every snapshot) are allocated and freed once
/// per program, and glibc's defaults (mmap above 128 KiB, trim above 128 KiB) made each
/// program pay for fresh mappings and their page faults (perf record: munmap and page faults
/// in the executor every program). The working set is a few MiB.
///
/// Called after the zygote is forked, never before: setting either value turns glibc's
/// dynamic mmap threshold off for good in this process and every child it forks later, and
/// the programs must start with glibc's defaults (docs/SEMANTICS.md M11). The executor forks
/// no program process itself (the zygote does), and the zygote allocates nothing.
fn keep_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before the coordinator allocates
    // in bulk, from the single thread.
    unsafe {
        libc::mallopt(
            libc::M_MMAP_THRESHOLD,
            crate::program::EXECUTOR_MMAP_THRESHOLD as i32,
        );
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// The bare cost of fork + _exit + waitpid in this process image, `n` times, in nanoseconds:
/// the yardstick `cowcheck bench` holds program times against.
fn fork_bench(n: u32) -> Vec<u64> {
    let mut samples = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        // SAFETY: the executor is single-threaded; the child only calls _exit.
        match unsafe { nix::unistd::fork() } {
            // SAFETY: _exit is always safe to call.
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

/// Sets a worker socket's receive timeout (SO_RCVTIMEO) to the op deadline: a worker that
/// does not answer in time shows as EAGAIN (`Coordinator::recv`).
fn set_deadline(fd: &OwnedFd, deadline: Duration) {
    let tv =
        nix::sys::time::TimeVal::new(deadline.as_secs() as i64, deadline.subsec_micros() as i64);
    let _ = nix::sys::socket::setsockopt(fd, nix::sys::socket::sockopt::ReceiveTimeout, &tv);
}

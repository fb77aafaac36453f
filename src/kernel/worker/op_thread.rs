//! A worker's op threads (docs/SEMANTICS.md T20 to T24): `p0 thread t1` starts a thread through
//! libc's `pthread_create` that waits for ops; `p0 by t1` makes the next op request the thread's:
//! the worker hands the decoded request to the thread through a mailbox, the thread performs it
//! with the worker's own code (`perform`), building the reply where the worker would, and hands
//! back how it went, while the worker waits (the process's other threads do nothing meanwhile).
//! `t1 end` tells the thread to return and joins it.
//!
//! A `fork` run by a thread leaves the child with that thread alone (man fork(2)): there the
//! thread becomes the child's worker, running the worker loop (`serve`) on its own stack, and
//! its region stays taken for good in the child (and in the child's children) while it runs.
//!
//! Nothing here allocates in the worker but a new thread's warm-up, `free(malloc(1))`, which
//! makes the allocator's state for the thread inside the `thread` op, where the worker notes
//! what the allocator maps (as around an allocator op, `alloc.rs`); a fork handed to a thread
//! is watched the same way (an interposed jemalloc maps 2 MiB at a thread's first fork). Each
//! thread's mailbox and stack live in one region mapped (by the system call, out of an
//! interposed libc's reach) when the worker's `Scratch` is made, before the program (snapshots
//! leave it out, as every harness mapping), and `pthread_attr_setstack` hands the stack to libc. The mailbox is
//! a futex word: the worker posts, the thread performs and answers, the worker waits for the
//! answer (looking every second whether the coordinator is still there, as a turn's wait does).
//! A thread op that hangs leaves the worker waiting: the coordinator reports the op `hung`, as
//! for a worker's own op. The thread pins itself to a CPU other than the worker's where there
//! are two or more, so that its munmap, mprotect and fork meet the worker's TLB entries on
//! another CPU (T21, T23).

use std::ffi::c_void;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use super::Scratch;
use super::perform::{Done, perform};
use crate::kernel::protocol::{BadRequest, REPLY_HEAD, Reply, Request};
use crate::program::MAX_OP_THREADS;

/// Bytes of one thread's region: the mailbox's page, then the stack (the worker loop runs on
/// it in a child forked by the thread).
const REGION: usize = 1 << 20;
/// One region more than the threads a process may run: in a child forked by a thread, that
/// thread's region is the worker's stack.
const SLOTS: usize = MAX_OP_THREADS + 1;

/// Mailbox states (the futex word).
const IDLE: u32 = 0;
const POSTED: u32 = 1;
const DONE: u32 = 2;
const END: u32 = 3;
/// Set by the worker before the thread starts; the thread makes it IDLE once it is ready.
const STARTING: u32 = 4;

/// How long the worker waits for its thread between two looks at its coordinator (seconds).
const CHECK_SECONDS: libc::time_t = 1;

/// The job a thread is handed: on the worker's stack while the worker waits for it.
struct Job {
    fd: *mut RawFd,
    scratch: *mut Scratch,
    req: Request,
}

/// What the worker and its thread share, at the start of the region.
#[repr(C)]
struct Mailbox {
    state: AtomicU32,
    /// The CPU to pin to, or -1.
    cpu: i32,
    /// This region's slot.
    slot: usize,
    job: *const Job,
    /// How the job went: `Done` as two words.
    done: [u64; 2],
}

struct Slot {
    region: *mut u8,
    thread: Option<libc::pthread_t>,
    /// The program's thread handle.
    handle: u8,
    /// In a child forked by this slot's thread: the region is the worker's stack.
    taken: bool,
}

/// The process's op threads, and the thread the next op request goes to.
pub(super) struct OpThreads {
    slots: [Slot; SLOTS],
    pending: Option<u8>,
    page_size: usize,
    /// A fork handed to a thread runs inside a watch of the allocator's mappings (`alloc.rs`):
    /// an interposed allocator (jemalloc) maps for a thread at its first fork, in its atfork
    /// handlers; the child ends the watch before its first view (`perform::fork`).
    pub(super) watch_fork: bool,
    /// This process started an op thread, or descends from a fork one made: a racing thread's
    /// start is watched too (jemalloc, preloaded, mapped 2 MiB at a `race` in the child of a
    /// thread's fork).
    touched: bool,
    /// What a fork's child made by a thread runs: the rest of the message, then the worker
    /// loop (`serve::serve_child`).
    worker_loop: fn(RawFd, &mut Scratch) -> !,
}

fn encode(done: &Done) -> [u64; 2] {
    match *done {
        Done::Reply(n) => [0, n as u64],
        Done::Sent => [1, 0],
        Done::Silent => [2, 0],
        Done::Child => [3, 0],
        Done::Exit(turn) => [4, turn as u64],
    }
}

fn decode(words: [u64; 2]) -> Done {
    match words[0] {
        0 => Done::Reply(words[1] as usize),
        1 => Done::Sent,
        2 => Done::Silent,
        3 => Done::Child,
        _ => Done::Exit(words[1] as u32),
    }
}

fn futex_wait(word: &AtomicU32, seen: u32, seconds: libc::time_t) -> bool {
    let timeout = libc::timespec {
        tv_sec: seconds,
        tv_nsec: 0,
    };
    super::futex::wait(word, seen, timeout)
}

fn futex_wake(word: &AtomicU32) {
    super::futex::wake(word, 1);
}

extern "C" fn op_thread_main(arg: *mut c_void) -> *mut c_void {
    let mailbox = arg as *mut Mailbox;
    // SAFETY: the mailbox lives in the region for the process's life; the worker writes `cpu`
    // and `slot` only before the thread starts.
    let (cpu, slot) = unsafe { ((*mailbox).cpu, (*mailbox).slot) };
    crate::kernel::cpus::pin_thread(cpu);
    // SAFETY: as above; the state word is shared with the worker.
    let state = unsafe { &(*mailbox).state };
    // The allocator's state for this thread is made now, inside the `thread` op, where the
    // worker notes what it maps (`alloc.rs`): an interposed allocator (jemalloc) would
    // otherwise map its arena for this thread at the thread's first fork (in its atfork
    // handlers), into the program's layout. This is the allocator's path, on purpose.
    // SAFETY: a malloc and its free.
    unsafe { libc::free(libc::malloc(1)) };
    state.store(IDLE, Ordering::Release);
    futex_wake(state);
    loop {
        let now = state.load(Ordering::Acquire);
        match now {
            END => return std::ptr::null_mut(),
            POSTED => {}
            _ => {
                futex_wait(state, now, CHECK_SECONDS);
                continue;
            }
        }
        // SAFETY: the worker posted a job on its stack and waits until DONE: until then the
        // thread is the only one to touch the worker's fd, Scratch and job.
        let (fd, s, req) = unsafe {
            let job = &*(*mailbox).job;
            (&mut *job.fd, &mut *job.scratch, job.req)
        };
        let done = perform(fd, s, Ok(req));
        if let Done::Child = done {
            // The child of this thread's fork: this thread is the process's only one, and
            // becomes its worker; its region is its stack from now on (T22).
            for (i, sl) in s.op_threads.slots.iter_mut().enumerate() {
                sl.taken = i == slot;
            }
            (s.op_threads.worker_loop)(*fd, s);
        }
        // SAFETY: the mailbox is the region's; the worker reads `done` after DONE.
        unsafe { (*mailbox).done = encode(&done) };
        state.store(DONE, Ordering::Release);
        futex_wake(state);
    }
}

impl OpThreads {
    /// Maps the regions (before any program, in the executor). No thread is started here (a
    /// process that has had a thread stays on glibc's multithreaded paths).
    pub(super) fn new(page_size: usize, worker_loop: fn(RawFd, &mut Scratch) -> !) -> OpThreads {
        // One mapping for every slot (one line of /proc/self/maps for views to skip, one VMA
        // for every fork to copy), made by the system call itself, not libc's wrapper: an
        // interposed libc (a fault shim that makes private mappings shared) must not reach the
        // harness's own memory, or a fork's child would run on its parent's thread's stack.
        // SAFETY: a fresh anonymous private mapping, owned by this OpThreads.
        let all = unsafe {
            libc::syscall(
                libc::SYS_mmap,
                std::ptr::null_mut::<c_void>(),
                REGION * SLOTS,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        } as *mut c_void;
        OpThreads {
            slots: std::array::from_fn(|i| Slot {
                region: if all == libc::MAP_FAILED {
                    std::ptr::null_mut()
                } else {
                    // SAFETY: slot i's region lies inside the mapping.
                    unsafe { (all as *mut u8).add(i * REGION) }
                },
                thread: None,
                handle: 0,
                taken: false,
            }),
            pending: None,
            page_size,
            watch_fork: false,
            touched: false,
            worker_loop,
        }
    }

    fn mailbox(slot: &Slot) -> *mut Mailbox {
        slot.region as *mut Mailbox
    }

    /// Starts op thread `handle`; false if no thread could be started (a harness failure).
    pub(super) fn start(&mut self, handle: u8) -> bool {
        let Some(index) = self
            .slots
            .iter()
            .position(|s| s.thread.is_none() && !s.taken && !s.region.is_null())
        else {
            return false;
        };
        let page_size = self.page_size;
        let slot = &mut self.slots[index];
        let mailbox = Self::mailbox(slot);
        // SAFETY: no thread runs in this slot, so the worker owns the mailbox.
        unsafe {
            (*mailbox).state.store(STARTING, Ordering::Relaxed);
            (*mailbox).cpu = crate::kernel::cpus::beside(0);
            (*mailbox).slot = index;
            (*mailbox).job = std::ptr::null();
        }
        let Some(tid) = super::thread::start_on_region(
            slot.region,
            REGION,
            page_size,
            op_thread_main,
            mailbox as *mut c_void,
            // SAFETY: written above, before the thread exists.
            unsafe { (*mailbox).cpu },
        ) else {
            return false;
        };
        slot.thread = Some(tid);
        slot.handle = handle;
        self.touched = true;
        // SAFETY: the mailbox of the thread just started.
        let state = unsafe { &(*mailbox).state };
        loop {
            let now = state.load(Ordering::Acquire);
            if now != STARTING {
                return true;
            }
            futex_wait(state, now, CHECK_SECONDS);
        }
    }

    /// Tells op thread `handle` to return and joins it; false if it does not run.
    pub(super) fn end(&mut self, handle: u8) -> bool {
        let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.thread.is_some() && s.handle == handle)
        else {
            return false;
        };
        let tid = slot.thread.take().expect("running");
        // SAFETY: the mailbox of a running thread, which waits for a job.
        let state = unsafe { &(*Self::mailbox(slot)).state };
        state.store(END, Ordering::Release);
        futex_wake(state);
        // SAFETY: joining the thread this OpThreads started, once.
        unsafe { libc::pthread_join(tid, std::ptr::null_mut()) };
        true
    }

    /// The next op request goes to op thread `handle`.
    pub(super) fn hand_next(&mut self, handle: u8) {
        self.pending = Some(handle);
    }

    /// The worker's own ops on its threads: `thread`, `by`, `end`. Threads start inside a
    /// watch of the allocator's mappings (`alloc.rs`). A thread that could not
    /// start, or that does not run, is a harness failure (`Refused`), never a finding.
    fn request(s: &mut Scratch, req: Request) -> Reply {
        let ok = match req {
            Request::Thread { thread } => {
                super::alloc::watch(s, true, true);
                let ok = s.op_threads.start(thread);
                super::alloc::watch(s, false, true);
                ok
            }
            Request::By { thread } => {
                s.op_threads.hand_next(thread);
                true
            }
            Request::End { thread } => s.op_threads.end(thread),
            _ => false,
        };
        if ok {
            Reply::Done { value: 0 }
        } else {
            Reply::Refused
        }
    }

    /// In a fork's child: the parent's threads do not exist here (fork copies only the calling
    /// thread).
    pub(super) fn forget(&mut self) {
        for s in &mut self.slots {
            s.thread = None;
        }
        self.pending = None;
    }
}

/// Performs one request: by the op thread a `by` named, if it is an op's, else by the worker.
pub(super) fn perform_routed(
    fd: &mut RawFd,
    s: &mut Scratch,
    req: Result<Request, BadRequest>,
) -> Done {
    if let Ok(r @ (Request::Thread { .. } | Request::By { .. } | Request::End { .. })) = req {
        let here = s.at;
        let reply = OpThreads::request(s, r);
        s.reply[here..here + REPLY_HEAD].copy_from_slice(&reply.encode());
        return Done::Reply(0);
    }
    if s.op_threads.touched && matches!(req, Ok(Request::Race { .. })) {
        super::alloc::watch(s, true, false);
        let done = perform(fd, s, req);
        // A racing layout thread waits while the ranges are read (a remap thread's page at its
        // spare is no new mapping, T13).
        s.racer.hold();
        super::alloc::watch(s, false, false);
        s.racer.release();
        return done;
    }
    let handle = match (&req, s.op_threads.pending) {
        // The turn's and the coordinator's own requests are the worker's.
        (Ok(Request::Await { .. } | Request::Pass { .. } | Request::Snapshot { .. }), Some(_))
        | (Ok(Request::Dump { .. }), Some(_))
        | (_, None) => return perform(fd, s, req),
        (_, Some(handle)) => handle,
    };
    s.op_threads.pending = None;
    let here = s.at;
    let slot = s
        .op_threads
        .slots
        .iter()
        .position(|sl| sl.thread.is_some() && sl.handle == handle);
    let (Ok(req), Some(slot)) = (req, slot) else {
        // No such thread (it did not start): a harness failure, never a finding.
        s.reply[here..here + REPLY_HEAD].copy_from_slice(&Reply::Refused.encode());
        return Done::Reply(0);
    };
    let fork = matches!(req, Request::Fork { .. });
    if fork {
        // A racing layout thread waits until the watch ends: its round would replace a
        // placeholder held over its page's hole, which the watch's end then unmaps with the
        // page (T12, T13; found by `run --time 120 --seed 3`: a remap thread's page gone from
        // both addresses after a fork by an op thread).
        s.racer.hold();
        s.op_threads.watch_fork = true;
        super::alloc::watch(s, true, true);
    }
    let mailbox = OpThreads::mailbox(&s.op_threads.slots[slot]);
    let job = Job {
        fd: fd as *mut RawFd,
        scratch: s as *mut Scratch,
        req,
    };
    // SAFETY: the thread waits for a job; from POSTED to DONE it alone uses the job, the fd
    // and the Scratch (this thread only waits on the state word meanwhile).
    let state = unsafe {
        (*mailbox).job = &job;
        &(*mailbox).state
    };
    state.store(POSTED, Ordering::Release);
    futex_wake(state);
    let coordinator = *fd;
    loop {
        let now = state.load(Ordering::Acquire);
        if now == DONE {
            break;
        }
        if !futex_wait(state, now, CHECK_SECONDS) && super::turn::coordinator_gone(coordinator) {
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(0) };
        }
    }
    state.store(IDLE, Ordering::Relaxed);
    // SAFETY: the thread wrote `done` before DONE.
    let done = decode(unsafe { (*mailbox).done });
    if fork {
        super::alloc::watch(s, false, true);
        s.op_threads.watch_fork = false;
        s.racer.release();
    }
    done
}

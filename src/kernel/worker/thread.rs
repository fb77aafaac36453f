//! A worker's racing thread (docs/SEMANTICS.md T1): started through libc's `pthread_create`
//! (so an interposed libc stays in the path), it stores 1, 2, 3, ... into the last 8 bytes of
//! one page, publishing each value after its store, until the worker stops it. One per process.
//!
//! Nothing here allocates in the worker: the thread's stack and its control block live in one
//! region mapped when the worker's `Scratch` is made, before the program (so snapshots leave it
//! out, as they leave out every harness mapping), and `pthread_attr_setstack` hands it to libc,
//! which then maps no stack of its own (what libc allocates for the thread's TLS comes from its
//! heap, which snapshots leave out too). The thread pins itself to a CPU other than the worker's when there are two or
//! more, so that the race runs truly in parallel. The thread only stores and checks its stop
//! word: it makes no call that could take a lock a fork's child would inherit held.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bytes of the region: the control block's page, then the stack.
const REGION: usize = 256 * 1024;

/// Yields before a worker waiting for its thread's first store sleeps between looks instead.
const START_SPINS: u32 = 64;

/// What the worker and its thread share, at the start of the region.
#[repr(C)]
struct Control {
    /// Set by the worker: stop after the current round.
    stop: AtomicU32,
    /// The CPU to pin to, or -1.
    cpu: i32,
    /// The last value stored (and so at least what the page holds).
    counter: AtomicU64,
    /// The word stored to.
    addr: u64,
}

/// The process's racing thread, if it runs.
pub(super) struct Racer {
    region: *mut u8,
    page_size: usize,
    thread: Option<libc::pthread_t>,
}

extern "C" fn racer_main(arg: *mut c_void) -> *mut c_void {
    let control = arg as *const Control;
    // SAFETY: the control block lives in the region for the process's life, and the worker
    // does not write `cpu` or `addr` while the thread runs.
    let (cpu, addr) = unsafe { ((*control).cpu, (*control).addr as *mut u64) };
    if cpu >= 0 {
        // SAFETY: a cpu_set_t on our stack, for this thread only.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
    // SAFETY: as above; the atomics are shared with the worker.
    let (stop, counter) = unsafe { (&(*control).stop, &(*control).counter) };
    let mut n: u64 = 0;
    loop {
        n += 1;
        // SAFETY: a store to the program's page that the race names (the validator keeps every
        // other op off it while the thread runs); a fault here is the process's death, as a
        // worker's own store's would be.
        unsafe { std::ptr::write_volatile(addr, n) };
        counter.store(n, Ordering::Release);
        if stop.load(Ordering::Acquire) != 0 {
            return std::ptr::null_mut();
        }
    }
}

impl Racer {
    /// Maps the region (before any program, in the executor). No thread is started here: once
    /// a process has had a thread, glibc takes its multithreaded paths for good (atomic
    /// operations, locks), which would slow every single-threaded program down.
    pub(super) fn new(page_size: usize) -> Racer {
        // SAFETY: a fresh anonymous private mapping, owned by this Racer.
        let region = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                REGION,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let region = if region == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            region as *mut u8
        };
        Racer {
            region,
            page_size,
            thread: None,
        }
    }

    fn control(&self) -> &Control {
        // SAFETY: the region's first bytes are the control block (zeroed by mmap, valid for
        // every field), for the process's life.
        unsafe { &*(self.region as *const Control) }
    }

    /// Whether a thread runs.
    pub(super) fn running(&self) -> bool {
        self.thread.is_some()
    }

    /// The counter the thread published last.
    pub(super) fn counter(&self) -> u64 {
        self.control().counter.load(Ordering::Acquire)
    }

    /// Starts the thread on the word at `addr` and waits until it has stored once (the
    /// barrier: the next op runs against a thread that is racing). If that store faults, the
    /// process dies there (the fault handler reports it for the op). False if no thread could
    /// be started.
    pub(super) fn start(&mut self, addr: u64) -> bool {
        if self.region.is_null() || self.thread.is_some() {
            return false;
        }
        let control = self.region as *mut Control;
        // SAFETY: no thread runs, so the worker owns the control block.
        unsafe {
            (*control).stop.store(0, Ordering::Relaxed);
            (*control).counter.store(0, Ordering::Relaxed);
            (*control).addr = addr;
            (*control).cpu = other_cpu();
        }
        let mut tid: libc::pthread_t = 0;
        // SAFETY: attr lives on our stack; the stack handed to libc is the region past the
        // control page, used by no one else while the thread runs.
        let ok = unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            libc::pthread_attr_init(&mut attr);
            let stack = self.region.add(self.page_size);
            libc::pthread_attr_setstack(&mut attr, stack as *mut c_void, REGION - self.page_size);
            let r = libc::pthread_create(&mut tid, &attr, racer_main, control as *mut c_void);
            libc::pthread_attr_destroy(&mut attr);
            r == 0
        };
        if !ok {
            return false;
        }
        self.thread = Some(tid);
        // The thread first has to be given the other CPU, which takes milliseconds when that
        // CPU is busy (measured: ~2400 yields a start under load). A short spin catches a
        // quick start; after it, the worker sleeps between looks, leaving its CPU to others
        // (another job's tree, the front) instead of yielding in a loop.
        let mut spins = 0u32;
        while self.counter() == 0 {
            if spins < START_SPINS {
                spins += 1;
                std::hint::spin_loop();
                // SAFETY: sched_yield only yields.
                unsafe { libc::sched_yield() };
            } else {
                let pause = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 20_000,
                };
                // SAFETY: nanosleep reads `pause` and writes nothing (no remainder asked).
                unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
            }
        }
        true
    }

    /// Stops and joins the thread; its rounds (0 if none ran).
    pub(super) fn stop(&mut self) -> u64 {
        let Some(tid) = self.thread.take() else {
            return 0;
        };
        self.control().stop.store(1, Ordering::Release);
        // SAFETY: joining the thread this Racer started, once.
        unsafe { libc::pthread_join(tid, std::ptr::null_mut()) };
        self.counter()
    }

    /// In a fork's child: the thread does not exist here (fork copies only the calling
    /// thread).
    pub(super) fn forget(&mut self) {
        self.thread = None;
    }
}

/// A CPU other than the one this thread runs on, if there are two or more; else -1.
fn other_cpu() -> i32 {
    // SAFETY: sysconf and sched_getcpu only read.
    let (n, me) = unsafe {
        (
            libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
            libc::sched_getcpu(),
        )
    };
    if n >= 2 && me >= 0 {
        ((me as i64 + 1) % n) as i32
    } else {
        -1
    }
}

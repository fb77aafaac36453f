//! A worker's racing threads (docs/SEMANTICS.md T1, T7, T8): started through libc's
//! `pthread_create` (so an interposed libc stays in the path), a thread runs rounds 1, 2, 3,
//! ... until the worker stops it, publishing each round's number after it: a `write` thread
//! stores the number into the last 8 bytes of one page, a `poke` thread writes it there through
//! `/proc/self/mem` (`pwrite`, a forced write), a `dontneed` thread `madvise(MADV_DONTNEED)`s
//! the page; `read`, `protect`, `unmap`, `remap` and `vmsplice` threads (T10-T14) run the
//! rounds of
//! `race_kinds.rs`, and a view holds the layout-changing ones between two rounds. Each round
//! reads the stop word first, so the last round starts after the worker
//! asked to stop (after every op before the `stop`). Up to two threads per process (a pair:
//! Dirty COW's, T9), and the second one's `race` returns only once the first has run a whole
//! round after the second's first; a thread whose first round fails ends there and the `race` reports the
//! errno.
//!
//! Nothing here allocates in the worker: the thread's stack and its control block live in one
//! region mapped when the worker's `Scratch` is made, before the program (so snapshots leave it
//! out, as they leave out every harness mapping), and `pthread_attr_setstack` hands it to libc,
//! which then maps no stack of its own (what libc allocates for the thread's TLS comes from its
//! heap, which snapshots leave out too). The first thread pins itself to a CPU other than the
//! worker's when there are two or more, the second to the worker's own (which mostly waits), so that the race runs truly in parallel. The thread only stores and checks its stop
//! word: it makes no call that could take a lock a fork's child would inherit held.

use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use crate::program::RaceKind;

/// Bytes of one thread's region: the control block's page, then the stack.
const REGION: usize = 256 * 1024;

/// The most threads racing at once in a process (`program::op::thread::MAX_RACING`).
const SLOTS: usize = 2;

/// What the worker and its thread share, at the start of the region.
#[repr(C)]
struct Control {
    /// Set by the worker: the next round is the last.
    stop: AtomicU32,
    /// The CPU to pin to, or -1.
    cpu: i32,
    /// The last round done (for a store, at least what the page holds).
    counter: AtomicU64,
    /// The word stored to, or the page advised.
    addr: u64,
    /// `RaceKind::code()`.
    kind: u64,
    page_size: u64,
    /// Set by the thread when it ended by itself: the errno of the round that failed.
    failed: AtomicI32,
    /// What a `read` thread saw (`race_kinds`).
    seen: super::race_kinds::Seen,
    /// A thread that changes the layout waits between rounds while the worker views itself
    /// (`race_kinds::Hold`).
    hold: super::race_kinds::Hold,
    /// A `vmsplice` thread's own pipe (T14), made by the worker before it starts the thread and
    /// closed by the worker after the join (and by a fork's child, which has no thread); else
    /// -1.
    pipe: [i32; 2],
}

/// One thread's region and, while it runs, its handle.
struct Slot {
    region: *mut u8,
    thread: Option<libc::pthread_t>,
    /// The program's thread handle.
    handle: u8,
    stores: bool,
}

/// The process's racing threads.
pub(super) struct Racer {
    slots: [Slot; SLOTS],
    page_size: usize,
}

/// One round: `Err(errno)` if it failed.
fn round(c: &Control, kind: RaceKind, n: u64, mem: i32, last: bool) -> Result<(), i32> {
    let (addr, page_size) = (c.addr, c.page_size as usize);
    match kind {
        RaceKind::Read => {
            super::race_kinds::read(&c.seen, addr, n);
            Ok(())
        }
        RaceKind::Protect => super::race_kinds::protect(addr, page_size, n, last),
        RaceKind::Unmap => super::race_kinds::unmap(addr, page_size, n, last),
        RaceKind::Remap => super::race_kinds::remap(addr, page_size, n, last),
        RaceKind::Vmsplice => super::race_kinds::vmsplice(&c.seen, addr, page_size, n, c.pipe),
        RaceKind::Free | RaceKind::PageOut => super::race_advice::advise(kind, addr, page_size),
        RaceKind::Fault => super::race_advice::fault(addr, page_size, n, last),
        RaceKind::Write => {
            // SAFETY: a store to the program's page that the race names (the validator keeps
            // every other op off its word while the thread runs); a fault here is the
            // process's death, as a worker's own store's would be.
            unsafe { std::ptr::write_volatile(addr as *mut u64, n) };
            Ok(())
        }
        RaceKind::Poke => {
            let bytes = n.to_le_bytes();
            // SAFETY: writing our own 8 bytes through /proc/self/mem; the kernel checks the
            // target.
            let r = unsafe { libc::pwrite(mem, bytes.as_ptr() as *const c_void, 8, addr as i64) };
            if r == 8 {
                Ok(())
            } else {
                Err(if r < 0 { errno() } else { libc::EIO })
            }
        }
        RaceKind::DontNeed => {
            // SAFETY: advice on the program's page; the kernel checks the range.
            let r = unsafe { libc::madvise(addr as *mut c_void, page_size, libc::MADV_DONTNEED) };
            if r == 0 { Ok(()) } else { Err(errno()) }
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

extern "C" fn racer_main(arg: *mut c_void) -> *mut c_void {
    let control = arg as *const Control;
    // SAFETY: the control block lives in the region for the process's life, and the worker
    // does not write `cpu`, `addr`, `kind` or `page_size` while the thread runs.
    let (cpu, kind) = unsafe { ((*control).cpu, (*control).kind) };
    let kind = RaceKind::from_code(kind).unwrap_or(RaceKind::Write);
    crate::kernel::cpus::pin_thread(cpu);
    // SAFETY: as above; the atomics are shared with the worker.
    let (stop, counter, failed) =
        unsafe { (&(*control).stop, &(*control).counter, &(*control).failed) };
    let mem = if kind == RaceKind::Poke {
        // SAFETY: a NUL-terminated path; the fd is closed before the thread ends.
        let fd = unsafe { libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            failed.store(errno(), Ordering::Release);
            return std::ptr::null_mut();
        }
        fd
    } else {
        -1
    };
    let mut n: u64 = 0;
    loop {
        // A remap thread waits only with its page at home (after an even round): a view, or a
        // watch of the allocator's ranges, must not take the page at the spare for a new
        // mapping (T13).
        if kind != RaceKind::Remap || n.is_multiple_of(2) {
            // SAFETY: as above.
            unsafe { &(*control).hold }.wait_if_held();
        }
        let last = stop.load(Ordering::Acquire) != 0;
        n += 1;
        // SAFETY: as above.
        if let Err(e) = round(unsafe { &*control }, kind, n, mem, last) {
            failed.store(e, Ordering::Release);
            break;
        }
        counter.store(n, Ordering::Release);
        if last {
            break;
        }
    }
    if mem >= 0 {
        // SAFETY: closing the fd opened above.
        unsafe { libc::close(mem) };
    }
    std::ptr::null_mut()
}

impl Racer {
    /// Maps the regions (before any program, in the executor). No thread is started here:
    /// once a process has had a thread, glibc takes its multithreaded paths for good (atomic
    /// operations, locks), which would slow every single-threaded program down.
    pub(super) fn new(page_size: usize) -> Racer {
        let slot = || {
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
            Slot {
                region: if region == libc::MAP_FAILED {
                    std::ptr::null_mut()
                } else {
                    region as *mut u8
                },
                thread: None,
                handle: 0,
                stores: false,
            }
        };
        Racer {
            slots: [slot(), slot()],
            page_size,
        }
    }

    fn control(slot: &Slot) -> &Control {
        // SAFETY: the region's first bytes are the control block (zeroed by mmap, valid for
        // every field), for the process's life.
        unsafe { &*(slot.region as *const Control) }
    }

    /// The pages running layout threads work on (`(start, end)`, page-aligned; unused entries
    /// `(0, 0)`): program memory whatever the thread's last round left there. A watch of the
    /// allocator's mappings leaves them out (T12: an `unmap` thread maps its page back into
    /// what was a hole when the watch began).
    pub(super) fn layout_pages(&self) -> [(u64, u64); SLOTS] {
        let mut out = [(0, 0); SLOTS];
        for (o, s) in out.iter_mut().zip(&self.slots) {
            if s.thread.is_none() {
                continue;
            }
            let c = Self::control(s);
            if let Some(kind) = RaceKind::from_code(c.kind).filter(|k| k.changes_layout()) {
                let ps = self.page_size as u64;
                let start = c.addr & !(ps - 1);
                *o = (start, start + kind.pages() as u64 * ps);
            }
        }
        out.sort_unstable();
        out
    }

    /// Whether a thread runs.
    pub(super) fn running(&self) -> bool {
        self.slots.iter().any(|s| s.thread.is_some())
    }

    /// The counter a running thread published last: the storing one's, else the first's.
    pub(super) fn counter(&self) -> u64 {
        let running = || self.slots.iter().filter(|s| s.thread.is_some());
        running()
            .find(|s| s.stores)
            .or_else(|| running().next())
            .map_or(0, |s| Self::control(s).counter.load(Ordering::Acquire))
    }

    /// Starts thread `handle` doing `kind` on `addr` (the word for a store, the page for
    /// advice) and waits until its first round is done (the barrier: the next op runs against
    /// a thread that is racing). If a store faults, the process dies there (the fault handler
    /// reports it for the op). `Err(errno)` if the first round failed (the thread has ended),
    /// or EAGAIN if no thread could be started.
    pub(super) fn start(&mut self, addr: u64, kind: RaceKind, handle: u8) -> Result<(), i32> {
        let index = self
            .slots
            .iter()
            .position(|s| s.thread.is_none() && !s.region.is_null())
            .ok_or(libc::EAGAIN)?;
        let page_size = self.page_size;
        let slot = &mut self.slots[index];
        let control = slot.region as *mut Control;
        // SAFETY: no thread runs in this slot, so the worker owns the control block.
        unsafe {
            (*control).stop.store(0, Ordering::Relaxed);
            (*control).counter.store(0, Ordering::Relaxed);
            (*control).failed.store(0, Ordering::Relaxed);
            (*control).seen.reset();
            (*control).hold.release(&(*control).failed);
            (*control).addr = addr;
            (*control).kind = kind.code();
            (*control).page_size = page_size as u64;
            (*control).cpu = crate::kernel::cpus::beside(index);
            (*control).pipe = [-1; 2];
        }
        if kind == RaceKind::Vmsplice {
            let mut fds = [-1; 2];
            // SAFETY: pipe2 fills the two fds (non-blocking: a round reads only what it
            // spliced); `close_pipe` closes them.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
                return Err(errno());
            }
            // SAFETY: no thread runs in this slot yet.
            unsafe { (*control).pipe = fds };
        }
        let Some(tid) = start_on_region(
            slot.region,
            REGION,
            page_size,
            racer_main,
            control as *mut c_void,
            // SAFETY: written above, before the thread exists.
            unsafe { (*control).cpu },
        ) else {
            return Err(libc::EAGAIN);
        };
        // The thread first has to be given the other CPU, which takes milliseconds when that
        // CPU is busy (measured: ~2400 yields a start under load). A short spin catches a
        // quick start; after it, the worker sleeps between looks, leaving its CPU to others
        // (another job's tree, the front) instead of yielding in a loop.
        let c = Self::control(slot);
        let mut looks = 0u32;
        loop {
            if c.counter.load(Ordering::Acquire) != 0 {
                break;
            }
            let e = c.failed.load(Ordering::Acquire);
            if e != 0 {
                // SAFETY: joining the thread just started, which has ended.
                unsafe { libc::pthread_join(tid, std::ptr::null_mut()) };
                Self::close_pipe(slot);
                return Err(e);
            }
            super::futex::back_off(&mut looks);
        }
        slot.thread = Some(tid);
        slot.handle = handle;
        slot.stores = kind.stores();
        // The pair's barrier: every other thread of the process runs a whole round that
        // started after this one's first, so the two surely overlap before the next op.
        for (i, other) in self.slots.iter().enumerate() {
            if i == index || other.thread.is_none() {
                continue;
            }
            let c = Self::control(other);
            let seen = c.counter.load(Ordering::Acquire);
            while c.counter.load(Ordering::Acquire) < seen + 2
                && c.failed.load(Ordering::Acquire) == 0
            {
                std::hint::spin_loop();
                // SAFETY: sched_yield only yields.
                unsafe { libc::sched_yield() };
            }
        }
        Ok(())
    }

    /// Stops and joins thread `handle`; its rounds (0 if it does not run) and, for a `read`
    /// thread, what it saw (T10).
    pub(super) fn stop(&mut self, handle: u8) -> (u64, Option<[u64; 3]>) {
        let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.thread.is_some() && s.handle == handle)
        else {
            return (0, None);
        };
        let tid = slot.thread.take().expect("running");
        Self::control(slot).stop.store(1, Ordering::Release);
        // SAFETY: joining the thread this Racer started, once.
        unsafe { libc::pthread_join(tid, std::ptr::null_mut()) };
        Self::close_pipe(slot);
        let c = Self::control(slot);
        let seen = RaceKind::from_code(c.kind)
            .is_some_and(RaceKind::watches)
            .then(|| c.seen.report());
        (c.counter.load(Ordering::Acquire), seen)
    }

    /// Closes a `vmsplice` thread's pipe, once its thread is joined or does not exist (T14).
    fn close_pipe(slot: &Slot) {
        let control = slot.region as *mut Control;
        // SAFETY: no thread runs in this slot, so the worker owns the control block.
        unsafe {
            for fd in (*control).pipe {
                if fd >= 0 {
                    libc::close(fd);
                }
            }
            (*control).pipe = [-1; 2];
        }
    }

    /// Holds every running thread that changes the layout between two rounds (T11), for a view
    /// of the layout: /proc/self/maps is not read atomically, and a layout changing while it is
    /// read showed as none. `release` lets them go on.
    pub(super) fn hold(&self) {
        for s in self.slots.iter().filter(|s| s.thread.is_some()) {
            let c = Self::control(s);
            if RaceKind::from_code(c.kind).is_some_and(RaceKind::changes_layout) {
                c.hold.hold(&c.failed);
            }
        }
    }

    /// Lets the threads `hold` held go on.
    pub(super) fn release(&self) {
        for s in self.slots.iter().filter(|s| s.thread.is_some()) {
            let c = Self::control(s);
            c.hold.release(&c.failed);
        }
    }

    /// In a fork's child: the threads do not exist here (fork copies only the calling
    /// thread).
    pub(super) fn forget(&mut self) {
        for s in &mut self.slots {
            // The pipe of a vmsplice thread of the parent: the child does not hold its page
            // (T14).
            if s.thread.take().is_some() {
                Self::close_pipe(s);
                Self::control(s).hold.forget();
            }
        }
    }
}

/// Starts a thread through libc's `pthread_create` on a region made before the program: its
/// first page is the thread's control page, the rest (`len` bytes in all) its stack, so libc
/// maps no stack of its own. `None` if libc refused. Racing threads and op threads
/// (`op_thread.rs`) both start this way.
pub(super) fn start_on_region(
    region: *mut u8,
    len: usize,
    page_size: usize,
    main: extern "C" fn(*mut c_void) -> *mut c_void,
    arg: *mut c_void,
    cpu: i32,
) -> Option<libc::pthread_t> {
    let mut tid: libc::pthread_t = 0;
    // SAFETY: attr lives on our stack; the stack handed to libc is the region past its first
    // page, which the caller owns and no one else uses while the thread runs.
    let ok = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        let stack = region.add(page_size);
        libc::pthread_attr_setstack(&mut attr, stack as *mut c_void, len - page_size);
        // Born on its CPU: glibc sets the new thread's mask before it first runs, so it is
        // woken there, where a thread that pins itself once running is moved by the
        // stopper of the CPU it started on (`affine_move_task`), a wait the worker pays
        // (docs/KERNELS.md, "Jobs and cores"). The thread's own pinning then changes nothing.
        #[cfg(target_env = "gnu")]
        if cpu >= 0 {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut set);
            libc::pthread_attr_setaffinity_np(
                &mut attr,
                std::mem::size_of::<libc::cpu_set_t>(),
                &set,
            );
        }
        #[cfg(not(target_env = "gnu"))]
        let _ = cpu;
        let r = libc::pthread_create(&mut tid, &attr, main, arg);
        libc::pthread_attr_destroy(&mut attr);
        r == 0
    };
    ok.then_some(tid)
}

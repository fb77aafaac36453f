//! The worker: every process of a program's tree runs this loop. It takes messages of requests
//! from its socket, performs each on its own memory through libc's wrappers (via `nix` where
//! nix does not allocate, `libc` directly where it would), and replies; it waits for its turn
//! before a step and passes the turn after it (`Turn`), so that the steps of a program run in
//! program order across processes without a round trip through the coordinator.
//!
//! Rules this module keeps:
//! - nothing is allocated after fork: every buffer lives in `Scratch` (or in this process's
//!   slot of the shared `ProcSlots`), made by the executor before it forks the zygote;
//! - every observation is made from inside: the worker's own loads and stores, its own
//!   /proc/self/maps; nothing peeks from outside, so the same worker runs under an emulator;
//! - a fatal SIGSEGV or SIGBUS is reported by the worker itself (signal, si_code, address, and
//!   the read digests made so far) and then delivered for real: the process dies by the signal;
//! - all `unsafe` of the project's memory accesses lives here, each block with its SAFETY line.

use std::ffi::c_void;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use super::maps;
use super::protocol::{
    REPLY_HEAD, REPLY_PAYLOAD, REQ_CREATES, REQ_RELOC, REQ_WORDS, region_flags, status, verb,
};
use crate::program::outcome::UNREADABLE;
use crate::program::outcome::{Region, digest};

/// Faults the executor can be told to commit, so that tests can show the checker catching a
/// broken kernel side. Never set in normal runs.
pub mod inject {
    /// Writes by any process but the root store nothing.
    pub const DROP_CHILD_WRITE: u32 = 1;
    /// `private` and `private-zero` maps are made `MAP_SHARED`.
    pub const PRIVATE_AS_SHARED: u32 = 2;
    /// `pipe-read` never returns (the worker hangs inside the op, as an emulator can).
    pub const HANG_PIPE_READ: u32 = 4;
}

/// Buffers made before fork, used by every worker of a program.
pub struct Scratch {
    /// Where replies are built: this process's slot's reply area (`ProcSlots`). Replies to
    /// the requests of one message are appended one after another (`at`) and sent as one
    /// message.
    reply: SlotWords,
    /// Where requests are received: this process's slot's request area.
    requests: SlotWords,
    /// Words of replies built and not sent yet, and how many replies.
    at: usize,
    unsent: usize,
    /// This process's slot's progress block (see `PROGRESS_WORDS`).
    progress: SlotWords,
    /// A socket passed along with the last message (the next FORK's child's), or -1.
    passed_fd: RawFd,
    maps: maps::SelfMaps,
    /// Address ranges that existed before the program's first op (the harness's own
    /// mappings), which snapshots leave out.
    baseline: Box<[(u64, u64)]>,
    baseline_len: usize,
    /// This process's slot: requests, replies, and where snapshots copy pages to digest them
    /// (`process_vm_readv` on itself).
    copy: ProcSlots,
    page_size: usize,
    is_root: bool,
    /// Snapshots may digest pages by plain loads (set per program by the coordinator, in every
    /// SNAPSHOT and FORK request): no op of the program can make a page that /proc/self/maps
    /// lists as readable fault on a load (no guard install, no mremap that could map a shared
    /// object past its end). Otherwise pages are copied with
    /// `process_vm_readv`, which turns such a page into EFAULT instead of a fatal signal.
    direct_reads: bool,
    /// The program's pipe (read end, write end), made by the root and inherited by all.
    pipe: [i32; 2],
}

impl Scratch {
    /// The coordinator's window on the slots.
    pub fn slots_view(&self) -> SlotsView {
        self.copy.view()
    }

    /// Notes how many replies are built and unsent, where the coordinator can see it.
    fn set_unsent(&mut self, n: usize) {
        self.unsent = n;
        // SAFETY: a word of this process's own slot.
        unsafe { std::ptr::write_volatile(self.progress.ptr, n as u64) };
    }

    /// Takes the slot of process handle `slot` for requests, replies and copies.
    fn take_slot(&mut self, slot: usize) {
        self.copy.take_slot(slot);
        self.reply = self.copy.reply();
        self.requests = self.copy.requests();
        self.progress = self.copy.progress();
        FAULT_REPLY.store(self.reply.ptr, Ordering::Relaxed);
    }

    pub fn new(page_size: usize) -> Scratch {
        let copy = ProcSlots::new(page_size);
        Scratch {
            reply: copy.reply(),
            requests: copy.requests(),
            progress: copy.progress(),
            passed_fd: -1,
            at: 0,
            unsent: 0,
            maps: maps::SelfMaps::new(),
            baseline: vec![(0, 0); 4096].into_boxed_slice(),
            baseline_len: 0,
            copy,
            page_size,
            is_root: true,
            direct_reads: false,
            pipe: [-1, -1],
        }
    }
}

/// The per-process buffers of every process of a tree: one slot per process handle (and one
/// for the zygote), in one shared anonymous mapping made by the executor before the zygote.
/// A slot holds the process's request area, its reply area and its page copy buffer.
/// Shared, because a private buffer is copy-on-write after every fork in both processes, and
/// every process writes these first thing: a private copy buffer was a quarter of all page
/// faults of a bench run (perf record -e page-faults: 43 of ~190 per program, in
/// _copy_to_iter), and the private reply and request buffers cost ~2 more per process per
/// fork. A process only ever writes its own slot, and processes of different programs never
/// use a slot at once: a finished tree is killed before the next program starts, the spare
/// root (slot 0) receives and replies only once its program has started, and the zygote has a
/// slot of its own. A page after the slots is the tree's board (`Turn`, `Board`). The mapping
/// is made with the mmap system call itself, out of an interposed libc's reach; where even that
/// fails, the executor refuses to start (the turns need shared memory).
struct ProcSlots {
    base: *mut u8,
    slot_len: usize,
    slots: usize,
    slot: usize,
    copy_len: usize,
    /// The turn word (`Turn`), on a page after the slots; null without shared memory.
    turn: *const AtomicU32,
}

/// Requests one message may carry.
pub const MAX_BATCH: usize = 64;
/// Words of a slot's request area.
const REQUEST_AREA: usize = MAX_BATCH * REQ_WORDS;
/// Words of a slot's progress block, after the request area: word 0 is how many replies the
/// reply area holds that are built and not sent yet (so that the coordinator can still read
/// them from a worker it killed as hung, and name the op that hung; `SlotsView`).
const PROGRESS_WORDS: usize = 8;
/// Words of a slot's reply area.
pub const REPLY_AREA: usize = REPLY_HEAD + REPLY_PAYLOAD;
/// The zygote's slot, after the process handles' slots.
const ZYGOTE_SLOT: usize = crate::program::caps::MAX_PROCS;

/// The coordinator's window on the slots (the mapping is shared with every worker): after it
/// killed a worker as hung, the replies that worker had built but not sent.
#[derive(Clone, Copy)]
pub struct SlotsView {
    base: *mut u8,
    slot_len: usize,
    slots: usize,
    pub turn: Turn,
}

/// The turn word of a tree, shared by the coordinator and every worker: a counter that only
/// grows. It lets the coordinator send a batch to its worker before the batch before it has
/// run: the worker waits (AWAIT t) until the turn reaches t, and the worker of the batch
/// before passes it (PASS t) when done, so that the next batch starts on one wakeup instead
/// of two (worker to coordinator to worker). Passing is idempotent (the turn becomes the
/// larger of the two), so a dead or hung worker's pass can be made by the fault handler or the
/// coordinator without ever running a batch twice. Values are unique for the executor's life.
#[derive(Clone, Copy)]
pub struct Turn(*const AtomicU32);

impl Turn {
    /// Whether turns work here (the slots are shared memory).
    pub fn works(&self) -> bool {
        !self.0.is_null()
    }

    fn reached(now: u32, t: u32) -> bool {
        now.wrapping_sub(t) as i32 >= 0
    }

    /// Makes the turn at least `t` and wakes every waiter. Async-signal-safe.
    pub fn pass(&self, t: u32) {
        if self.0.is_null() || t == 0 {
            return;
        }
        // SAFETY: the turn word lives in the shared mapping for the process's life.
        let word = unsafe { &*self.0 };
        let mut now = word.load(Ordering::Acquire);
        loop {
            if Self::reached(now, t) {
                // Passed already (by the worker itself, its fault handler or the coordinator),
                // and its waiters woken then.
                return;
            }
            match word.compare_exchange_weak(now, t, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(seen) => now = seen,
            }
        }
        // Wake only those waiting for this turn (each waits on its turn's bit), unless the
        // turn jumped over others, whose waiters are then satisfied too.
        let bits = if t.wrapping_sub(now) == 1 {
            Self::bit(t)
        } else {
            u32::MAX
        };
        // SAFETY: FUTEX_WAKE_BITSET on a word of shared memory; wakes at most i32::MAX
        // waiters whose bitset meets `bits`.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.0,
                libc::FUTEX_WAKE_BITSET,
                i32::MAX,
                std::ptr::null::<libc::timespec>(),
                0,
                bits,
            );
        }
    }

    /// The futex bit a waiter for turn `t` waits on: one of 32, so that passing a turn wakes
    /// only the processes waiting for it (every pass woke every waiting worker before).
    fn bit(t: u32) -> u32 {
        1 << (t % 32)
    }

    /// Waits until the turn is at least `t`.
    fn wait(&self, t: u32) {
        if self.0.is_null() {
            return;
        }
        // SAFETY: as in `pass`.
        let word = unsafe { &*self.0 };
        loop {
            let now = word.load(Ordering::Acquire);
            if Self::reached(now, t) {
                return;
            }
            // SAFETY: FUTEX_WAIT_BITSET on a word of shared memory, while it still holds
            // `now`, with no timeout.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.0,
                    libc::FUTEX_WAIT_BITSET,
                    now,
                    std::ptr::null::<libc::timespec>(),
                    0,
                    Self::bit(t),
                );
            }
        }
    }
}

/// Byte offsets in the board page (after the slots): the turn word, then per process handle
/// the serial of the last snapshot it looked at itself for (`barrier`), then per mapping
/// handle its address in this program (0: none).
const BOARD_VIEWED: usize = 64;
const BOARD_BASES: usize = 256;

/// The board of a tree: turn, views taken, mapping addresses (see the offsets above).
#[derive(Clone, Copy)]
pub struct Board(*mut u8);

impl Board {
    fn viewed(&self, proc: usize) -> &AtomicU32 {
        // SAFETY: proc < MAX_PROCS, so the word lies on the board page, which lives for the
        // process's life; u32 atomics at 4-byte aligned offsets.
        unsafe { &*(self.0.add(BOARD_VIEWED + 4 * proc) as *const AtomicU32) }
    }

    fn base(&self, map: usize) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: map < MAX_MAPS, so the word lies on the board page (8-byte aligned).
        unsafe { &*(self.0.add(BOARD_BASES + 8 * map) as *const std::sync::atomic::AtomicU64) }
    }

    /// Forgets the previous program's mapping addresses (before a program's first request).
    pub fn clear_bases(&self) {
        for m in 0..crate::program::caps::MAX_MAPS {
            self.base(m).store(0, Ordering::Release);
        }
    }

    /// After this process (handle `me`) sent its view for the snapshot with this serial:
    /// notes it, and if every process in `mask` has, passes the turn `next` (the snapshot
    /// is complete: the next batch may run). Every viewer checks after noting itself, so the
    /// last one passes (perhaps more than one: passing is idempotent). A viewer that died
    /// never notes itself; the coordinator passes once it has read every view.
    fn barrier(&self, turn: Turn, me: usize, serial: u32, mask: u32, next: u32) {
        if serial == 0 {
            return;
        }
        self.viewed(me).store(serial, Ordering::SeqCst);
        let all = (0..32)
            .filter(|q| mask & (1 << q) != 0)
            .all(|q| self.viewed(q).load(Ordering::SeqCst) == serial);
        if all && next != 0 {
            turn.pass(next);
        }
    }
}

impl SlotsView {
    pub fn board(&self) -> Board {
        Board(self.turn.0 as *mut u8)
    }

    /// The replies that the worker of process handle `proc` had built and not sent, as the
    /// words of one message. Only meaningful once that worker runs no more (killed).
    pub fn unsent(&self, proc: usize) -> Vec<u64> {
        if self.slots <= proc {
            return Vec::new();
        }
        // SAFETY: slot `proc` lies inside the mapping; its progress block and reply area are
        // read with volatile loads, as another process wrote them (it has stopped).
        unsafe {
            let slot = self.base.add(proc * self.slot_len) as *const u64;
            let n = std::ptr::read_volatile(slot.add(REQUEST_AREA)) as usize;
            let area = slot.add(REQUEST_AREA + PROGRESS_WORDS);
            let mut at = 0usize;
            for _ in 0..n {
                if at + REPLY_HEAD > REPLY_AREA {
                    break;
                }
                let payload = std::ptr::read_volatile(area.add(at + 5)) as usize;
                if at + REPLY_HEAD + payload > REPLY_AREA {
                    break;
                }
                at += REPLY_HEAD + payload;
            }
            (0..at)
                .map(|i| std::ptr::read_volatile(area.add(i)))
                .collect()
        }
    }
}

/// A run of u64 words inside a slot, seen as a slice.
struct SlotWords {
    ptr: *mut u64,
    len: usize,
}

impl std::ops::Deref for SlotWords {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        // SAFETY: `ptr..ptr+len` lies inside this process's slot (`ProcSlots::words`), which
        // lives as long as the process and is written by no other process while this one
        // runs (see `ProcSlots`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::ops::DerefMut for SlotWords {
    fn deref_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in `deref`; the request and reply areas of a slot do not overlap, and
        // `&mut self` keeps this view unique within the process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl ProcSlots {
    fn new(page_size: usize) -> ProcSlots {
        let words = (REQUEST_AREA + PROGRESS_WORDS + REPLY_AREA) * 8;
        let copy_len = COPY_PAGES * page_size;
        let slot_len = words.div_ceil(page_size) * page_size + copy_len;
        let slots = ZYGOTE_SLOT + 1;
        // Harness memory, not an op of the program: made with the mmap system call itself,
        // so that an interposed libc under test (which may make shared mappings private, map
        // more, or dirty them) cannot break the harness's own shared memory.
        // SAFETY: a fresh mapping, owned by this area for the process's life.
        let p = unsafe {
            libc::syscall(
                libc::SYS_mmap,
                std::ptr::null_mut::<c_void>(),
                slot_len * slots + page_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        } as *mut c_void;
        if p == libc::MAP_FAILED || (p as isize) < 0 {
            // No shared memory: one private slot, leaked for the process's life (u64 words,
            // so that the request and reply areas are aligned), and no turns, which the
            // executor sees (`Turn::works`) and refuses to start.
            let words = vec![0u64; slot_len / 8];
            return ProcSlots {
                base: Box::leak(words.into_boxed_slice()).as_mut_ptr() as *mut u8,
                slot_len,
                slots: 1,
                slot: 0,
                copy_len,
                turn: std::ptr::null(),
            };
        }
        ProcSlots {
            base: p as *mut u8,
            slot_len,
            slots,
            slot: 0,
            copy_len,
            // SAFETY: the page after the last slot, inside the mapping.
            turn: unsafe { (p as *mut u8).add(slot_len * slots) } as *const AtomicU32,
        }
    }

    /// The slot of the process with this handle number (or `ZYGOTE_SLOT`).
    fn take_slot(&mut self, proc: usize) {
        self.slot = proc % self.slots;
    }

    fn slot_base(&self) -> *mut u8 {
        // SAFETY: `slot < slots`, so the offset stays inside the mapping.
        unsafe { self.base.add(self.slot * self.slot_len) }
    }

    fn requests(&self) -> SlotWords {
        SlotWords {
            ptr: self.slot_base() as *mut u64,
            len: REQUEST_AREA,
        }
    }

    fn progress(&self) -> SlotWords {
        SlotWords {
            // SAFETY: the progress block follows the request area inside the slot.
            ptr: unsafe { (self.slot_base() as *mut u64).add(REQUEST_AREA) },
            len: PROGRESS_WORDS,
        }
    }

    fn reply(&self) -> SlotWords {
        SlotWords {
            // SAFETY: the reply area follows the progress block inside the slot.
            ptr: unsafe { (self.slot_base() as *mut u64).add(REQUEST_AREA + PROGRESS_WORDS) },
            len: REPLY_AREA,
        }
    }

    /// What the coordinator may read of every slot.
    fn view(&self) -> SlotsView {
        SlotsView {
            base: self.base,
            slot_len: self.slot_len,
            slots: self.slots,
            turn: Turn(self.turn),
        }
    }

    fn buf(&mut self) -> &mut [u8] {
        // SAFETY: the copy buffer is the slot's last `copy_len` bytes, inside the mapping;
        // only this process writes it while its tree runs (see the type's comment), and
        // `&mut self` keeps the slice unique within the process.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.slot_base().add(self.slot_len - self.copy_len),
                self.copy_len,
            )
        }
    }
}

/// Pages copied per `process_vm_readv` call in a snapshot.
const COPY_PAGES: usize = 16;

static INJECT: AtomicU32 = AtomicU32::new(0);
/// The socket and reply buffer the fault handler reports through.
static FAULT_FD: AtomicI32 = AtomicI32::new(-1);
static FAULT_REPLY: AtomicPtr<u64> = AtomicPtr::new(std::ptr::null_mut());
/// Payload words produced so far by the op in progress.
static PARTIAL: AtomicUsize = AtomicUsize::new(0);
/// The turn this process's current message passes at its end (0: none): if the process dies
/// first, the fault handler passes it, so that the batches after it still run.
static PENDING_PASS: AtomicU32 = AtomicU32::new(0);
/// The tree's turn word (`Turn`), for the fault handler.
static TURN: AtomicPtr<AtomicU32> = AtomicPtr::new(std::ptr::null_mut());
/// Where in the reply area the op in progress builds its reply (earlier ops' replies of the
/// same message come before it).
static FAULT_AT: AtomicUsize = AtomicUsize::new(0);

pub fn set_inject(mask: u32) {
    INJECT.store(mask, Ordering::Relaxed);
}

fn injected(fault: u32) -> bool {
    INJECT.load(Ordering::Relaxed) & fault != 0
}

/// SIGSEGV/SIGBUS handler: report, then let the signal kill the process. Only async-signal-safe
/// calls (send, sigaction).
extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut c_void) {
    let area = FAULT_REPLY.load(Ordering::Relaxed);
    let fd = FAULT_FD.load(Ordering::Relaxed);
    let partial = PARTIAL.load(Ordering::Relaxed);
    let at = FAULT_AT.load(Ordering::Relaxed);
    // SAFETY: `info` is the kernel's siginfo for this signal; `area` points at the reply area
    // of REPLY_AREA words, and `at + REPLY_HEAD + partial` never exceeds it (`serve` makes
    // room for an op's largest reply before it starts the op).
    let pending = PENDING_PASS.swap(0, Ordering::Relaxed);
    if pending != 0 {
        Turn(TURN.load(Ordering::Relaxed)).pass(pending);
    }
    unsafe {
        let buf = area.add(at);
        let addr = (*info).si_addr() as u64;
        *buf = status::FAULT;
        *buf.add(1) = sig as u64;
        *buf.add(2) = (*info).si_code as u64;
        *buf.add(3) = addr;
        *buf.add(4) = partial as u64;
        *buf.add(5) = partial as u64;
        // Retried: a lost report would turn this death into "vanished without a report".
        for _ in 0..100 {
            let n = libc::send(
                fd,
                area as *const c_void,
                (at + REPLY_HEAD + partial) * 8,
                libc::MSG_NOSIGNAL,
            );
            let e = *libc::__errno_location();
            if n >= 0 || !(e == libc::EINTR || e == libc::EAGAIN || e == libc::ENOBUFS) {
                break;
            }
        }
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
    }
    // Returning re-executes the faulting access, which now kills the process with `sig`.
}

fn install_fault_handler() {
    for sig in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: a plain SA_SIGINFO handler that only calls async-signal-safe functions.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_fault as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

static NO_VM_READV: AtomicU32 = AtomicU32::new(0);

/// Copies `buf.len()` bytes of our own memory at `addr` into `buf`; returns how many bytes came
/// before the first unreadable page.
fn copy_own(buf: &mut [u8], addr: u64) -> usize {
    if NO_VM_READV.load(Ordering::Relaxed) == 0 {
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut c_void,
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut c_void,
            iov_len: buf.len(),
        };
        // SAFETY: `local` is our writable buffer; the kernel checks `remote` itself.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if n >= 0 {
            return n as usize;
        }
        match nix::errno::Errno::last() {
            nix::errno::Errno::EFAULT => return 0,
            _ => NO_VM_READV.store(1, Ordering::Relaxed),
        }
    }
    // SAFETY: a readable range of our own layout as /proc/self/maps listed it; a fault is
    // reported by the handler.
    unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
    buf.len()
}

/// Receives one message of requests into the slot's request area, and the socket passed
/// with it if any (`Scratch::passed_fd`); how many requests, or `None` when the coordinator
/// is gone (end of file or a dead socket).
fn recv_requests(fd: RawFd, s: &mut Scratch) -> Option<usize> {
    let len = s.requests.len() * 8;
    // Room for one SCM_RIGHTS control message carrying one fd, on the stack.
    let mut cmsg_space = [0u64; 8];
    loop {
        let mut iov = libc::iovec {
            iov_base: s.requests.as_mut_ptr() as *mut c_void,
            iov_len: len,
        };
        // SAFETY: msghdr points at live buffers: the request area (`len` bytes) and the stack
        // control buffer, whose 64 bytes exceed CMSG_SPACE(sizeof(int)).
        let (n, passed) = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cmsg_space.as_mut_ptr() as *mut c_void;
            msg.msg_controllen = std::mem::size_of_val(&cmsg_space) as _;
            let n = libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC);
            let mut passed = -1;
            if n > 0 {
                let c = libc::CMSG_FIRSTHDR(&msg);
                if !c.is_null()
                    && (*c).cmsg_level == libc::SOL_SOCKET
                    && (*c).cmsg_type == libc::SCM_RIGHTS
                {
                    passed = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
                }
            }
            (n, passed)
        };
        if passed >= 0 {
            if s.passed_fd >= 0 {
                // SAFETY: an fd passed to this process and never used.
                unsafe { libc::close(s.passed_fd) };
            }
            s.passed_fd = passed;
        }
        if n > 0 && n as usize % (REQ_WORDS * 8) == 0 {
            return Some(n as usize / (REQ_WORDS * 8));
        }
        if n < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
            continue;
        }
        return None;
    }
}

/// Sends `reply` (one or more replies, each a head and its payload) as one message, passing
/// `pass_fd` along if given.
fn send_reply(fd: RawFd, reply: &[u64], pass_fd: Option<RawFd>) {
    let len = reply.len() * 8;
    let mut iov = libc::iovec {
        iov_base: reply.as_ptr() as *mut c_void,
        iov_len: len,
    };
    // Room for one SCM_RIGHTS control message carrying one fd, on the stack (nix's sendmsg
    // allocates its control buffer, and workers allocate nothing).
    let mut cmsg_space = [0u64; 8];
    loop {
        // SAFETY: msghdr points at live stack buffers; CMSG_* macros stay inside cmsg_space,
        // whose 64 bytes exceed CMSG_SPACE(sizeof(int)).
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            if let Some(pfd) = pass_fd {
                msg.msg_control = cmsg_space.as_mut_ptr() as *mut c_void;
                msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut i32, pfd);
            }
            libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL)
        };
        if n < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
            continue;
        }
        if n < 0 {
            // The coordinator is gone: nothing is left to report to.
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(0) };
        }
        return;
    }
}

fn head(reply: &mut [u64], st: u64, a: u64, b: u64, c: u64, d: u64) {
    reply[0] = st;
    reply[1] = a;
    reply[2] = b;
    reply[3] = c;
    reply[4] = d;
    reply[5] = 0;
}

/// Makes the program's pipe, in the root before the first op; every process inherits it.
/// Non-blocking: a full pipe (vmsplice) or an empty one (read) is EAGAIN, never a hang.
fn open_pipe(s: &mut Scratch) {
    // SAFETY: pipe2 writes two fds into the array.
    unsafe { libc::pipe2(s.pipe.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
}

/// Captures the harness's own address ranges, once, in the zygote before the first root.
fn capture_baseline(s: &mut Scratch) {
    let mut len = 0;
    let baseline = &mut s.baseline;
    s.maps.visit(
        |_, _| false,
        |e| {
            // Neighbours without a gap become one span (the snapshot jumps over whole spans).
            if len > 0 && baseline[len - 1].1 == e.start {
                baseline[len - 1].1 = e.end;
            } else if len < baseline.len() {
                baseline[len] = (e.start, e.end);
                len += 1;
            }
            true
        },
    );
    s.baseline_len = len;
}

/// The worker loop. Never returns: the process ends by `exit`, by a fatal signal, or when the
/// coordinator's end of the socket closes.
///
/// A message carries one or more requests (consecutive ops of this process, perhaps ending
/// with SNAPSHOT); they are performed in order and their replies go back as one message, so
/// that the coordinator wakes once per batch rather than once per op. A SNAPSHOT reply goes
/// alone (it is large): what came before it is sent first. A fatal signal sends what was built so far with the fault's report after it.
pub fn serve(mut fd: RawFd, s: &mut Scratch) -> ! {
    install_fault_handler();
    TURN.store(s.copy.turn as *mut AtomicU32, Ordering::Relaxed);
    FAULT_FD.store(fd, Ordering::Relaxed);
    FAULT_REPLY.store(s.reply.ptr, Ordering::Relaxed);
    loop {
        let Some(n) = recv_requests(fd, s) else {
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(0) };
        };
        s.at = 0;
        s.set_unsent(0);
        let pass = (0..n)
            .filter(|k| matches!(s.requests[k * REQ_WORDS], verb::PASS | verb::EXIT))
            .map(|k| s.requests[k * REQ_WORDS + 1] as u32)
            .last()
            .unwrap_or(0);
        PENDING_PASS.store(pass, Ordering::Relaxed);
        for k in 0..n {
            let mut req = [0u64; REQ_WORDS];
            req.copy_from_slice(&s.requests[k * REQ_WORDS..(k + 1) * REQ_WORDS]);
            let alone = req[0] == verb::SNAPSHOT;
            if alone || s.at + REPLY_HEAD + max_payload(&req, s.page_size) > REPLY_AREA {
                flush(fd, s);
            }
            FAULT_AT.store(s.at, Ordering::Relaxed);
            PARTIAL.store(0, Ordering::Relaxed);
            match perform(&mut fd, s, &req) {
                Done::Reply(payload) => {
                    s.reply[s.at + 5] = payload as u64;
                    s.at += REPLY_HEAD + payload;
                    s.set_unsent(s.unsent + 1);
                }
                Done::Sent | Done::Silent => {}
                // The rest of the message was the parent's.
                Done::Child => break,
                Done::Exit(turn) => {
                    s.at += REPLY_HEAD;
                    flush(fd, s);
                    // The others may look at themselves while this process is torn down (that
                    // changes nothing they can see); the next op waits for the coordinator,
                    // which sees this process gone first.
                    Turn(s.copy.turn).pass(turn);
                    // SAFETY: _exit ends the process without running any user-space teardown.
                    unsafe { libc::_exit(0) };
                }
            }
        }
        flush(fd, s);
    }
}

/// How an op's reply went.
enum Done {
    /// Built at `Scratch::at`, with this many payload words.
    Reply(usize),
    /// Already sent on its own.
    Sent,
    /// No reply (AWAIT, PASS).
    Silent,
    /// This process is the child of the FORK just performed (its first view is sent).
    Child,
    /// The reply is built (no payload); the process passes this turn (0: none) and ends once
    /// it is sent.
    Exit(u32),
}

/// The most payload words the reply to `req` can have.
fn max_payload(req: &[u64; REQ_WORDS], ps: usize) -> usize {
    match req[0] {
        verb::READ => req[3] as usize,
        verb::DUMP => ps / 8,
        verb::PIPE_READ => 1,
        _ => 0,
    }
}

/// Sends the replies built so far, as one message.
fn flush(fd: RawFd, s: &mut Scratch) {
    if s.at > 0 {
        // Not unsent any more once handed to the kernel: if the send itself hangs (as under
        // an emulator), the coordinator must not read these replies a second time from the
        // slot (they may well have arrived).
        s.set_unsent(0);
        send_reply(fd, &s.reply[..s.at], None);
        s.at = 0;
    }
}

/// Resolves the words of `req` that name mappings (`REQ_RELOC`) to addresses through the
/// board; `false` if one names a mapping that has no address.
fn relocate(req: &mut [u64; REQ_WORDS], board: Board, ps: usize) -> bool {
    let mask = req[REQ_RELOC];
    for (i, w) in req.iter_mut().enumerate().take(REQ_RELOC).skip(1) {
        if mask & (1 << i) == 0 {
            continue;
        }
        let handle = (*w >> 32) as usize;
        if handle == 0 || handle > crate::program::caps::MAX_MAPS {
            return false;
        }
        let base = board.base(handle - 1).load(Ordering::Acquire);
        if base == 0 {
            return false;
        }
        *w = base.wrapping_add((*w & 0xffff_ffff).wrapping_mul(ps as u64));
    }
    true
}

/// Enters the address an op's result names into the board (0 when the op failed).
fn enter_base(req: &[u64; REQ_WORDS], board: Board, r: &Result<u64, nix::errno::Errno>) {
    let h = req[REQ_CREATES] as usize;
    if h > 0 && h <= crate::program::caps::MAX_MAPS {
        board
            .base(h - 1)
            .store(*r.as_ref().unwrap_or(&0), Ordering::Release);
    }
}

/// Performs one request; its reply is built at `s.at` unless it says otherwise.
fn perform(fd: &mut RawFd, s: &mut Scratch, req: &[u64; REQ_WORDS]) -> Done {
    let ps = s.page_size;
    let board = s.copy.view().board();
    let mut req = *req;
    if !relocate(&mut req, board, ps) {
        head(&mut s.reply[s.at..], status::SKIPPED, 0, 0, 0, 0);
        return Done::Reply(0);
    }
    let req = &req;
    // Ops on a mapping carry its base address and a first page.
    let base = req[1];
    let first = base.wrapping_add(req[2].wrapping_mul(ps as u64));
    let at = s.at;
    match req[0] {
        verb::AWAIT => {
            Turn(s.copy.turn).wait(req[1] as u32);
            return Done::Silent;
        }
        verb::PASS => {
            PENDING_PASS.store(0, Ordering::Relaxed);
            Turn(s.copy.turn).pass(req[1] as u32);
            return Done::Silent;
        }
        _ => {}
    }
    {
        let reply = &mut s.reply[at..];
        match req[0] {
            verb::MAP => {
                let r = map(req[1], req[2] as usize, 0, 0);
                enter_base(req, board, &r);
                reply_addr(reply, r);
            }
            verb::MAP_AT => {
                let r = map(req[1], req[2] as usize, req[3], req[4]);
                enter_base(req, board, &r);
                reply_addr(reply, r);
            }
            verb::PROTECT => {
                let r = call_result(
                    // SAFETY: mprotect on the program's own mappings; Rust code holds no
                    // references into them across ops.
                    unsafe {
                        libc::mprotect(first as *mut c_void, req[3] as usize * ps, req[4] as i32)
                    },
                );
                reply_status(reply, r);
            }
            verb::ADVISE => {
                let r = call_result(
                    // SAFETY: madvise on the program's own mappings (the harness's are never
                    // named: ranges lie inside program handles).
                    unsafe {
                        libc::madvise(first as *mut c_void, req[3] as usize * ps, req[4] as i32)
                    },
                );
                reply_status(reply, r);
            }
            verb::REMAP => {
                // Through libc's variadic wrapper, always with the fifth argument (0 when
                // unused): without it the kernel may read a stale register (SEMANTICS K12, G6).
                // SAFETY: mremap of the program's own mappings; a FIXED target lies inside a
                // program handle's range.
                let r = unsafe {
                    libc::mremap(
                        first as *mut c_void,
                        req[3] as usize * ps,
                        req[4] as usize * ps,
                        req[5] as i32,
                        req[6] as *mut c_void,
                    )
                };
                let r = if r == libc::MAP_FAILED {
                    Err(nix::errno::Errno::last())
                } else {
                    Ok(r as u64)
                };
                enter_base(req, board, &r);
                reply_addr(reply, r);
            }
            verb::VMSPLICE => {
                let iov = libc::iovec {
                    iov_base: first as *mut c_void,
                    iov_len: ps,
                };
                // SAFETY: vmsplice reads the page through get_user_pages; the kernel checks it.
                let n = unsafe { libc::vmsplice(s.pipe[1], &iov, 1, 0) };
                let r = if n == ps as isize {
                    Ok(())
                } else if n < 0 {
                    Err(nix::errno::Errno::last())
                } else {
                    Err(nix::errno::Errno::EIO)
                };
                reply_status(&mut s.reply[at..], r);
            }
            verb::PIPE_READ => {
                while injected(inject::HANG_PIPE_READ) {
                    // SAFETY: pause only waits for a signal.
                    unsafe { libc::pause() };
                }
                // SAFETY: reading into our own buffer of at least a page.
                let n =
                    unsafe { libc::read(s.pipe[0], s.copy.buf().as_mut_ptr() as *mut c_void, ps) };
                if n == ps as isize {
                    let d = digest(&s.copy.buf()[..ps]);
                    let reply = &mut s.reply[at..];
                    reply[REPLY_HEAD] = d;
                    head(reply, status::OK, 0, 0, 0, 1);
                    return Done::Reply(1);
                }
                let e = if n < 0 {
                    nix::errno::Errno::last()
                } else {
                    nix::errno::Errno::EIO
                };
                reply_status(&mut s.reply[at..], Err(e));
            }
            verb::POKE => {
                let r = poke(
                    s.copy.buf(),
                    first,
                    req[3] as usize,
                    req[4] as usize..req[5] as usize,
                    req[6],
                    base,
                    req[7] == 1,
                    ps,
                );
                reply_status(&mut s.reply[at..], r);
            }
            verb::INVALID => {
                let r = invalid_call(req[2], req[3], base, ps);
                reply_status(reply, r);
            }
            verb::WRITE => {
                let skip = !s.is_root && injected(inject::DROP_CHILD_WRITE);
                if !skip {
                    write(
                        first,
                        req[3] as usize,
                        req[4] as usize,
                        req[5] as usize,
                        req[6],
                        base,
                        ps,
                    );
                }
                head(reply, status::OK, 0, 0, 0, 0);
            }
            verb::READ => {
                let n = read(
                    reply,
                    first,
                    req[3] as usize,
                    req[4] as usize,
                    req[5] as usize,
                    ps,
                );
                head(reply, status::OK, 0, 0, 0, n as u64);
                return Done::Reply(n);
            }
            verb::FORK => {
                // [FORK, child, direct reads, serial, mask, next]: the child's first view
                // takes part in the snapshot after the fork (`Board::barrier`).
                s.direct_reads = req[2] == 1;
                return match fork(fd, s, req[1] as usize) {
                    Forked::Child => {
                        // Every fork is followed by a snapshot of every live process, the
                        // child's first: it sends its view unasked, before it reads its first
                        // request.
                        view_and_send(*fd, s, req[3] as u32, req[4] as u32, req[5] as u32);
                        Done::Child
                    }
                    Forked::Parent(pid) => {
                        head(&mut s.reply[at..], status::OK, pid as u64, 0, 0, 0);
                        Done::Reply(0)
                    }
                    Forked::Failed(e) => {
                        head(&mut s.reply[at..], status::ERR, e as u64, 0, 0, 0);
                        Done::Reply(0)
                    }
                    Forked::NoSocket => {
                        head(&mut s.reply[at..], status::REFUSED, 0, 0, 0, 0);
                        Done::Reply(0)
                    }
                };
            }
            verb::EXIT => {
                // [EXIT, turn to pass on the way out]
                head(reply, status::OK, 0, 0, 0, 0);
                return Done::Exit(req[1] as u32);
            }
            verb::UNMAP => {
                let r = match NonNull::new(first as *mut c_void) {
                    // SAFETY: unmapping memory the program mapped; the worker holds no
                    // references into program mappings across ops.
                    Some(p) => unsafe { nix::sys::mman::munmap(p, req[3] as usize * ps) },
                    None => Err(nix::errno::Errno::EINVAL),
                };
                reply_status(reply, r);
            }
            verb::SNAPSHOT => {
                // [SNAPSHOT, direct reads, serial, mask, next]: see `Board::barrier`.
                s.direct_reads = req[1] == 1;
                view_and_send(*fd, s, req[2] as u32, req[3] as u32, req[4] as u32);
                return Done::Sent;
            }
            verb::DUMP => {
                let words = ps / 8;
                let src = first as *const u64;
                for i in 0..words.min(reply.len() - REPLY_HEAD) {
                    // SAFETY: reading a page of the process's own memory; a fault is reported
                    // by the handler (the page was not readable).
                    reply[REPLY_HEAD + i] = unsafe { std::ptr::read_volatile(src.add(i)) };
                    PARTIAL.store(i + 1, Ordering::Relaxed);
                }
                head(reply, status::OK, 0, 0, 0, words as u64);
                return Done::Reply(words);
            }
            _ => head(reply, status::REFUSED, 0, 0, 0, 0),
        }
    }
    Done::Reply(0)
}

/// The zygote's loop: the process that forks every program's root, made by the executor once,
/// before anything else touches the executor's heap. Roots are forked from here rather than
/// from the executor because a fork makes every private page of the forking process
/// copy-on-write: forked from the executor, each root cost the executor ~50 write faults per
/// program on its own heap (measured with `perf record -e page-faults`), on the critical path.
/// The zygote touches a handful of pages per fork, beside the program that runs.
pub fn serve_zygote(fd: RawFd, s: &mut Scratch) -> ! {
    s.take_slot(ZYGOTE_SLOT);
    // Once for every root: a root's layout is the zygote's (fork copies it, and the zygote
    // maps nothing after this), so each inherits the baseline instead of reading its whole
    // layout again (~35 queries per program).
    capture_baseline(s);
    loop {
        let Some(n) = recv_requests(fd, s) else {
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(0) };
        };
        // Roots of finished programs: the kernel reaps them (SIGCHLD is ignored here), except
        // under an emulator that keeps that disposition to itself; reap them then.
        // SAFETY: waitpid on this process's own children, without blocking.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        if n == 1 && s.requests[0] == verb::SPAWN_ROOT {
            spawn_root(fd, s);
        } else {
            head(&mut s.reply, status::REFUSED, 0, 0, 0, 0);
            send_reply(fd, &s.reply[..REPLY_HEAD], None);
        }
    }
}

/// In the zygote: forks a program's root, in its own process group, and passes the
/// coordinator's end of its socket back.
fn spawn_root(fd: RawFd, s: &mut Scratch) {
    let mut sv = [-1i32; 2];
    // SAFETY: socketpair writes two fds into `sv`.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    };
    if r < 0 {
        let e = nix::errno::Errno::last() as u64;
        head(&mut s.reply, status::ERR, e, 0, 0, 0);
        send_reply(fd, &s.reply[..REPLY_HEAD], None);
        return;
    }
    // SAFETY: the zygote is single-threaded, and after fork the child only runs the worker
    // loop, which allocates nothing.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let _ =
                nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
            // SAFETY: this process owns every fd it closes and uses none of them again; the
            // signal disposition is reset to the default (the zygote ignores SIGCHLD so that
            // the kernel reaps its roots, and a program's processes must not inherit that).
            let own = unsafe {
                libc::close(fd);
                libc::close(sv[0]);
                let mut own = sv[1];
                if own != 3 && libc::dup2(own, 3) == 3 {
                    libc::close(own);
                    own = 3;
                }
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGCHLD, &dfl, std::ptr::null_mut());
                own
            };
            s.take_slot(0);
            s.maps.after_fork();
            open_pipe(s);
            serve(own, s)
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            // Also here, so that the group exists before the coordinator can name it.
            let _ = nix::unistd::setpgid(child, child);
            // SAFETY: as above.
            unsafe { libc::close(sv[1]) };
            head(&mut s.reply, status::OK, child.as_raw() as u64, 0, 0, 0);
            send_reply(fd, &s.reply[..REPLY_HEAD], Some(sv[0]));
            // SAFETY: the coordinator now holds its own copy of the fd.
            unsafe { libc::close(sv[0]) };
        }
        Err(e) => {
            // SAFETY: closing the unused pair.
            unsafe {
                libc::close(sv[0]);
                libc::close(sv[1]);
            }
            head(&mut s.reply, status::ERR, e as u64, 0, 0, 0);
            send_reply(fd, &s.reply[..REPLY_HEAD], None);
        }
    }
}

fn reply_addr(reply: &mut [u64], r: Result<u64, nix::errno::Errno>) {
    match r {
        Ok(addr) => head(reply, status::OK, addr, 0, 0, 0),
        Err(e) => head(reply, status::ERR, e as u64, 0, 0, 0),
    }
}

fn reply_status(reply: &mut [u64], r: Result<(), nix::errno::Errno>) {
    match r {
        Ok(()) => head(reply, status::OK, 0, 0, 0, 0),
        Err(e) => head(reply, status::ERR, e as u64, 0, 0, 0),
    }
}

fn call_result(ret: libc::c_int) -> Result<(), nix::errno::Errno> {
    if ret == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// `mmap` of one of the four kinds (`MapKind` order: private, shared, private-zero,
/// shared-zero), at `addr` with placement `how` (0 none, 1 MAP_FIXED, 2 MAP_FIXED_NOREPLACE,
/// 3 hint).
fn map(kind: u64, len: usize, addr: u64, how: u64) -> Result<u64, nix::errno::Errno> {
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let shared = kind == 1 || kind == 3 || injected(inject::PRIVATE_AS_SHARED);
    let mut flags = if shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    flags |= match how {
        1 => libc::MAP_FIXED,
        2 => libc::MAP_FIXED_NOREPLACE,
        _ => 0,
    };
    let hint = if how == 0 { 0 } else { addr } as *mut c_void;
    let r = if kind >= 2 {
        let zero = nix::fcntl::open(
            "/dev/zero",
            nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        // SAFETY: a mapping at an address of the kernel's choosing, or inside a program
        // handle's range (MAP_FIXED replaces only program pages); Rust code holds no
        // references into either.
        unsafe { libc::mmap(hint, len, prot, flags, zero.as_raw_fd(), 0) }
    } else {
        // SAFETY: as above; MAP_ANONYMOUS with fd -1 and offset 0.
        unsafe { libc::mmap(hint, len, prot, flags | libc::MAP_ANONYMOUS, -1, 0) }
    };
    if r == libc::MAP_FAILED {
        Err(nix::errno::Errno::last())
    } else {
        Ok(r as u64)
    }
}

/// A call with one bad argument (`Syscall` and `BadArg` order), on the range at `base`.
/// Only combinations that Linux rejects without touching memory are ever sent (see
/// `BadArg::applies_to`).
fn invalid_call(call: u64, bad: u64, base: u64, ps: usize) -> Result<(), nix::errno::Errno> {
    const ZERO_LENGTH: u64 = 0;
    const UNALIGNED: u64 = 1;
    const OVERFLOW: u64 = 2;
    let addr = if bad == UNALIGNED { base + 1 } else { base } as *mut c_void;
    let len = match bad {
        ZERO_LENGTH => 0,
        // Its page rounding wraps past the top of the address space.
        OVERFLOW => usize::MAX - 2 * ps + 1,
        _ => ps,
    };
    // SAFETY: each call below is rejected by the kernel before it changes anything, for the
    // argument combinations `BadArg::applies_to` admits (measured; SEMANTICS A4, D1, E1, F0,
    // G1).
    let ret: isize = unsafe {
        match call {
            0 => {
                let fixed = if bad == UNALIGNED { libc::MAP_FIXED } else { 0 };
                let hint = if bad == UNALIGNED {
                    addr
                } else {
                    std::ptr::null_mut()
                };
                let r = libc::mmap(
                    hint,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | fixed,
                    -1,
                    0,
                );
                if r == libc::MAP_FAILED {
                    -1
                } else {
                    // Not expected: undo it so the program's layout stays as the model says,
                    // and report success for the checker to flag.
                    libc::munmap(r, len);
                    0
                }
            }
            1 => libc::munmap(addr, len) as isize,
            2 => {
                let prot = if bad == 4 {
                    0x100 | libc::PROT_READ
                } else {
                    libc::PROT_READ | libc::PROT_WRITE
                };
                libc::mprotect(addr, len, prot) as isize
            }
            3 => {
                let advice = if bad == 3 { 200 } else { libc::MADV_NORMAL };
                libc::madvise(addr, if bad == 3 { ps } else { len }, advice) as isize
            }
            _ => {
                let (new_len, flags) = match bad {
                    ZERO_LENGTH => (0, 0),
                    OVERFLOW => (usize::MAX - 2 * ps + 1, libc::MREMAP_MAYMOVE),
                    5 => (ps, 0x40),
                    _ => (ps, 0),
                };
                let r = libc::mremap(addr, ps, new_len, flags, std::ptr::null_mut::<c_void>());
                if r == libc::MAP_FAILED { -1 } else { 0 }
            }
        }
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// Stores a pattern page by page in ascending order, so that a fault leaves exactly the earlier
/// pages written (within a page, which bytes a memset stores first is libc's choice).
fn write(addr: u64, pages: usize, lo: usize, hi: usize, pattern: u64, origin: u64, ps: usize) {
    let byte = pattern as u8;
    let ramp = pattern >> 8 == 1;
    for p in 0..pages {
        let page = addr + (p * ps) as u64;
        let dst = (page as usize + lo) as *mut u8;
        if ramp {
            let offset = (page - origin) as usize + lo;
            for i in 0..hi - lo {
                let v = byte.wrapping_add(((offset + i) % 251) as u8);
                // SAFETY: a store into the program's own mapping; an inaccessible page faults
                // and the handler reports it.
                unsafe { std::ptr::write_volatile(dst.add(i), v) };
            }
        } else {
            // SAFETY: as above (memset within one page).
            unsafe { std::ptr::write_bytes(dst, byte, hi - lo) };
        }
    }
}

/// Writes a pattern through the kernel, page by page: pwrite on /proc/self/mem (a forced
/// write) or process_vm_writev on ourselves. The first page that fails ends it with its errno.
#[allow(clippy::too_many_arguments)]
fn poke(
    buf: &mut [u8],
    addr: u64,
    pages: usize,
    bytes: std::ops::Range<usize>,
    pattern: u64,
    origin: u64,
    vm: bool,
    ps: usize,
) -> Result<(), nix::errno::Errno> {
    let fd = if vm {
        -1
    } else {
        // SAFETY: a NUL-terminated path; the fd is closed below.
        let fd = unsafe { libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(nix::errno::Errno::last());
        }
        fd
    };
    let byte = pattern as u8;
    let ramp = pattern >> 8 == 1;
    let len = bytes.len();
    let mut result = Ok(());
    for p in 0..pages {
        let page = addr + (p * ps) as u64;
        let offset = (page - origin) as usize + bytes.start;
        for (i, b) in buf[..len].iter_mut().enumerate() {
            *b = if ramp {
                byte.wrapping_add(((offset + i) % 251) as u8)
            } else {
                byte
            };
        }
        let dst = page + bytes.start as u64;
        let n = if vm {
            let local = libc::iovec {
                iov_base: buf.as_mut_ptr() as *mut c_void,
                iov_len: len,
            };
            let remote = libc::iovec {
                iov_base: dst as *mut c_void,
                iov_len: len,
            };
            // SAFETY: `local` is our buffer; the kernel checks `remote` (our own memory).
            unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) }
        } else {
            // SAFETY: writing our buffer through /proc/self/mem; the kernel checks the target.
            unsafe { libc::pwrite(fd, buf.as_ptr() as *const c_void, len, dst as i64) }
        };
        if n != len as isize {
            result = Err(if n < 0 {
                nix::errno::Errno::last()
            } else {
                nix::errno::Errno::EIO
            });
            break;
        }
    }
    if fd >= 0 {
        // SAFETY: closing the fd opened above.
        unsafe { libc::close(fd) };
    }
    result
}

/// Digests `pages` pages (bytes `lo..hi` of each) into the reply payload.
fn read(reply: &mut [u64], addr: u64, pages: usize, lo: usize, hi: usize, ps: usize) -> usize {
    for p in 0..pages.min(REPLY_PAYLOAD) {
        let src = (addr as usize + p * ps + lo) as *const u8;
        // SAFETY: loads from the program's own mapping; a fault is reported by the handler.
        let bytes = unsafe { std::slice::from_raw_parts(src, hi - lo) };
        reply[REPLY_HEAD + p] = digest(bytes);
        PARTIAL.store(p + 1, Ordering::Relaxed);
    }
    pages
}

/// What `fork` did.
enum Forked {
    /// This is the new process (its slot and socket taken).
    Child,
    /// This is the parent; the child's pid.
    Parent(i32),
    Failed(nix::errno::Errno),
    /// The coordinator passed no socket for the child (a harness error).
    NoSocket,
}

/// Forks; the child takes `child` (its handle number) as its slot, and as its socket the one
/// the coordinator passed with this message (made by the coordinator, so that it can send the
/// child its requests before the fork has even run).
fn fork(fd: &mut RawFd, s: &mut Scratch, child: usize) -> Forked {
    let theirs = std::mem::replace(&mut s.passed_fd, -1);
    if theirs < 0 {
        return Forked::NoSocket;
    }
    // SAFETY: the executor is single-threaded, and after fork the child only runs this loop,
    // which allocates nothing.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: closing the parent's socket, which this process does not use.
            unsafe { libc::close(*fd) };
            *fd = theirs;
            s.is_root = false;
            s.maps.after_fork();
            s.take_slot(child);
            s.at = 0;
            s.set_unsent(0);
            // The parent's message passes the turn after the fork, not this process; and a
            // fault in the first view reports from the start of this process's own reply area
            // (the parent's place in its own area means nothing here).
            PENDING_PASS.store(0, Ordering::Relaxed);
            FAULT_AT.store(0, Ordering::Relaxed);
            PARTIAL.store(0, Ordering::Relaxed);
            FAULT_FD.store(*fd, Ordering::Relaxed);
            Forked::Child
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            // SAFETY: the child's socket is the child's; this process does not use it.
            unsafe { libc::close(theirs) };
            Forked::Parent(child.as_raw())
        }
        Err(e) => {
            // SAFETY: as above.
            unsafe { libc::close(theirs) };
            Forked::Failed(e)
        }
    }
}

/// Looks at itself and builds the view (the reply to SNAPSHOT) at the start of the reply area,
/// which must hold nothing unsent; returns its length in words.
fn take_view(s: &mut Scratch) -> usize {
    let (regions, pages) = snapshot(s);
    let reply = &mut s.reply[..];
    let (st, words) = match (regions, pages) {
        (Some(r), Some(p)) => (status::OK, (r, p)),
        _ => (status::REFUSED, (0, 0)),
    };
    // Words 3 and 4: pages and regions; word 5, as in every reply, the payload's length.
    let payload = words.0 * 3 + words.1 * 2;
    head(reply, st, 0, 0, words.1 as u64, words.0 as u64);
    reply[5] = payload as u64;
    REPLY_HEAD + payload
}

/// Takes this process's view for the snapshot `serial` and sends it, marking it taken on
/// the board first (`Board::barrier`: the last viewer passes the turn `next`), so that the
/// next step does not wait for the message.
fn view_and_send(fd: RawFd, s: &mut Scratch, serial: u32, mask: u32, next: u32) {
    let words = take_view(s);
    s.copy
        .view()
        .board()
        .barrier(Turn(s.copy.turn), s.copy.slot, serial, mask, next);
    send_reply(fd, &s.reply[..words], None);
}

/// The process's layout outside the baseline, normalised, then a digest of each readable page.
/// Returns (regions, pages) counts written to the payload: regions as (start, end, flags)
/// triples, then pages as (address, digest) pairs. `None` if the payload would overflow.
fn snapshot(s: &mut Scratch) -> (Option<usize>, Option<usize>) {
    let ps = s.page_size as u64;
    let baseline = &s.baseline[..s.baseline_len];
    let payload = &mut s.reply[REPLY_HEAD..];
    let mut nregions = 0usize;
    // A tiny fixed-size "Vec" over the payload: regions are merged as they are appended.
    let mut last: Option<Region> = None;
    let mut emit = |r: Region, payload: &mut [u64], nregions: &mut usize| -> bool {
        if let Some(l) = last.as_mut()
            && l.joins(&r)
        {
            l.end = r.end;
            payload[(*nregions - 1) * 3 + 1] = r.end;
            return true;
        }
        if (*nregions + 1) * 3 > payload.len() {
            return false;
        }
        payload[*nregions * 3] = r.start;
        payload[*nregions * 3 + 1] = r.end;
        payload[*nregions * 3 + 2] = region_flags(&r);
        *nregions += 1;
        last = Some(r);
        true
    };
    // Only an entry that reaches outside the baseline needs its name (the baseline is sorted
    // and disjoint, as /proc lists ascending).
    let outside_baseline = |start: u64, end: u64| {
        let mut at = start;
        for &(bs, be) in baseline {
            if be <= at {
                continue;
            }
            if bs > at {
                break;
            }
            at = be;
            if at >= end {
                return false;
            }
        }
        at < end
    };
    // A mapping inside a harness span: look next at the span's end. A program mapping cannot
    // lie inside a span (a span has no gap, and the program never unmaps the harness's
    // memory), and anything in a gap between spans is still visited.
    let resume = |start: u64, end: u64| {
        baseline
            .iter()
            .find(|&&(bs, be)| bs <= start && end <= be)
            .map_or(end, |&(_, be)| be)
    };
    let mut overflow = false;
    let readable = s.maps.visit_skipping(outside_baseline, resume, |e| {
        if e.name == b"[stack]" || e.name == b"[heap]" {
            return true;
        }
        // Subtract the baseline.
        let mut start = e.start;
        for &(bs, be) in baseline {
            if be <= start || bs >= e.end {
                continue;
            }
            if bs > start {
                let r = e.region(start, bs);
                if !emit(r, payload, &mut nregions) {
                    overflow = true;
                    return false;
                }
            }
            start = start.max(be);
        }
        if start < e.end {
            let r = e.region(start, e.end);
            if !emit(r, payload, &mut nregions) {
                overflow = true;
                return false;
            }
        }
        true
    });
    if overflow {
        return (None, None);
    }
    // An unreadable layout shows as an empty one, which the checker reports.
    let _ = readable;
    let mut npages = 0usize;
    let base = nregions * 3;
    for i in 0..nregions {
        let r = super::protocol::region_from_words(
            payload[i * 3],
            payload[i * 3 + 1],
            payload[i * 3 + 2],
        );
        if r.prot & crate::program::outcome::PROT_R == 0 {
            continue;
        }
        if s.direct_reads {
            // Plain loads: no op of this program can make a listed-readable page fault (see
            // `Scratch::direct_reads`); if the kernel faults anyway, the handler reports it
            // and the process is missing from the snapshot, which the checker reports.
            if base + (npages + ((r.end - r.start) / ps) as usize) * 2 > payload.len() {
                return (None, None);
            }
            let mut a = r.start;
            while a < r.end {
                // SAFETY: a page of our own layout that /proc/self/maps lists as readable,
                // which the program cannot have made fault (above); a fault is reported by
                // the handler.
                let bytes = unsafe { std::slice::from_raw_parts(a as *const u8, ps as usize) };
                payload[base + npages * 2] = a;
                payload[base + npages * 2 + 1] = digest(bytes);
                npages += 1;
                a += ps;
            }
            continue;
        }
        // The pages are copied with process_vm_readv on ourselves: the kernel reads them as a
        // load would, but a page that cannot be read (a guard page, shmem past its end) fails
        // the call with EFAULT instead of killing us, and shows as UNREADABLE. Where the call
        // does not exist (some emulators), the pages are read directly.
        let mut a = r.start;
        while a < r.end {
            let n = (((r.end - a) / ps) as usize).min(COPY_PAGES);
            if base + (npages + n) * 2 > payload.len() {
                return (None, None);
            }
            let copy = s.copy.buf();
            let got = copy_own(&mut copy[..n * ps as usize], a);
            let whole = got / ps as usize;
            for k in 0..n.min(whole + 1) {
                let d = if k < whole {
                    digest(&copy[k * ps as usize..(k + 1) * ps as usize])
                } else {
                    UNREADABLE
                };
                payload[base + npages * 2] = a + k as u64 * ps;
                payload[base + npages * 2 + 1] = d;
                npages += 1;
            }
            a += (n.min(whole + 1) as u64) * ps;
        }
    }
    (Some(nregions), Some(npages))
}

//! The worker: every process of a program's tree runs this loop. It takes messages of requests
//! from its socket, performs each on its own memory through libc's wrappers (via `nix` where
//! nix does not allocate, `libc` directly where it would), and replies; it waits for its turn
//! before a step and passes the turn after it (`Turn`), so that the steps of a program run in
//! program order across processes without a round trip through the coordinator.
//!
//! Rules this module keeps:
//! - nothing is allocated after fork: every buffer lives in `Scratch` (or in this process's
//!   slot of the shared `ProcSlots`), made by the executor before it forks the zygote, and a
//!   request is decoded onto the stack (`protocol::Request`);
//! - every observation is made from inside: the worker's own loads and stores, its own
//!   /proc/self/maps; nothing peeks from outside, so the same worker runs under an emulator;
//! - a fatal SIGSEGV or SIGBUS is reported by the worker itself (signal, si_code, address, and
//!   the read digests made so far) and then delivered for real: the process dies by the signal;
//! - all `unsafe` of the project's memory accesses lives here, each block with its SAFETY line.
//!
//! This file owns `Scratch` (a worker's buffers) and the injected faults;
//! - `slots`: the shared per-process slots, and the coordinator's window on them;
//! - `turn`: the tree's turn word and board;
//! - `socket`: receiving requests and sending replies, without allocating;
//! - `serve`: the loop, a message at a time;
//! - `perform`: one request, from its words to its reply (and `fork`);
//! - `calls`: the syscalls, loads and stores of the ops;
//! - `alloc`: the allocator ops (malloc and its family), **the one place that allocates after
//!   fork**: those allocations are the program's own, made through libc so that an interposed
//!   allocator is in the path;
//! - `snapshot`: a process looking at itself; `view_lock`: one view at a time per address
//!   space (a clone child's and its parent's);
//! - `physical`: the physical channel (pagemap, PAGEMAP_SCAN), read in snapshots;
//! - `fault`: the SIGSEGV/SIGBUS handler that reports a death; `futex`: its two futex calls;
//! - `thread`: the process's racing thread (docs/SEMANTICS.md T1);
//! - `clone_vm`: `clone(CLONE_VM)` children and their kits (T30); `per_proc`: the statics
//!   kept per process (a clone child shares the others with its parent);
//! - `op_thread`: the process's op threads, which run ops handed to them (T20);
//! - `zygote`: the process that forks every program's root.

mod accounting;
mod alloc;
mod baseline;
mod calls;
mod clone_vm;
mod fault;
mod futex;
mod op_thread;
mod per_proc;
mod perform;
pub mod physical;
mod race_advice;
mod race_kinds;
mod serve;
mod slots;
mod snapshot;
mod socket;
mod thread;
mod turn;
mod vfork;
mod view_lock;
mod zygote;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use super::maps;
pub use serve::serve;
pub use slots::{MAX_BATCH, REPLY_AREA, SlotsView};
use slots::{ProcSlots, SlotWords};
pub use turn::{Board, Turn};
pub use zygote::serve_zygote;

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
    /// Whether the view being taken reads smaps too (`Request::Snapshot`, I11).
    smaps: bool,
    /// The program's pipe (read end, write end), made by the root and inherited by all.
    pipe: [i32; 2],
    /// This process's malloc-family blocks and the allocator's own address ranges (`alloc`).
    heap: alloc::HeapState,
    /// The program's /dev/zero descriptor (`MapArgs::fd`), opened by the root and inherited by
    /// all; -1 if it could not be opened.
    zero_fd: i32,
    /// The process's racing thread (`race`, `stop`).
    racer: thread::Racer,
    /// The process's op threads (`thread`, `by`, `end`).
    op_threads: op_thread::OpThreads,
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
        fault::FAULT_REPLY.store(self.reply.ptr, Ordering::Relaxed);
    }

    pub fn new(page_size: usize) -> Scratch {
        Scratch::build(ProcSlots::new(page_size), page_size)
    }

    fn build(copy: ProcSlots, page_size: usize) -> Scratch {
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
            smaps: false,
            pipe: [-1, -1],
            zero_fd: -1,
            heap: alloc::HeapState::new(),
            racer: thread::Racer::new(page_size),
            op_threads: op_thread::OpThreads::new(page_size, serve::serve_child),
        }
    }
}

/// The faults to commit (`inject`), set once by the executor before the zygote.
static INJECT: AtomicU32 = AtomicU32::new(0);

/// Tells every worker forked from now on to commit these faults (`inject`).
pub fn set_inject(mask: u32) {
    INJECT.store(mask, Ordering::Relaxed);
}

/// Whether the executor was told to commit this fault (`inject`).
fn injected(fault: u32) -> bool {
    INJECT.load(Ordering::Relaxed) & fault != 0
}

//! The CLONE_VM request (docs/SEMANTICS.md T30 to T34): the worker starts a process in its own
//! address space through libc's `clone(fn, stack, CLONE_VM | SIGCHLD, arg)` (so an interposed
//! libc stays in the path; not CLONE_THREAD: the child has its own pid, its own exit and its
//! own signals; not CLONE_FILES: its own copy of the fd table). The child runs the worker loop
//! like a fork child, over its own socket (passed with the message, as for FORK).
//!
//! What the two share is everything in memory, the statics included, so nothing here
//! allocates after the program started, and each process must use buffers of its own:
//! - a **kit** per possible child, made by the root of a program with a `clone` before its
//!   first op (`Request::PrepareClones`; then the root captures its baseline again, so the
//!   kits' mappings are the harness's, left out of snapshots, and the program's mappings are
//!   placed around them): a stack (mapped `MAP_NORESERVE`, touched only by the child) and a
//!   spare `Scratch` (its own maps buffer, reply and request areas through the same shared
//!   slots). A kit is taken once and never given back (a program has at most
//!   `caps::MAX_PROCS` processes);
//! - the fault handler's statics (`fault.rs`) are per process (`per_proc.rs`: one copy per
//!   stack, chosen by where the stack pointer is).
//!
//! errno stays shared (a CLONE_VM child without CLONE_SETTLS runs on its parent's TLS): the
//! worker reads it right after the failing call of an op, and the program's processes take
//! turns (`Turn`), so the other user of the space is then waiting, not failing calls.

use std::ffi::c_void;
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use super::Scratch;
use super::baseline::capture_baseline;
use super::fault::{FAULT_AT, FAULT_FD, PARTIAL, PENDING_PASS};
use super::per_proc::{self, KITS_MAX};
use super::snapshot::view_and_send;
use crate::kernel::protocol::Barrier;

/// Kits: at most one per process handle.
pub(super) const KITS: usize = KITS_MAX;
/// A clone child's stack (mapped without a reservation: only what it touches costs).
const STACK: usize = 2 << 20;
/// The kits, made once by the first `Scratch`.
static KIT_TABLE: AtomicPtr<Kit> = AtomicPtr::new(std::ptr::null_mut());
static KIT_COUNT: AtomicUsize = AtomicUsize::new(0);
/// The worker loop, which a clone child runs (set by `serve` itself: naming it here would
/// make the worker's files import one another in a cycle).
pub(super) static ENTRY: OnceLock<fn(RawFd, &mut Scratch) -> !> = OnceLock::new();

/// What a clone child needs, made before the program: its stack, its `Scratch`, and the
/// words its parent leaves it at the clone.
pub(super) struct Kit {
    taken: AtomicBool,
    scratch: Scratch,
    /// The child's socket, and the parent's (which the child closes in its own fd table).
    fd: RawFd,
    parent_fd: RawFd,
    child: usize,
    barrier: Barrier,
}

/// In the root of a program with a `clone`, before its first op: makes the kits and captures
/// the baseline again, so that snapshots leave them out like every harness mapping. Made
/// here, not in every root, because they cost: with kits in every root, forks and exits took
/// twice as long (`bench --core`: 4240 us a program against 2170 us), their mappings and
/// touched pages copied at every fork.
pub(super) fn prepare(s: &mut Scratch) {
    make_kits(s);
    capture_baseline(s);
}

/// Makes the kits, once per process. Without them (a map failed) a `clone` is refused: a
/// harness error, never a kernel's.
fn make_kits(first: &Scratch) {
    if !KIT_TABLE.load(Ordering::Relaxed).is_null() {
        return;
    }
    let mut kits = Vec::with_capacity(KITS);
    for k in 0..KITS {
        // SAFETY: a fresh private anonymous mapping, owned by the kit for the process's life.
        let stack = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if stack == libc::MAP_FAILED {
            break;
        }
        per_proc::set_stack(k, stack as u64, stack as u64 + STACK as u64);
        kits.push(Kit {
            taken: AtomicBool::new(false),
            scratch: first.spare(),
            fd: -1,
            parent_fd: -1,
            child: 0,
            barrier: Barrier::default(),
        });
    }
    KIT_COUNT.store(kits.len(), Ordering::Relaxed);
    KIT_TABLE.store(
        Box::leak(kits.into_boxed_slice()).as_mut_ptr(),
        Ordering::Release,
    );
}

/// How a CLONE_VM request went.
pub(super) enum Cloned {
    /// The child's pid.
    Parent(i32),
    /// clone failed with this errno.
    Failed(i32),
    /// No socket was passed, or no kit is left (a harness error).
    Refused,
}

/// The child: its `Scratch` set up as a fork child's is, its parent's socket closed in its own
/// fd table, its first view sent unasked, then the worker loop (never returns).
extern "C" fn child_main(arg: *mut c_void) -> libc::c_int {
    // SAFETY: `arg` is the kit its parent took for this child; only this child uses it now.
    let kit = unsafe { &mut *(arg as *mut Kit) };
    // SAFETY: this process's own copy of the parent's socket, which it never uses.
    unsafe { libc::close(kit.parent_fd) };
    let fd = kit.fd;
    // A clone made by an op thread inherits that thread's mask, beside the worker's CPU, and
    // this child serves ops (and forks) for the rest of its life: back to the job's home
    // (`kernel::cpus`; the mask was made at the executor's start, nothing allocates).
    crate::kernel::cpus::rehome();
    let s = &mut kit.scratch;
    s.is_root = false;
    s.maps.after_fork();
    s.take_slot(kit.child);
    s.at = 0;
    s.set_unsent(0);
    PENDING_PASS.store(0, Ordering::Relaxed);
    FAULT_AT.store(0, Ordering::Relaxed);
    PARTIAL.store(0, Ordering::Relaxed);
    FAULT_FD.store(fd, Ordering::Relaxed);
    view_and_send(fd, s, kit.barrier);
    match ENTRY.get() {
        Some(serve) => serve(fd, s),
        // SAFETY: _exit is always safe to call (never here: the parent ran `serve`).
        None => unsafe { libc::_exit(1) },
    }
}

/// `s`'s process starts the child of handle `child` in its own address space; the child's
/// socket is the one passed with this message.
pub(super) fn clone_vm(fd: RawFd, s: &mut Scratch, child: usize, barrier: Barrier) -> Cloned {
    let theirs = std::mem::replace(&mut s.passed_fd, -1);
    if theirs < 0 {
        return Cloned::Refused;
    }
    let table = KIT_TABLE.load(Ordering::Acquire);
    let count = KIT_COUNT.load(Ordering::Relaxed);
    // SAFETY: the kits were made before the zygote and live for the process's life.
    let kits =
        unsafe { std::slice::from_raw_parts_mut(table, if table.is_null() { 0 } else { count }) };
    let Some(k) = kits.iter().position(|k| {
        k.taken
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }) else {
        // SAFETY: the child's socket, which nobody will use.
        unsafe { libc::close(theirs) };
        return Cloned::Refused;
    };
    per_proc::taken();
    let kit = &mut kits[k];
    kit.fd = theirs;
    kit.parent_fd = fd;
    kit.child = child;
    kit.barrier = barrier;
    kit.scratch.inherit(s);
    let top = per_proc::stack_top(k) & !15;
    // SAFETY: the child runs `child_main` on the kit's own stack, which nothing else uses,
    // with the kit as its argument; it never returns into this frame (it ends by `_exit` or a
    // signal, in `serve`).
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut c_void,
            libc::CLONE_VM | libc::SIGCHLD,
            kit as *mut Kit as *mut c_void,
        )
    };
    let errno = nix::errno::Errno::last() as i32;
    // SAFETY: the child's socket is the child's (in its own fd table); this process does not
    // use it.
    unsafe { libc::close(theirs) };
    if pid < 0 {
        return Cloned::Failed(errno);
    }
    Cloned::Parent(pid)
}

impl Scratch {
    /// A spare `Scratch` for a kit: buffers of its own, the same shared slots.
    fn spare(&self) -> Scratch {
        Scratch::build(self.copy.clone(), self.page_size)
    }

    /// What a clone child takes from its parent's `Scratch` (as a fork child finds it in its
    /// copy): the baseline, the program's pipe and /dev/zero descriptor (the same numbers in
    /// its copy of the fd table), and how views read pages. Copies, never allocates.
    fn inherit(&mut self, parent: &Scratch) {
        let n = parent.baseline_len.min(self.baseline.len());
        self.baseline[..n].copy_from_slice(&parent.baseline[..n]);
        self.baseline_len = n;
        self.pipe = parent.pipe;
        self.zero_fd = parent.zero_fd;
        self.direct_reads = parent.direct_reads;
        self.smaps = false;
        self.passed_fd = -1;
    }
}

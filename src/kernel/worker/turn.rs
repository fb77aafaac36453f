//! The tree's board: one shared page after the slots (`slots`), holding the turn word (`Turn`),
//! which orders the steps of a program across processes, the views taken for the current
//! snapshot, and the address of every mapping handle in this program (`Board`). This file
//! owns the board's layout and the futex waits and wakes on the turn word; nothing here
//! allocates, and `Turn::pass` is async-signal-safe (the fault handler passes a dead worker's
//! turn).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::kernel::protocol::Barrier;
use crate::program::{At, MapId, caps};

/// The turn word of a tree, shared by the coordinator and every worker: a counter that only
/// grows. It lets the coordinator send a batch to its worker before the batch before it has
/// run: the worker waits (AWAIT t) until the turn reaches t, and the worker of the batch
/// before passes it (PASS t) when done, so that the next batch starts on one wakeup instead
/// of two (worker to coordinator to worker). Passing is idempotent (the turn becomes the
/// larger of the two), so a dead or hung worker's pass can be made by the fault handler or the
/// coordinator without ever running a batch twice. Values are unique for the executor's life.
#[derive(Clone, Copy)]
pub struct Turn(pub(super) *const AtomicU32);

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

    /// Waits until the turn is at least `t`. Every `COORDINATOR_CHECK_SECONDS` of waiting, it looks
    /// whether the coordinator's end of `fd` is still open, and ends the process if it is not:
    /// a worker parked on a turn reads no socket, so it would never see the end of file that
    /// ends every other worker of a run whose executor was killed.
    pub(super) fn wait(&self, t: u32, fd: i32) {
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
            // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline (futex(2)).
            let mut deadline = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes the timespec on our stack.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut deadline) };
            deadline.tv_sec += COORDINATOR_CHECK_SECONDS;
            // SAFETY: FUTEX_WAIT_BITSET on a word of shared memory, while it still holds
            // `now`, until the deadline on our stack.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.0,
                    libc::FUTEX_WAIT_BITSET,
                    now,
                    &deadline as *const libc::timespec,
                    0,
                    Self::bit(t),
                )
            };
            if r != 0
                && nix::errno::Errno::last() == nix::errno::Errno::ETIMEDOUT
                && coordinator_gone(fd)
            {
                // SAFETY: _exit is always safe to call.
                unsafe { libc::_exit(0) };
            }
        }
    }
}

/// The longest a late viewer waits for the others' views (`Board::await_earlier_views`).
const LATE_WAIT_NS: u64 = 200_000_000;

/// CLOCK_MONOTONIC in nanoseconds.
fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec on our stack.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// How long a worker waits for a turn between two looks at its coordinator (seconds).
const COORDINATOR_CHECK_SECONDS: libc::time_t = 1;

/// Whether the coordinator's end of the socket `fd` is closed (hang-up or error), without
/// reading anything.
pub(super) fn coordinator_gone(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: poll on one pollfd on our stack, without waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// Byte offsets in the board page (after the slots): the turn word, then per process handle
/// the serial of the last snapshot it looked at itself for (`barrier`), then per mapping
/// handle its address in this program (0: none).
const BOARD_VIEWED: usize = 64;
const BOARD_BASES: usize = 256;
/// Where the allocator ranges of a program are published (`alloc.rs`): a count, then pairs.
pub(super) const BOARD_ALLOC: usize = 1024;

/// The board of a tree: turn, views taken, mapping addresses (see the offsets above).
#[derive(Clone, Copy)]
pub struct Board(pub(super) *mut u8);

impl Board {
    fn viewed(&self, proc: usize) -> &AtomicU32 {
        // SAFETY: proc < MAX_PROCS, so the word lies on the board page, which lives for the
        // process's life; u32 atomics at 4-byte aligned offsets.
        unsafe { &*(self.0.add(BOARD_VIEWED + 4 * proc) as *const AtomicU32) }
    }

    fn base(&self, map: usize) -> &AtomicU64 {
        // SAFETY: map < MAX_MAPS, so the word lies on the board page (8-byte aligned).
        unsafe { &*(self.0.add(BOARD_BASES + 8 * map) as *const AtomicU64) }
    }

    /// Forgets the previous program's mapping addresses (before a program's first request).
    pub fn clear_bases(&self) {
        for m in 0..caps::MAX_MAPS {
            self.base(m).store(0, Ordering::Release);
        }
        // The allocator ranges published by the last program (`alloc.rs`): none.
        // SAFETY: the count word lies on the board page (8-byte aligned).
        unsafe { &*(self.0.add(BOARD_ALLOC) as *const AtomicU64) }.store(0, Ordering::Release);
    }

    /// The address of page `at.page` of mapping `at.map` in this program (`ps` bytes a page),
    /// and `at.byte` bytes into it; `None` if the mapping has no address (its map never ran, or
    /// failed).
    #[inline]
    pub(super) fn address(&self, at: At, ps: usize) -> Option<u64> {
        let map = at.map.0 as usize;
        if map >= caps::MAX_MAPS {
            return None;
        }
        match self.base(map).load(Ordering::Acquire) {
            0 => None,
            base => Some(
                base.wrapping_add((at.page as u64).wrapping_mul(ps as u64))
                    .wrapping_add(at.byte as u64),
            ),
        }
    }

    /// Enters the address an op's result names as handle `map` (0 when the op failed).
    #[inline]
    pub(super) fn enter(&self, map: MapId, r: &Result<u64, nix::errno::Errno>) {
        if (map.0 as usize) < caps::MAX_MAPS {
            self.base(map.0 as usize)
                .store(*r.as_ref().unwrap_or(&0), Ordering::Release);
        }
    }

    /// Before this process (handle `me`) looks at itself for the snapshot of `b`: if it is one
    /// of the snapshot's `late` viewers, waits until every other viewer has noted its view
    /// (`schedule::late_viewers` says why), for at most `LATE_WAIT_NS`: a viewer that never
    /// looks (it died, or its fork failed) costs that once, and the views then run in
    /// whatever order they come, as they do without a clone. Nothing here allocates.
    pub(super) fn await_earlier_views(&self, me: usize, b: Barrier) {
        if b.serial == 0 || me >= 32 || b.late & (1 << me) == 0 {
            return;
        }
        let earlier = b.mask & !b.late;
        let done = || {
            (0..32)
                .filter(|q| earlier & (1 << q) != 0)
                .all(|q| self.viewed(q).load(Ordering::SeqCst) == b.serial)
        };
        let start = monotonic_ns();
        let mut looks = 0u32;
        while !done() {
            if monotonic_ns().saturating_sub(start) > LATE_WAIT_NS {
                return;
            }
            super::futex::back_off(&mut looks);
        }
    }

    /// After this process (handle `me`) sent its view for the snapshot with this serial:
    /// notes it, and if every process in `mask` has, passes the turn `next` (the snapshot
    /// is complete: the next batch may run). Every viewer checks after noting itself, so the
    /// last one passes (perhaps more than one: passing is idempotent). A viewer that died
    /// never notes itself; the coordinator passes once it has read every view.
    pub(super) fn barrier(&self, turn: Turn, me: usize, b: Barrier) {
        let Barrier {
            serial, mask, next, ..
        } = b;
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

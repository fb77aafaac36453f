//! The hugetlb pool of a run (docs/SEMANTICS.md L7): as root, each executor adds a small share
//! of huge pages to `vm.nr_hugepages` for its life and takes exactly that share back, whatever
//! way it ends, and the probe says whether hugetlb maps can be made here.
//!
//! Several executors (`--jobs N`, parallel tests) share the one system-wide pool, so nobody
//! sets it to a value: each adds its share and later subtracts what it got, both under an
//! exclusive `flock` on the sysctl file itself, so that the additions and subtractions of
//! concurrent executors never interleave. Every live share has a line in a ledger
//! (`ledger`, `/run/cowcheck/hugetlb-pool`) keyed by the executor's pid and start time,
//! changed under the same lock. The executor gives its share back when it ends (the
//! [`Lease`]'s drop); the guardian, which outlives it, gives it back if the executor was
//! killed first (SIGKILL included), naming it through the guardian's shared page
//! (`Guardian::pool_slot`); and whatever killed both (a test harness that SIGKILLs every
//! process of a run, found by `tests/hugetlb_pool.rs`), the next sweep gives it back: every
//! executor sweeps as it starts, and the front sweeps after it stops an executor, so that the
//! pool is back when `cowcheck` returns. The line goes with the pages, so a share goes back
//! once. Without a ledger (a VM guest without a writable `/run`) the share is taken as before,
//! given back by the executor or its guardian only. Without root, without the sysctl, or
//! without a guardian to stand behind it, nothing is changed and hugetlb is used only if a
//! pool is already there.
//!
//! Everything here makes raw system calls on stack buffers, with no allocation: the guardian
//! calls [`give_back`] in its forked child.

mod ledger;

use ledger::Ledger;
pub use ledger::{Key, Share, shares};

const NR_HUGEPAGES: &std::ffi::CStr = c"/proc/sys/vm/nr_hugepages";

/// Huge pages each executor adds to the pool for its life: a program maps at most
/// `caps::MAX_BIG_PAGES` pages in maps past the classic cap (four 2 MiB pages), and forks copy
/// some of them; running short is an allowed outcome the model learns (ENOMEM, SIGBUS: L9).
pub const SHARE: i32 = 8;

/// The sysctl, opened for reading and writing and locked (LOCK_EX) until dropped.
struct Locked(i32);

impl Locked {
    fn open() -> Option<Locked> {
        // SAFETY: open of a constant path; flock on the descriptor we own.
        unsafe {
            let fd = libc::open(NR_HUGEPAGES.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
            if fd < 0 {
                return None;
            }
            while libc::flock(fd, libc::LOCK_EX) != 0 {
                if *libc::__errno_location() != libc::EINTR {
                    libc::close(fd);
                    return None;
                }
            }
            Some(Locked(fd))
        }
    }

    fn read(&self) -> Option<i64> {
        let mut buf = [0u8; 32];
        // SAFETY: reads into our stack buffer.
        let n = unsafe { libc::pread(self.0, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if n <= 0 {
            return None;
        }
        let mut v: i64 = 0;
        let mut any = false;
        for &b in &buf[..n as usize] {
            match b {
                b'0'..=b'9' => {
                    v = v.checked_mul(10)?.checked_add((b - b'0') as i64)?;
                    any = true;
                }
                _ => break,
            }
        }
        any.then_some(v)
    }

    fn write(&self, v: i64) -> bool {
        let mut buf = [0u8; 24];
        let mut i = buf.len();
        let mut x = v.max(0);
        buf[i - 1] = b'\n';
        i -= 1;
        loop {
            i -= 1;
            buf[i] = b'0' + (x % 10) as u8;
            x /= 10;
            if x == 0 {
                break;
            }
        }
        let text = &buf[i..];
        // SAFETY: writes our stack buffer.
        let n =
            unsafe { libc::pwrite(self.0, text.as_ptr() as *const libc::c_void, text.len(), 0) };
        n == text.len() as isize
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: closing our own descriptor releases the lock.
        unsafe { libc::close(self.0) };
    }
}

/// What an executor holds of the pool, in the guardian's shared page
/// (`Guardian::pool_slot`), so that the guardian can name the executor's share after its death.
#[repr(C)]
pub struct Slot {
    /// Huge pages the executor added (0: none).
    pub pages: i32,
    /// The executor's pid and start time: its key in the ledger.
    pub pid: i32,
    pub start: u64,
    /// 1 when the share has a line in the ledger; 0 when no ledger could be had (a VM guest
    /// without a writable `/run`): the share is then given back from the slot alone.
    pub ledgered: i32,
}

/// Gives back the share of the executor `slot` names (its line in the ledger), if it is still
/// there, and clears the slot, under the lock: called by the executor as it ends, by the
/// guardian after it, and by the executor at once when its guardian is found dead.
///
/// # Safety
///
/// `slot` is null or points to a [`Slot`] of shared memory that stays mapped for the caller's
/// life, accessed only under the lock.
pub unsafe fn give_back(slot: *mut Slot) {
    if slot.is_null() {
        return;
    }
    let Some(lock) = Locked::open() else {
        return;
    };
    // SAFETY: the slot is in the guardian's shared page, alive for our life; every access to
    // it happens under the lock.
    let (pages, key, ledgered) = unsafe {
        let s = &*slot;
        (
            std::ptr::read_volatile(&s.pages),
            Key {
                pid: std::ptr::read_volatile(&s.pid),
                start: std::ptr::read_volatile(&s.start),
            },
            std::ptr::read_volatile(&s.ledgered) != 0,
        )
    };
    if pages > 0 && ledgered {
        give_back_locked(&lock, |s| s.key == key);
    } else if pages > 0
        && let Some(now) = lock.read()
    {
        lock.write(now - pages as i64);
    }
    // SAFETY: as above.
    unsafe { std::ptr::write_volatile(&mut (*slot).pages, 0) };
}

/// Gives back the share of every executor that is no longer running (docs/SEMANTICS.md L7):
/// whatever killed an executor and its guardian, its share goes back at the next sweep. Each
/// executor sweeps as it starts; the front sweeps after it has stopped an executor, so that
/// the pool is back when `cowcheck` returns. Nothing without root or without a ledger.
pub fn sweep() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    if let Some(lock) = Locked::open() {
        give_back_locked(&lock, |s| !s.key.alive());
    }
}

/// Under the lock: lowers the pool by the pages of the ledger's shares that `stale` picks,
/// and removes their lines ([`Ledger::remove_stale`] asks `stale` once per line: whether an
/// executor is alive changes while we look). The pool first: killed between the two (SIGKILL
/// cannot wait), a share may go back twice (the pool is never lowered below 0), but is never
/// left behind.
fn give_back_locked(lock: &Locked, stale: impl Fn(&Share) -> bool) -> i64 {
    let Some(mut ledger) = Ledger::open(false) else {
        return 0;
    };
    let Some(pages) = ledger.remove_stale(stale) else {
        return 0;
    };
    if pages > 0
        && let Some(now) = lock.read()
    {
        lock.write(now - pages);
    }
    ledger.commit();
    pages
}

/// The executor's share of the pool: added by [`Lease::take`], given back when dropped (and by
/// the guardian if the executor dies first, or by the next sweep if both are killed).
pub struct Lease {
    slot: *mut Slot,
}

impl Lease {
    /// As root, with a guardian's `slot` to record it in, gives back the shares of dead
    /// executors (a sweep), then adds [`SHARE`] huge pages to the pool and records how many
    /// the kernel actually added (fewer when memory is fragmented), in the ledger and in the
    /// slot (without a ledger, in the slot alone).
    ///
    /// # Safety
    ///
    /// As for [`give_back`]: `slot` is null or a [`Slot`] of shared memory alive for our life.
    pub unsafe fn take(slot: *mut Slot) -> Lease {
        let lease = Lease { slot };
        // SAFETY: geteuid has no preconditions.
        if slot.is_null() || unsafe { libc::geteuid() } != 0 {
            return lease;
        }
        let Some(lock) = Locked::open() else {
            return lease;
        };
        give_back_locked(&lock, |s| !s.key.alive());
        let key = Key::own();
        // The line first, with the whole share: killed between the two writes, this executor
        // is given back a share the pool may not have had (at worst another executor's share
        // is cut short, an outcome the model allows: L9), never leaves one behind. Without a
        // ledger (a VM guest without a writable `/run`), the share is taken as before the
        // ledger existed: the executor and its guardian still give it back.
        let mut share = Share { key, pages: SHARE };
        let mut ledger = Ledger::open(true);
        if let Some(l) = ledger.as_mut()
            && !(l.rewrite(|_| true, Some(share)) && l.commit())
        {
            ledger = None;
        }
        let Some(before) = lock.read() else {
            if let Some(l) = ledger.as_mut() {
                l.rewrite(|s| s.key != key, None);
                l.commit();
            }
            return lease;
        };
        let wrote = lock.write(before + SHARE as i64);
        let after = lock.read().unwrap_or(before);
        share.pages = if wrote {
            (after - before).clamp(0, SHARE as i64) as i32
        } else {
            0
        };
        if let Some(l) = ledger.as_mut() {
            if share.pages > 0 {
                l.rewrite(|_| true, Some(share));
            } else {
                l.rewrite(|s| s.key != key, None);
            }
            l.commit();
        }
        // SAFETY: the guardian's shared page, under the lock (see `give_back`).
        unsafe {
            std::ptr::write_volatile(&mut (*slot).pid, key.pid);
            std::ptr::write_volatile(&mut (*slot).start, key.start);
            std::ptr::write_volatile(&mut (*slot).ledgered, ledger.is_some() as i32);
            std::ptr::write_volatile(&mut (*slot).pages, share.pages);
        }
        lease
    }

    /// Huge pages this executor added to the pool (0: none).
    pub fn pages(&self) -> i32 {
        if self.slot.is_null() {
            return 0;
        }
        // SAFETY: the guardian's shared page, alive for our life.
        unsafe { std::ptr::read_volatile(&(*self.slot).pages) }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // SAFETY: the slot `take` was given, alive for our life.
        unsafe { give_back(self.slot) };
    }
}

/// Whether an executor started now would add a share to the pool: root, the sysctl, and a
/// default huge page of `caps::HUGETLB_PAGES` base pages. For the front's environment report,
/// which runs no executor (`env::Environment::detect`); the executor's hello has the last word.
pub fn can_add(page_size: usize) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || Locked::open().is_none() {
        return false;
    }
    huge_page_matches(page_size)
}

/// Whether the default huge page (`Hugepagesize` in /proc/meminfo) is `caps::HUGETLB_PAGES`
/// base pages.
fn huge_page_matches(page_size: usize) -> bool {
    let huge = crate::program::caps::HUGETLB_PAGES as usize * page_size;
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else {
        return false;
    };
    let size_kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok());
    size_kb == Some(huge / 1024)
}

/// Whether anonymous hugetlb maps can be made here (`Features::hugetlb`): the default huge page
/// is `caps::HUGETLB_PAGES` base pages (`Hugepagesize` in /proc/meminfo), a private
/// MAP_HUGETLB mapping of one huge page can be made (a page can be reserved), and it is a real
/// hugetlb mapping: unmapping its first base page alone is EINVAL (L8), which a runtime that
/// ignores MAP_HUGETLB would allow.
pub fn usable(page_size: usize) -> bool {
    let huge = crate::program::caps::HUGETLB_PAGES as usize * page_size;
    if !huge_page_matches(page_size) {
        return false;
    }
    // SAFETY: a fresh mapping of the kernel's choosing, never touched, unmapped before return.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            huge,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return false;
        }
        let partial = libc::munmap(p, page_size);
        let refused = partial != 0 && *libc::__errno_location() == libc::EINVAL;
        if partial == 0 {
            libc::munmap(
                (p as usize + page_size) as *mut libc::c_void,
                huge - page_size,
            );
        } else {
            libc::munmap(p, huge);
        }
        refused
    }
}

//! The rounds of the racing advice and fault kinds (docs/SEMANTICS.md T15-T17): a `free`
//! thread `madvise(MADV_FREE)`s its page, a `pageout` thread `madvise(MADV_PAGEOUT)`s it, and a
//! `fault` thread loads its page's last word, stores the round's number there and zaps the page
//! with MADV_DONTNEED, so that its next round faults a fresh page in (a read fault, then a write
//! fault's copy, on a private page: the fault path that K15 raced against fork). Called from
//! `thread.rs`'s round; like it, nothing here allocates or takes a lock.

use std::ffi::c_void;

use crate::program::RaceKind;
use crate::program::tables::madv;

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// One round of a `free` or `pageout` thread on the page at `page` (T15, T16): one madvise of
/// the page. `Err(errno)` if it failed.
pub(super) fn advise(kind: RaceKind, page: u64, page_size: usize) -> Result<(), i32> {
    let advice = if kind == RaceKind::Free {
        libc::MADV_FREE
    } else {
        madv::PAGEOUT
    };
    // SAFETY: advice on the program's page that the race names; the kernel checks the range.
    let r = unsafe { libc::madvise(page as *mut c_void, page_size, advice) };
    if r == 0 { Ok(()) } else { Err(errno()) }
}

/// Round `n` (1, 2, ...) of a `fault` thread on the word at `addr` (T17): a load, the store of
/// `n`, then (but on the `last` round, which starts after `stop` was asked) MADV_DONTNEED of the
/// page. `Err(errno)` if the madvise failed.
pub(super) fn fault(addr: u64, page_size: usize, n: u64, last: bool) -> Result<(), i32> {
    // SAFETY: a load and a store of the program's word that the race names (the validator
    // keeps its process from storing, unmapping or protecting while the thread runs); a fault
    // here is the process's death, as a worker's own access's would be.
    unsafe {
        std::ptr::read_volatile(addr as *const u64);
        std::ptr::write_volatile(addr as *mut u64, n);
    }
    if last {
        return Ok(());
    }
    let page = addr - (addr % page_size as u64);
    // SAFETY: advice on the program's page that the race names; the kernel checks the range.
    let r = unsafe { libc::madvise(page as *mut c_void, page_size, libc::MADV_DONTNEED) };
    if r == 0 { Ok(()) } else { Err(errno()) }
}

//! The physical channel, read by each process about itself (docs/SEMANTICS.md I2 to I10): a
//! `/proc/self/pagemap` word per page of its program's mappings, read with one `pread` per
//! region before the pages are digested, and, where the kernel has it (6.7+), one
//! `PAGEMAP_SCAN` ioctl per region telling which present pages are the shared zero page
//! (what pagemap alone says only with PFNs, as root), and one `mincore` per region
//! (`accounting`). What the executor probed at start
//! (`probe`) decides what is read; what cannot be read is left out (no words) and the
//! checker says it was skipped. Nothing here allocates.
//!
//! Snapshots digest pages through `/proc/self/mem` while this channel runs (`MemReader`), not
//! with `process_vm_readv`: that call pins the pages it reads (`pin_user_pages_remote`), and a
//! read-only pin of an anonymous page shared copy-on-write unshares it (mm/gup.c:
//! gup_must_unshare()), which would give the reader a copy of every page it shares with a
//! fork relative at every snapshot, and so change the very sharing this channel checks
//! (measured on 6.18: after fork, process_vm_readv on a shared page changed its PFN and set
//! its exclusive bit; a read through /proc/self/mem, a plain get_user_pages without FOLL_PIN,
//! and a plain load changed neither).

use std::sync::atomic::{AtomicU32, Ordering};

use crate::program::physical::{Channels, Skip, pm};

/// What runs in the workers: bit 0 pagemap, bit 1 PAGEMAP_SCAN (set once by the executor,
/// before the zygote is forked).
static ON: AtomicU32 = AtomicU32::new(0);
const PAGEMAP: u32 = 1;
const SCAN: u32 = 2;
const MINCORE: u32 = 4;
const SMAPS: u32 = 8;

/// Whether snapshots read /proc/self/smaps after the pagemap words (I11).
pub(super) fn smaps_on() -> bool {
    ON.load(Ordering::Relaxed) & SMAPS != 0
}

/// Whether snapshots read the pagemap (and digest through /proc/self/mem).
pub(super) fn pagemap_on() -> bool {
    ON.load(Ordering::Relaxed) & PAGEMAP != 0
}

/// The uapi of the PAGEMAP_SCAN ioctl, include/uapi/linux/fs.h (since 6.7): the ioctl number,
/// `PAGE_IS_PFNZERO`, `struct page_region` and `struct pm_scan_arg` as defined there.
mod uapi {
    /// `_IOWR('f', 16, struct pm_scan_arg)` with a 96-byte argument.
    pub const PAGEMAP_SCAN: libc::c_ulong = 0xC060_6610;
    pub const PAGE_IS_PFNZERO: u64 = 1 << 5;
    pub const PAGE_IS_HUGE: u64 = 1 << 6;

    /// `struct page_region`.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    pub struct PageRegion {
        pub start: u64,
        pub end: u64,
        pub categories: u64,
    }

    /// `struct pm_scan_arg`.
    #[repr(C)]
    #[derive(Default)]
    pub struct PmScanArg {
        pub size: u64,
        pub flags: u64,
        pub start: u64,
        pub end: u64,
        pub walk_end: u64,
        pub vec: u64,
        pub vec_len: u64,
        pub max_pages: u64,
        pub category_inverted: u64,
        pub category_mask: u64,
        pub category_anyof_mask: u64,
        pub return_mask: u64,
    }
}

/// An open `/proc/self/<name>` of this very process (opened after fork: a descriptor opened
/// by a parent names the parent's memory), closed on drop.
struct SelfFile(i32);

impl SelfFile {
    fn open(path: &core::ffi::CStr) -> Option<SelfFile> {
        // SAFETY: a NUL-terminated path.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        (fd >= 0).then_some(SelfFile(fd))
    }

    /// Reads up to `buf.len()` bytes at `offset`; the count read, or `None` on an error.
    fn pread(&self, buf: &mut [u8], offset: u64) -> Option<usize> {
        // SAFETY: `buf` is our writable buffer of that length.
        let n = unsafe {
            libc::pread(
                self.0,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                offset as libc::off_t,
            )
        };
        (n >= 0).then_some(n as usize)
    }
}

impl Drop for SelfFile {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.0) };
    }
}

/// The pagemap words of `[start, end)` into `out` (one per page), with `pm::ZERO_PAGE` added
/// where PAGEMAP_SCAN says the page is the zero page; `scratch` holds the ioctl's regions.
/// `false` if anything could not be read (then nothing of it is sent).
pub(super) fn read_pagemap(
    out: &mut [u64],
    ranges: impl Iterator<Item = (u64, u64)>,
    ps: u64,
    scratch: &mut [u8],
) -> bool {
    let Some(f) = SelfFile::open(c"/proc/self/pagemap") else {
        return false;
    };
    let scan = ON.load(Ordering::Relaxed) & SCAN != 0;
    let mut at = 0usize;
    for (start, end) in ranges {
        let n = ((end - start) / ps) as usize;
        let words = &mut out[at..at + n];
        // SAFETY: a u64 slice seen as its bytes, for the read to fill.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, words.len() * 8)
        };
        if f.pread(bytes, start / ps * 8) != Some(n * 8) {
            return false;
        }
        if scan && !mark_zero_pages(&f, words, start, end, ps, scratch) {
            return false;
        }
        if ON.load(Ordering::Relaxed) & MINCORE != 0
            && !super::accounting::mark_resident(words, start, ps, scratch)
        {
            return false;
        }
        at += n;
    }
    true
}

/// Sets `pm::ZERO_PAGE` in the words of `[start, end)` that PAGEMAP_SCAN reports as
/// PAGE_IS_PFNZERO, and `pm::HUGE` in those it reports as PAGE_IS_HUGE (mapped by a PMD, I20),
/// in the same ioctl (fs/proc/task_mmu.c: pagemap_page_category()).
fn mark_zero_pages(
    f: &SelfFile,
    words: &mut [u64],
    start: u64,
    end: u64,
    ps: u64,
    scratch: &mut [u8],
) -> bool {
    let cap = scratch.len() / std::mem::size_of::<uapi::PageRegion>();
    let vec = scratch.as_mut_ptr() as *mut uapi::PageRegion;
    let mut from = start;
    while from < end {
        let mut arg = uapi::PmScanArg {
            size: std::mem::size_of::<uapi::PmScanArg>() as u64,
            start: from,
            end,
            vec: vec as u64,
            vec_len: cap as u64,
            category_anyof_mask: uapi::PAGE_IS_PFNZERO | uapi::PAGE_IS_HUGE,
            return_mask: uapi::PAGE_IS_PFNZERO | uapi::PAGE_IS_HUGE,
            ..Default::default()
        };
        // SAFETY: `arg` describes our scratch buffer of `cap` regions, which the kernel fills.
        let n = unsafe { libc::ioctl(f.0, uapi::PAGEMAP_SCAN as _, &mut arg) };
        if n < 0 {
            return false;
        }
        for i in 0..n as usize {
            // SAFETY: the kernel wrote `n` regions into the buffer (an unaligned read: the
            // buffer is only byte-aligned as far as the type knows).
            let r = unsafe { std::ptr::read_unaligned(vec.add(i)) };
            let mut bits = 0;
            if r.categories & uapi::PAGE_IS_PFNZERO != 0 {
                bits |= pm::ZERO_PAGE;
            }
            if r.categories & uapi::PAGE_IS_HUGE != 0 {
                bits |= pm::HUGE;
            }
            let mut a = r.start.max(start);
            while a < r.end.min(end) {
                words[((a - start) / ps) as usize] |= bits;
                a += ps;
            }
        }
        if arg.walk_end <= from || arg.walk_end >= end {
            break;
        }
        from = arg.walk_end;
    }
    true
}

/// Reads this process's own pages through /proc/self/mem while the channel runs (see the
/// module header): a page that cannot be read (a guard page, shmem past its end) ends the read
/// there, as with `process_vm_readv`.
pub(super) struct MemReader(Option<SelfFile>);

impl MemReader {
    pub(super) fn open() -> MemReader {
        MemReader(if pagemap_on() {
            SelfFile::open(c"/proc/self/mem")
        } else {
            None
        })
    }

    /// `Some(bytes read before the first unreadable page)`, or `None` when not in use (the
    /// caller copies another way).
    pub(super) fn copy(&self, buf: &mut [u8], addr: u64) -> Option<usize> {
        let f = self.0.as_ref()?;
        Some(f.pread(buf, addr).unwrap_or(0))
    }
}

/// Probes the channel once, in the executor before anything is forked (in a child of its own,
/// `probe_in_child`), on scratch pages (one written, one read): whether pagemap can be read and shows the written page
/// present, whether it gives PFNs, and whether PAGEMAP_SCAN knows the read one for the zero
/// page. Sets what the workers read, and returns it for the hello. With `smaps_off`, smaps is
/// not read (`Skip::SmapsOff`: a campaign that did not ask for it).
pub fn probe(ps: usize, off: Option<Skip>, smaps_off: bool) -> Channels {
    if let Some(why) = off {
        return Channels::off(why);
    }
    // The mode the kernel shows as `[always]` among `always madvise never`
    // (Documentation/admin-guide/mm/transhuge.rst); unreadable (no THP) is not `always`.
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
    if thp.is_ok_and(|s| s.contains("[always]")) {
        return Channels {
            cgroup: Err(super::accounting::cgroup_skip()),
            ..Channels::off(Skip::ThpAlways)
        };
    }
    let mut channels = probe_in_child(ps);
    if smaps_off && channels.smaps.is_ok() {
        channels.smaps = Err(Skip::SmapsOff);
    }
    let mut on = 0;
    if channels.pagemap.is_ok() {
        on |= PAGEMAP;
    }
    if channels.scan.is_ok() {
        on |= SCAN;
    }
    if channels.mincore.is_ok() {
        on |= MINCORE;
    }
    if channels.smaps.is_ok() {
        on |= SMAPS;
    }
    ON.store(on, Ordering::Relaxed);
    channels
}

/// Runs `probe_pages` in a child process, which says what it found in its exit status, so
/// that the probe's scratch mapping leaves no hole in the executor's own address space (the
/// zygote and every root inherit that layout, and a fault that maps past its range, like
/// libfault's mmap-more, must meet the same neighbours with the channel on or off).
fn probe_in_child(ps: usize) -> Channels {
    // SAFETY: the child only makes async-signal-safe calls (mmap, open, pread, ioctl, munmap,
    // close) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let c = probe_pages(ps);
        let mut code = match c.pagemap {
            Ok(()) => 0,
            Err(Skip::NoPagemap) => 1,
            Err(_) => 2,
        };
        if c.scan.is_ok() {
            code |= 4;
        }
        if c.pfn.is_ok() {
            code |= 8;
        }
        if c.mincore.is_ok() {
            code |= 16;
        }
        if c.smaps.is_ok() {
            code |= 32;
        }
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(code) };
    }
    if pid < 0 {
        return Channels::off(Skip::NoPagemap);
    }
    let cgroup = Err(super::accounting::cgroup_skip());
    let mut status = 0;
    // SAFETY: waits for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r != pid || !libc::WIFEXITED(status) {
        return Channels::off(Skip::NoPagemap);
    }
    let code = libc::WEXITSTATUS(status);
    let pagemap = match code & 3 {
        0 => Ok(()),
        1 => {
            return Channels {
                cgroup,
                ..Channels::off(Skip::NoPagemap)
            };
        }
        _ => {
            return Channels {
                cgroup,
                ..Channels::off(Skip::NotOwnPages)
            };
        }
    };
    let swap = super::accounting::swap_on();
    Channels {
        pagemap,
        scan: if code & 4 != 0 {
            Ok(())
        } else {
            Err(Skip::NoIoctl)
        },
        pfn: if code & 8 != 0 {
            Ok(())
        } else {
            Err(Skip::NoPfn)
        },
        mincore: if code & 16 == 0 {
            Err(Skip::NoMincore)
        } else if swap {
            Err(Skip::Swap)
        } else {
            Ok(())
        },
        smaps: if code & 32 == 0 {
            Err(Skip::NoSmaps)
        } else if swap {
            Err(Skip::Swap)
        } else {
            Ok(())
        },
        cgroup,
    }
}

fn probe_pages(ps: usize) -> Channels {
    // SAFETY: a fresh private mapping of our own, removed below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * ps,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Channels::off(Skip::NoPagemap);
    }
    let base = p as u64;
    // SAFETY: the two pages just mapped: a store to the first, a load from the second.
    unsafe {
        std::ptr::write_volatile(p as *mut u8, 1);
        std::ptr::read_volatile((p as *const u8).add(ps));
    }
    let mut words = [0u64; 2];
    let mut regions = [0u8; 24 * 4];
    let result = (|| {
        let Some(f) = SelfFile::open(c"/proc/self/pagemap") else {
            return Channels::off(Skip::NoPagemap);
        };
        // SAFETY: the array seen as its 16 bytes.
        let bytes = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, 16) };
        if f.pread(bytes, base / ps as u64 * 8) != Some(16) {
            return Channels::off(Skip::NoPagemap);
        }
        if words[0] & pm::PRESENT == 0 || words[1] & pm::PRESENT == 0 {
            return Channels::off(Skip::NotOwnPages);
        }
        let pfn = if words[0] & pm::PFN != 0 {
            Ok(())
        } else {
            Err(Skip::NoPfn)
        };
        let mut marked = words;
        let scan = if mark_zero_pages(
            &f,
            &mut marked,
            base,
            base + 2 * ps as u64,
            ps as u64,
            &mut regions,
        ) && marked[0] & pm::ZERO_PAGE == 0
            && marked[1] & pm::ZERO_PAGE != 0
        {
            Ok(())
        } else {
            Err(Skip::NoIoctl)
        };
        let mincore = if super::accounting::probe_resident(base, ps as u64, &mut regions) {
            Ok(())
        } else {
            Err(Skip::NoMincore)
        };
        let mut lines = [0u8; 4096];
        let smaps = if super::accounting::probe_smaps(&mut lines, ps as u64) {
            Ok(())
        } else {
            Err(Skip::NoSmaps)
        };
        Channels {
            pagemap: Ok(()),
            scan,
            pfn,
            mincore,
            smaps,
            cgroup: Err(Skip::NoCgroupMemory),
        }
    })();
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(p, 2 * ps) };
    result
}

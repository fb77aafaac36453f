//! A process looking at itself: its layout from /proc/self/maps (outside the harness's own
//! baseline, merged as the model merges), and a digest of every readable page, copied with
//! `process_vm_readv` on itself (an unreadable page shows as `UNREADABLE` instead of killing
//! it) or, where the program cannot make a listed page fault, by plain loads; while the
//! physical channel runs, its pagemap words come first and pages are copied through
//! /proc/self/mem instead (`physical`). The view is built in the reply area as a
//! `Reply::View`, and nothing here allocates.

use std::ffi::c_void;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use super::Scratch;
use super::physical;
use super::slots::COPY_PAGES;
use super::socket::send_reply;
use super::turn::Turn;
use crate::kernel::protocol::{Barrier, REPLY_HEAD, Reply, region_flags, region_from_words};
use crate::program::outcome::{PROT_R, Region, UNREADABLE, digest};

/// Set once `process_vm_readv` turned out not to exist here (some emulators): pages are then
/// read directly.
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

/// Looks at itself and builds the view (the reply to SNAPSHOT) at the start of the reply area,
/// which must hold nothing unsent; returns its length in words.
fn take_view(s: &mut Scratch) -> usize {
    // A racing thread that changes the layout waits meanwhile (`thread::Racer::hold`, T11),
    // and so does every other process of this address space (`view_lock`, T31).
    let one_at_a_time = super::view_lock::ViewLock::take();
    s.racer.hold();
    let (regions, phys, pages) = snapshot(s);
    s.racer.release();
    drop(one_at_a_time);
    let head = match (regions, pages) {
        (Some(regions), Some(pages)) => Reply::View {
            regions,
            pages,
            phys,
        },
        _ => Reply::Refused,
    };
    s.reply[..REPLY_HEAD].copy_from_slice(&head.encode());
    REPLY_HEAD + head.payload_words()
}

/// Takes this process's view for the snapshot of `barrier` and sends it, marking it taken on
/// the board first (`Board::barrier`: the last viewer passes the next turn), so that the
/// next step does not wait for the message.
pub(super) fn view_and_send(fd: RawFd, s: &mut Scratch, barrier: Barrier) {
    // The first user of a shared address space looks after the others (T31).
    s.copy
        .view()
        .board()
        .await_earlier_views(s.copy.slot, barrier);
    let words = take_view(s);
    s.copy
        .view()
        .board()
        .barrier(Turn(s.copy.turn), s.copy.slot, barrier);
    send_reply(fd, &s.reply[..words], None);
}

/// The process's layout outside the baseline, normalised, then (where the physical channel
/// runs) a pagemap word per page of it, then a digest of each readable page. Returns
/// (regions, pagemap words, pages) counts written to the payload: regions as (start, end,
/// flags) triples, the words, then pages as (address, digest) pairs. `None` if the payload
/// would overflow.
fn snapshot(s: &mut Scratch) -> (Option<usize>, usize, Option<usize>) {
    let ps = s.page_size as u64;
    // Once the program's allocator ops made anything, the allocator's ranges are left out too
    // (`alloc.rs`).
    let baseline = if s.heap.has_owned() {
        &s.heap.excluded[..s.heap.excluded_len]
    } else {
        &s.baseline[..s.baseline_len]
    };
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
        return (None, 0, None);
    }
    // An unreadable layout shows as an empty one, which the checker reports.
    let _ = readable;
    // The physical channel first: digesting below faults pages in (I3).
    let mut nphys = 0usize;
    if physical::pagemap_on() {
        let (head, rest) = payload.split_at_mut(nregions * 3);
        let ranges = head.chunks_exact(3).map(|t| (t[0], t[1]));
        let total: usize = ranges.clone().map(|(a, b)| ((b - a) / ps) as usize).sum();
        // Left out (and the checker says so) when it would not fit beside the digests.
        if total * 3 <= rest.len() && physical::read_pagemap(rest, ranges, ps, s.copy.buf()) {
            nphys = total;
            // Then smaps, before the digests too (I11): its sums per region follow the words.
            let more = nregions * crate::program::physical::smaps::WORDS + 1;
            if physical::smaps_on()
                && s.smaps
                && total * 3 + more <= rest.len()
                && super::accounting::read_smaps(
                    head,
                    &mut rest[total..total + more - 1],
                    s.copy.buf(),
                )
            {
                // The trailer says the smaps words are there (`smaps::TRAILER`).
                rest[total + more - 1] = crate::program::physical::smaps::TRAILER | nregions as u64;
                nphys += more;
            }
        }
    }
    let mem = physical::MemReader::open();
    let mut npages = 0usize;
    let base = nregions * 3 + nphys;
    for i in 0..nregions {
        let Some(r) = region_from_words(payload[i * 3], payload[i * 3 + 1], payload[i * 3 + 2])
        else {
            continue;
        };
        if r.prot & PROT_R == 0 {
            continue;
        }
        if s.direct_reads {
            // Plain loads: no op of this program can make a listed-readable page fault (see
            // `Scratch::direct_reads`); if the kernel faults anyway, the handler reports it
            // and the process is missing from the snapshot, which the checker reports.
            if base + (npages + ((r.end - r.start) / ps) as usize) * 2 > payload.len() {
                return (None, 0, None);
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
                return (None, 0, None);
            }
            let copy = s.copy.buf();
            let buf = &mut copy[..n * ps as usize];
            let got = match mem.copy(buf, a) {
                Some(got) => got,
                None => copy_own(buf, a),
            };
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
    (Some(nregions), nphys, Some(npages))
}

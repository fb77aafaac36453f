//! The allocator ops (docs/SEMANTICS.md part 14): malloc, calloc, realloc, posix_memalign,
//! aligned_alloc, free, mallopt and malloc_trim, called through libc's symbols so that an
//! interposed allocator (`LD_PRELOAD`) is the one in the path; writes and reads of a block.
//!
//! **These ops allocate after fork, on purpose**: they are the program's own allocations, not
//! the worker's. Everything else the worker does still allocates nothing after fork; the
//! bookkeeping here lives in `Scratch::heap`, made before fork.
//!
//! The allocator's own memory (the mappings it makes for large blocks, its arenas, a grown
//! heap) is not the program's: around every allocator op the worker compares the address
//! ranges /proc/self/maps covers before and after, adds what appeared to the ranges it leaves
//! out of every snapshot's layout (with the harness's baseline) and drops from them what went
//! away. A block is observed only by the program's explicit reads. Forked children inherit
//! both the blocks and the ranges (the bookkeeping is copied with the rest of the process).
//!
//! The allocator must also never sit where the program looks for its own mappings: a process
//! reads, writes, unmaps or maps at a handle's address in a process that does not hold the
//! handle (SIGSEGV there is an outcome the model predicts), and Linux places the program's
//! mappings and the allocator's in the same gaps. So, around an allocator op, every handle's
//! window (its address and the 64 pages after it, `caps::MAX_MAP_PAGES`) that is free in this
//! process is held by a `PROT_NONE` placeholder, and the allocator's new ranges are published
//! on the tree's board; around a `map` or a moving `remap`, the published ranges (and the 64
//! pages below each, room for a handle to grow in place) that are free in this process are held
//! the same way. The placeholders go right after the call: the program never sees them.
//!
//! A span of a block names units of 4096 bytes from the block's first byte (`op/alloc.rs`):
//! the coordinator sends a `Write`/`Read` of a block as of a mapping (pages and bytes of a
//! page for a page size of `ps`), and `bytes_of` turns it into the block's byte range.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use nix::errno::Errno;

use super::fault::PARTIAL;
use super::turn::BOARD_ALLOC;
use super::{Board, Scratch};
use crate::kernel::protocol::{ByteRange, REPLY_HEAD, Reply};
#[cfg(target_env = "gnu")]
use crate::program::MalloptParam;
use crate::program::outcome::digest;
use crate::program::{ALLOC_UNIT, AllocCall, MapId, PageRange, Pattern, Tune, caps};

/// Address ranges kept per process: sorted, disjoint.
const RANGES: usize = 4096;

/// A worker's blocks and the allocator's address ranges.
pub(super) struct HeapState {
    /// The size of each live block by handle (0: not a live block of this process).
    sizes: [u32; caps::MAX_MAPS],
    /// The allocator's ranges: appeared during an allocator op, still mapped.
    owned: Box<[(u64, u64)]>,
    owned_len: usize,
    /// The baseline and the allocator's ranges, merged: what snapshots leave out once the
    /// allocator made anything.
    pub(super) excluded: Box<[(u64, u64)]>,
    pub(super) excluded_len: usize,
    before: Box<[(u64, u64)]>,
    before_len: usize,
    after: Box<[(u64, u64)]>,
    after_len: usize,
    tmp: Box<[(u64, u64)]>,
    /// Placeholders held for the length of one call (`hold`).
    held: Box<[(u64, u64)]>,
    held_len: usize,
}

impl HeapState {
    pub(super) fn new() -> HeapState {
        let buf = || vec![(0u64, 0u64); RANGES].into_boxed_slice();
        HeapState {
            sizes: [0; caps::MAX_MAPS],
            owned: buf(),
            owned_len: 0,
            excluded: buf(),
            excluded_len: 0,
            before: buf(),
            before_len: 0,
            after: buf(),
            after_len: 0,
            tmp: buf(),
            held: buf(),
            held_len: 0,
        }
    }

    /// Whether the snapshot must leave out more than the baseline.
    pub(super) fn has_owned(&self) -> bool {
        self.owned_len > 0
    }

    /// The size of live block `map`, if it is one.
    pub(super) fn block(&self, map: MapId) -> Option<u32> {
        match self.sizes.get(map.0 as usize) {
            Some(&n) if n > 0 => Some(n),
            _ => None,
        }
    }
}

/// The published allocator ranges live on the board page from `BOARD_ALLOC`: a count, then
/// (start, end) pairs, to the page's end. `Board::clear_bases` empties the list.
const PUBLISHED: usize = (4096 - BOARD_ALLOC) / 16 - 1;

fn published_count(board: &Board) -> &AtomicU64 {
    // SAFETY: the word lies on the board page (8-byte aligned), which lives for the process's
    // life.
    unsafe { &*(board.0.add(BOARD_ALLOC) as *const AtomicU64) }
}

fn published(board: &Board, i: usize) -> (&AtomicU64, &AtomicU64) {
    // SAFETY: i < PUBLISHED, so both words lie on the board page.
    unsafe {
        (
            &*(board.0.add(BOARD_ALLOC + 8 + 16 * i) as *const AtomicU64),
            &*(board.0.add(BOARD_ALLOC + 16 + 16 * i) as *const AtomicU64),
        )
    }
}

/// Maps a `PROT_NONE` placeholder over each part of the windows `s.heap.tmp[..n]` (in any order,
/// perhaps overlapping) that `s.heap.before[..covered]` does not cover, and notes each in
/// `s.heap.held`.
fn hold_windows(s: &mut Scratch, n: usize, covered: usize, keep: (u64, u64)) {
    let h = &mut s.heap;
    h.tmp[..n].sort_unstable();
    let merged = union(&h.tmp[..n], &[], &mut h.after);
    let gaps = minus(&h.after[..merged], &h.before[..covered], &mut h.tmp);
    // Each gap less `keep` (the range the op itself names: at most two pieces).
    let pieces = h.tmp[..gaps].iter().flat_map(|&(start, end)| {
        let (ks, ke) = keep;
        if ke <= start || ks >= end || ks >= ke {
            [Some((start, end)), None]
        } else {
            [
                (start < ks).then_some((start, ks)),
                (ke < end).then_some((ke, end)),
            ]
        }
    });
    for (start, end) in pieces.flatten() {
        if h.held_len >= h.held.len() {
            return;
        }
        // The placeholders are the harness's, not the program's: made by the system call
        // itself, so that an interposed C library (`--under "env LD_PRELOAD=..."`) neither sees
        // nor changes them.
        // SAFETY: MAP_FIXED_NOREPLACE over a range this process has nothing in (it fails
        // rather than replace anything).
        let p = unsafe {
            libc::syscall(
                libc::SYS_mmap,
                start,
                end - start,
                libc::PROT_NONE,
                libc::MAP_PRIVATE
                    | libc::MAP_ANONYMOUS
                    | libc::MAP_NORESERVE
                    | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        } as u64;
        if p == start {
            h.held[h.held_len] = (start, end);
            h.held_len += 1;
        } else if p < (-4095i64) as u64 {
            // An old kernel took it as a hint and placed it elsewhere.
            // SAFETY: the mapping just made.
            unsafe { libc::syscall(libc::SYS_munmap, p, end - start) };
        }
    }
}

/// Unmaps every placeholder `hold` made.
fn release(s: &mut Scratch) {
    for &(start, end) in &s.heap.held[..s.heap.held_len] {
        // SAFETY: a placeholder this process mapped, nothing else.
        unsafe { libc::syscall(libc::SYS_munmap, start, end - start) };
    }
    s.heap.held_len = 0;
}

/// Before a `map` or a moving `remap` of a program that made allocations: holds the published
/// allocator ranges (and 64 pages below each) where this process has nothing.
pub(super) fn hold_allocator_ranges(s: &mut Scratch) {
    hold_allocator_ranges_except(s, (0, 0));
}

/// `hold_allocator_ranges`, leaving `keep` free: a remap's old range and the room it may grow
/// into in place. A placeholder there would be the very mapping the remap names, which the
/// kernel then moves instead of failing (found by `cowcheck run --seed 5`: `unmap m0 185..1024;
/// remap m0 674..678 5 maymove` "mapped" where the program has a hole, 2 replays in 3).
pub(super) fn hold_allocator_ranges_except(s: &mut Scratch, keep: (u64, u64)) {
    let board = s.copy.view().board();
    let n = (published_count(&board).load(AtomicOrdering::Acquire) as usize).min(PUBLISHED);
    if n == 0 {
        return;
    }
    let len = covered(s, true);
    let room = (caps::MAX_MAP_PAGES as u64 + 1) * s.page_size as u64;
    for i in 0..n {
        let (a, b) = published(&board, i);
        let (start, end) = (
            a.load(AtomicOrdering::Acquire),
            b.load(AtomicOrdering::Acquire),
        );
        s.heap.tmp[i] = (start.saturating_sub(room), end);
    }
    hold_windows(s, n, len, keep);
}

/// After the `map` or `remap`: the placeholders go.
pub(super) fn release_allocator_ranges(s: &mut Scratch) {
    if s.heap.held_len > 0 {
        release(s);
    }
}

/// The address ranges /proc/self/maps covers, merged, into `out`; returns how many.
fn covered(s: &mut Scratch, which: bool) -> usize {
    let out = if which {
        &mut s.heap.before
    } else {
        &mut s.heap.after
    };
    let mut len = 0usize;
    s.maps.visit(
        |_, _| false,
        |e| {
            if len > 0 && out[len - 1].1 == e.start {
                out[len - 1].1 = e.end;
            } else if len < out.len() {
                out[len] = (e.start, e.end);
                len += 1;
            }
            true
        },
    );
    len
}

/// `a` minus `b` (sorted, disjoint lists) into `out`; returns its length.
fn minus(a: &[(u64, u64)], b: &[(u64, u64)], out: &mut [(u64, u64)]) -> usize {
    let mut n = 0;
    let mut push = |r: (u64, u64), n: &mut usize| {
        if *n < out.len() {
            out[*n] = r;
            *n += 1;
        }
    };
    let mut j = 0;
    for &(s0, e0) in a {
        while j < b.len() && b[j].1 <= s0 {
            j += 1;
        }
        let (mut s, mut k) = (s0, j);
        while k < b.len() && b[k].0 < e0 {
            if b[k].0 > s {
                push((s, b[k].0), &mut n);
            }
            s = s.max(b[k].1);
            k += 1;
        }
        if s < e0 {
            push((s, e0), &mut n);
        }
    }
    n
}

/// `a` and `b` (sorted, disjoint lists) merged into `out`; returns its length.
fn union(a: &[(u64, u64)], b: &[(u64, u64)], out: &mut [(u64, u64)]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() || j < b.len() {
        let next = if j >= b.len() || (i < a.len() && a[i].0 <= b[j].0) {
            i += 1;
            a[i - 1]
        } else {
            j += 1;
            b[j - 1]
        };
        if n > 0 && out[n - 1].1 >= next.0 {
            out[n - 1].1 = out[n - 1].1.max(next.1);
        } else if n < out.len() {
            out[n] = next;
            n += 1;
        }
    }
    n
}

/// Before an allocator op: what the layout covers, and every handle's window held.
fn before(s: &mut Scratch) {
    s.heap.before_len = covered(s, true);
    let board = s.copy.view().board();
    let ps = s.page_size as u64;
    let room = (caps::MAX_MAP_PAGES as u64 + 1) * ps;
    let mut n = 0;
    for m in 0..caps::MAX_MAPS {
        if let Some(base) = board.address(crate::program::At::page(MapId(m as u8), 0), s.page_size)
        {
            let start = base & !(ps - 1);
            s.heap.tmp[n] = (start, start.saturating_add(room));
            n += 1;
        }
    }
    let covered = s.heap.before_len;
    hold_windows(s, n, covered, (0, 0));
}

/// Around a call that may make the allocator map (an op thread's start, `op_thread.rs`):
/// `before` (true) or `after` (false). Without `hold`, no placeholders hold the handles'
/// windows meanwhile (the call acts on the program's addresses: a racing thread's start).
pub(super) fn watch(s: &mut Scratch, starting: bool, hold: bool) {
    match (starting, hold) {
        (true, true) => before(s),
        (true, false) => s.heap.before_len = covered(s, true),
        (false, _) => after(s),
    }
}

/// After an allocator op: the ranges that appeared are the allocator's, the allocator's ranges
/// that went away are forgotten, and the snapshot's exclusions are rebuilt.
fn after(s: &mut Scratch) {
    release(s);
    let after_len = covered(s, false);
    let board = s.copy.view().board();
    let h = &mut s.heap;
    h.after_len = after_len;
    // new = after - before; owned = (owned + new) & after = after - (after - (owned + new)).
    let new_len = minus(&h.after[..after_len], &h.before[..h.before_len], &mut h.tmp);
    // A running layout thread's page is the program's, never the allocator's, whatever its
    // rounds did between the two reads (T12: an `unmap` thread that raced a hole maps a page
    // there; found by the fuzzer: `unmap m0 1..46; thread t0; race t1 unmap m0 2; stop t1`
    // hid the page from every view after it, 3 runs in 3).
    let racing = s.racer.layout_pages();
    let first = racing.iter().position(|r| r.1 > 0).unwrap_or(racing.len());
    let new_len = minus(&h.tmp[..new_len], &racing[first..], &mut h.excluded);
    h.tmp[..new_len].copy_from_slice(&h.excluded[..new_len]);
    // The new ranges are published for the tree's other processes.
    let count = published_count(&board);
    for &(start, end) in &h.tmp[..new_len] {
        let n = count.load(AtomicOrdering::Acquire) as usize;
        if n >= PUBLISHED {
            break;
        }
        let (a, b) = published(&board, n);
        a.store(start, AtomicOrdering::Release);
        b.store(end, AtomicOrdering::Release);
        count.store(n as u64 + 1, AtomicOrdering::Release);
    }
    let merged = union(&h.owned[..h.owned_len], &h.tmp[..new_len], &mut h.excluded);
    let gone = minus(&h.after[..after_len], &h.excluded[..merged], &mut h.tmp);
    h.owned_len = minus(&h.after[..after_len], &h.tmp[..gone], &mut h.owned);
    h.excluded_len = union(
        &s.baseline[..s.baseline_len],
        &h.owned[..h.owned_len],
        &mut h.excluded,
    );
}

/// An allocator call's reply: the block's address and what the call did to the layout
/// (`placed`), or the errno.
fn made(
    s: &mut Scratch,
    creates: MapId,
    size: u32,
    r: Result<u64, Errno>,
    here: usize,
) -> Result<usize, Reply> {
    s.copy.view().board().enter(creates, &r);
    match r {
        Ok(addr) => {
            s.heap.sizes[creates.0 as usize] = size;
            Ok(placed(s, addr, here))
        }
        Err(e) => Err(Reply::Failed { errno: e as i32 }),
    }
}

/// The reply of an allocator call that succeeded (docs/SEMANTICS.md M8, M9), three words:
/// the block's address (0 for free); the length of the range that appeared during the call and
/// begins 16 bytes before the block (a chunk in a fresh mapping of its own, glibc's layout; 0:
/// none); the bytes of every range that went away during the call. Read from the lists
/// `after` left: `tmp` holds nothing any more, so both are computed again from `before` and
/// `after`.
fn placed(s: &mut Scratch, addr: u64, here: usize) -> usize {
    let h = &mut s.heap;
    let new_len = minus(
        &h.after[..h.after_len],
        &h.before[..h.before_len],
        &mut h.tmp,
    );
    let chunk = addr.wrapping_sub(16);
    let appeared = h.tmp[..new_len]
        .iter()
        .find(|r| addr != 0 && r.0 == chunk)
        .map_or(0, |r| r.1 - r.0);
    let gone_len = minus(
        &h.before[..h.before_len],
        &h.after[..h.after_len],
        &mut h.tmp,
    );
    let vanished: u64 = h.tmp[..gone_len].iter().map(|r| r.1 - r.0).sum();
    let reply = &mut s.reply[here..];
    reply[REPLY_HEAD] = addr;
    reply[REPLY_HEAD + 1] = appeared;
    reply[REPLY_HEAD + 2] = vanished;
    reply[..REPLY_HEAD].copy_from_slice(&Reply::Digests { count: 3 }.encode());
    3
}

/// malloc, calloc, realloc, posix_memalign or aligned_alloc; `None`: realloc's old block has no
/// address here (skipped).
pub(super) fn alloc(
    s: &mut Scratch,
    call: AllocCall,
    size: u32,
    creates: MapId,
    here: usize,
) -> Option<Result<usize, Reply>> {
    let ps = s.page_size;
    let n = size as usize;
    let from = match call {
        AllocCall::Realloc { from } => {
            s.heap.block(from)?;
            Some((
                from,
                s.copy
                    .view()
                    .board()
                    .address(crate::program::At::page(from, 0), ps)?,
            ))
        }
        _ => None,
    };
    before(s);
    // SAFETY: the malloc family on sizes the validator bounded; realloc's block is a live block
    // of this process (the validator refuses use after free), which Rust code holds no
    // reference into.
    let r = unsafe {
        let p = match call {
            AllocCall::Malloc => libc::malloc(n),
            AllocCall::Calloc => libc::calloc(1, n),
            AllocCall::Realloc { .. } => {
                libc::realloc(from.map_or(0, |(_, a)| a) as *mut c_void, n)
            }
            AllocCall::AlignedAlloc { align } => libc::aligned_alloc(align as usize, n),
            AllocCall::Memalign { align } => {
                let mut p: *mut c_void = std::ptr::null_mut();
                match libc::posix_memalign(&mut p, align as usize, n) {
                    0 => p,
                    e => {
                        Errno::set_raw(e);
                        std::ptr::null_mut()
                    }
                }
            }
        };
        if p.is_null() {
            Err(Errno::last())
        } else {
            Ok(p as u64)
        }
    };
    after(s);
    if r.is_ok()
        && let Some((from, _)) = from
    {
        s.heap.sizes[from.0 as usize] = 0;
    }
    Some(made(s, creates, size, r, here))
}

/// free; `None`: the block has no address here (skipped). The reply is `placed`'s, with
/// address 0.
pub(super) fn free(s: &mut Scratch, map: MapId, here: usize) -> Option<usize> {
    s.heap.block(map)?;
    let addr = s
        .copy
        .view()
        .board()
        .address(crate::program::At::page(map, 0), s.page_size)?;
    before(s);
    // SAFETY: a live block of this process (the validator refuses a double free).
    unsafe { libc::free(addr as *mut c_void) };
    after(s);
    s.heap.sizes[map.0 as usize] = 0;
    Some(placed(s, 0, here))
}

/// mallopt or malloc_trim: their results say nothing the model checks (mallopt's 1 or 0,
/// malloc_trim's "released something"), so the reply is Done. A C library without them (musl)
/// has nothing to set: the op does nothing there.
pub(super) fn tune(s: &mut Scratch, tune: Tune) -> Reply {
    before(s);
    settings(tune);
    after(s);
    Reply::Done { value: 0 }
}

#[cfg(target_env = "gnu")]
fn settings(tune: Tune) {
    unsafe extern "C" {
        fn mallopt(param: libc::c_int, value: libc::c_int) -> libc::c_int;
        fn malloc_trim(pad: libc::size_t) -> libc::c_int;
    }
    // SAFETY: glibc's (or the interposed allocator's) settings calls, plain integers.
    unsafe {
        match tune {
            Tune::Mallopt { param, value } => {
                mallopt(param_number(param), value.min(i32::MAX as u32) as i32);
            }
            Tune::Trim { pad } => {
                malloc_trim(pad as usize);
            }
        }
    }
}

#[cfg(not(target_env = "gnu"))]
fn settings(_: Tune) {}

#[cfg(target_env = "gnu")]
fn param_number(p: MalloptParam) -> i32 {
    p.number()
}

/// The block's bytes `[start, end)` that a request's pages and bytes name (whole pages of the
/// request are whole units of the block, cut at its size).
fn bytes_of(pages: PageRange, bytes: ByteRange, size: u32, ps: usize) -> (u32, u32) {
    let first = pages.start as u32 * ALLOC_UNIT;
    if bytes.start == 0 && bytes.end as usize == ps {
        (first, (pages.end as u32 * ALLOC_UNIT).min(size))
    } else {
        (first + bytes.start, first + bytes.end)
    }
}

/// Block `map`'s size and the address of its first byte, if this process holds it.
fn block_at(s: &Scratch, map: MapId) -> Option<(u32, u64)> {
    let size = s.heap.block(map)?;
    let base = s
        .copy
        .view()
        .board()
        .address(crate::program::At::page(map, 0), s.page_size)?;
    Some((size, base))
}

/// A write to a block: the pattern's ramp counts from the block's first byte.
pub(super) fn write(
    s: &mut Scratch,
    map: MapId,
    pages: PageRange,
    bytes: ByteRange,
    pattern: Pattern,
) -> Option<Reply> {
    let (size, base) = block_at(s, map)?;
    let (start, end) = bytes_of(pages, bytes, size, s.page_size);
    for i in start..end {
        // SAFETY: a byte of a live block of this process, inside its size (validated).
        unsafe {
            std::ptr::write_volatile((base + i as u64) as *mut u8, pattern.byte_at(i as usize))
        };
    }
    Some(Reply::Done { value: 0 })
}

/// A read of a block: a digest per unit, into the reply payload at `here`; the count.
pub(super) fn read(
    s: &mut Scratch,
    map: MapId,
    pages: PageRange,
    bytes: ByteRange,
    here: usize,
) -> Option<usize> {
    let (size, base) = block_at(s, map)?;
    let (start, end) = bytes_of(pages, bytes, size, s.page_size);
    let reply = &mut s.reply[here..];
    let mut n = 0;
    let mut at = start;
    while at < end {
        let stop = ((at / ALLOC_UNIT + 1) * ALLOC_UNIT).min(end);
        // SAFETY: bytes of a live block of this process, inside its size (validated).
        let b = unsafe {
            std::slice::from_raw_parts((base + at as u64) as *const u8, (stop - at) as usize)
        };
        reply[REPLY_HEAD + n] = digest(b);
        n += 1;
        PARTIAL.store(n, AtomicOrdering::Relaxed);
        at = stop;
    }
    reply[..REPLY_HEAD].copy_from_slice(&Reply::Digests { count: n }.encode());
    Some(n)
}

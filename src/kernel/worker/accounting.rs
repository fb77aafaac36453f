//! The accounting half of the physical channel, read by each process about itself
//! (docs/SEMANTICS.md I10): `mincore` over each region of its program's mappings, one call
//! per region (or per scratch-sized chunk of a larger one), read right after the region's
//! pagemap words, before the snapshot's digests fault pages in. Its bit 0 per page goes into
//! the page's word as `pm::RESIDENT`. Nothing here allocates: the vector is the snapshot's
//! scratch buffer.
//!
//! What mincore says differs from pagemap's present bit exactly for shared memory: for an
//! anonymous mapping it reports the page-table entry (mm/mincore.c: mincore_pte_range(); a
//! missing entry of a mapping without a file is not resident), for shmem the page cache
//! (mincore_page()), whoever mapped the page.

use crate::program::physical::{Skip, pm, smaps};

/// Sets `pm::RESIDENT` in the words of the region starting at `start` (one word per page) that
/// `mincore` reports resident; `scratch` holds its vector. `false` if the call failed.
pub(super) fn mark_resident(words: &mut [u64], start: u64, ps: u64, scratch: &mut [u8]) -> bool {
    let chunk = scratch.len();
    if chunk == 0 {
        return false;
    }
    let mut done = 0usize;
    while done < words.len() {
        let n = (words.len() - done).min(chunk);
        let vec = &mut scratch[..n];
        // SAFETY: `[start + done pages, + n pages)` is a range of our own mappings as
        // /proc/self/maps listed it (page-aligned), and `vec` holds one byte per page.
        let r = unsafe {
            libc::mincore(
                (start + done as u64 * ps) as *mut libc::c_void,
                n * ps as usize,
                vec.as_mut_ptr(),
            )
        };
        if r != 0 {
            return false;
        }
        for (w, &v) in words[done..done + n].iter_mut().zip(vec.iter()) {
            if v & 1 != 0 {
                *w |= pm::RESIDENT;
            }
        }
        done += n;
    }
    true
}

/// The probe (in the probing child): mincore on its two scratch pages at `base`, one written
/// and one read (the zero page), must call both resident (I10).
pub(super) fn probe_resident(base: u64, ps: u64, scratch: &mut [u8]) -> bool {
    let mut words = [0u64; 2];
    mark_resident(&mut words, base, ps, scratch) && words.iter().all(|w| w & pm::RESIDENT != 0)
}

/// Whether any swap area is on (`/proc/swaps` lists one below its header line). Read by the
/// executor at start, before anything is forked.
pub(super) fn swap_on() -> bool {
    std::fs::read_to_string("/proc/swaps").is_ok_and(|s| s.lines().skip(1).any(|l| !l.is_empty()))
}

/// Why the memory cgroup part does not run (I14): the memory controller must be on cgroup v2
/// (`cgroup.controllers` of the unified hierarchy lists `memory`), and even there its counters
/// lag (I10), so that part is not built.
pub(super) fn cgroup_skip() -> Skip {
    let v2_memory = [
        "/sys/fs/cgroup/cgroup.controllers",
        "/sys/fs/cgroup/unified/cgroup.controllers",
    ]
    .iter()
    .any(|p| std::fs::read_to_string(p).is_ok_and(|s| s.split_whitespace().any(|c| c == "memory")));
    if v2_memory {
        Skip::CgroupLags
    } else {
        Skip::NoCgroupMemory
    }
}

/// Sums this process's `/proc/self/smaps` over each region of `regions` ((start, end, flags)
/// triples, ascending) into `out` (`smaps::WORDS` per region: the entry count, then each of
/// `smaps::FIELDS` in kB). An entry that reaches outside its region marks the region
/// `smaps::UNKNOWN`. The file is read in `scratch`-sized pieces and parsed line by line as it
/// comes (nothing allocated). `false` if it could not be read.
pub(super) fn read_smaps(regions: &[u64], out: &mut [u64], scratch: &mut [u8]) -> bool {
    let n = regions.len() / 3;
    out[..n * smaps::WORDS].fill(0);
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/smaps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    let ok = sum_smaps(fd, regions, out, scratch);
    // SAFETY: our own descriptor, closed once.
    unsafe { libc::close(fd) };
    ok
}

/// `read_smaps` on the open file `fd`.
fn sum_smaps(fd: i32, regions: &[u64], out: &mut [u64], scratch: &mut [u8]) -> bool {
    // The region the current entry lies wholly in.
    let mut cur: Option<usize> = None;
    let mut carry = 0usize;
    loop {
        let room = &mut scratch[carry..];
        if room.is_empty() {
            return false;
        }
        // SAFETY: reads into the writable tail of our scratch buffer.
        let r = unsafe { libc::read(fd, room.as_mut_ptr() as *mut libc::c_void, room.len()) };
        if r < 0 {
            return false;
        }
        if r == 0 {
            return carry == 0;
        }
        let end = carry + r as usize;
        let mut at = 0usize;
        while let Some(nl) = scratch[at..end].iter().position(|&b| b == b'\n') {
            line(&scratch[at..at + nl], regions, out, &mut cur);
            at += nl + 1;
        }
        scratch.copy_within(at..end, 0);
        carry = end - at;
    }
}

/// One line of smaps: an entry's header (`start-end perms ...`, hex) or a `Name:  n kB` field.
fn line(l: &[u8], regions: &[u64], out: &mut [u64], cur: &mut Option<usize>) {
    let Some(&first) = l.first() else { return };
    if first.is_ascii_digit() || (b'a'..=b'f').contains(&first) {
        let (start, rest) = hex(l);
        let (end, _) = hex(rest.get(1..).unwrap_or(&[]));
        *cur = None;
        for i in 0..regions.len() / 3 {
            let (rs, re) = (regions[i * 3], regions[i * 3 + 1]);
            if end <= rs || start >= re {
                continue;
            }
            let w = &mut out[i * smaps::WORDS];
            if start >= rs && end <= re && *w != smaps::UNKNOWN {
                *w += 1;
                *cur = Some(i);
            } else {
                *w = smaps::UNKNOWN;
            }
        }
        return;
    }
    let Some(i) = *cur else { return };
    if out[i * smaps::WORDS] == smaps::UNKNOWN {
        return;
    }
    let Some(colon) = l.iter().position(|&b| b == b':') else {
        return;
    };
    let name = &l[..colon];
    let Some(k) = smaps::FIELDS.iter().position(|f| f.as_bytes() == name) else {
        return;
    };
    let mut v = 0u64;
    for &b in l[colon + 1..].iter().skip_while(|b| **b == b' ') {
        if !b.is_ascii_digit() {
            break;
        }
        v = v * 10 + (b - b'0') as u64;
    }
    out[i * smaps::WORDS + 1 + k] += v;
}

/// A hexadecimal number at the start of `s`, and what follows it.
fn hex(s: &[u8]) -> (u64, &[u8]) {
    let mut v = 0u64;
    for (k, &b) in s.iter().enumerate() {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return (v, &s[k..]),
        };
        v = v << 4 | d as u64;
    }
    (v, &[])
}

/// The probe (in the probing child, after its scratch pages were written and read): smaps can
/// be read, and over the whole address space it shows at least the written page resident
/// (the zero page it read is not counted, I11).
pub(super) fn probe_smaps(scratch: &mut [u8], ps: u64) -> bool {
    let all = [0, u64::MAX, 0];
    let mut out = [0u64; smaps::WORDS];
    read_smaps(&all, &mut out, scratch)
        && out[0] != smaps::UNKNOWN
        && out[0] > 0
        && out[1 + smaps::RSS] * 1024 >= ps
}

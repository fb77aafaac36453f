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

use crate::program::physical::pm;

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

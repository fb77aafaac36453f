//! A mapping of a view as words, on both links (a worker's `Reply::View`, and the front's
//! snapshots): `(start, end, flags)`, where flags holds the prot bits in bits 0..3, shared in
//! bit 3 and the backing's code from bit 4.
//!
//! This module never makes a syscall.

use crate::program::outcome::{Backing, Region};

/// `Backing` codes.
mod backing {
    pub const ANON: u64 = 0;
    pub const DEV_ZERO: u64 = 1;
    pub const SHMEM: u64 = 2;
    pub const OTHER: u64 = 3;
    pub const HUGETLB: u64 = 4;
}

const PROT_BITS: u64 = 7;
const SHARED_BIT: u64 = 1 << 3;
const BACKING_SHIFT: u32 = 4;

#[inline]
fn backing_code(b: Backing) -> u64 {
    match b {
        Backing::Anon => backing::ANON,
        Backing::DevZero => backing::DEV_ZERO,
        Backing::Shmem => backing::SHMEM,
        Backing::Other => backing::OTHER,
        Backing::Hugetlb => backing::HUGETLB,
    }
}

#[inline]
fn backing_of(code: u64) -> Option<Backing> {
    Some(match code {
        backing::ANON => Backing::Anon,
        backing::DEV_ZERO => Backing::DevZero,
        backing::SHMEM => Backing::Shmem,
        backing::OTHER => Backing::Other,
        backing::HUGETLB => Backing::Hugetlb,
        _ => return None,
    })
}

/// The flags word of a region.
#[inline]
pub fn region_flags(r: &Region) -> u64 {
    (r.prot as u64 & PROT_BITS)
        | if r.shared { SHARED_BIT } else { 0 }
        | backing_code(r.backing) << BACKING_SHIFT
}

/// The region of a `(start, end, flags)` triple; `None` if the flags are not a region's.
#[inline]
pub fn region_from_words(start: u64, end: u64, flags: u64) -> Option<Region> {
    Some(Region {
        start,
        end,
        prot: (flags & PROT_BITS) as u8,
        shared: flags & SHARED_BIT != 0,
        backing: backing_of(flags >> BACKING_SHIFT)?,
    })
}

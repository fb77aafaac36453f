//! Wire codes of the values a `Request` carries, each given by name, with one function to the
//! wire and one back (`None`: not a valid word) per kind of value: a `match` each way, never a
//! position in a list. Where Linux has a number for the value (PROT_*, MADV_*, MREMAP_*), the
//! number is the code, so that the worker hands it to the call as it is.
//!
//! This module never makes a syscall.

use crate::program::tables::madv;
use crate::program::{
    Advice, At, BadArg, MapArgs, MapId, MapKind, Offset, Pattern, PlaceHow, ProcId, Prot,
    RemapFlags, Syscall, Via, caps,
};

/// `MapKind` codes.
mod kind {
    pub const PRIVATE: u64 = 1;
    pub const SHARED: u64 = 2;
    pub const PRIVATE_ZERO: u64 = 3;
    pub const SHARED_ZERO: u64 = 4;
}

/// `PlaceHow` codes.
mod how {
    pub const FIXED: u64 = 1;
    pub const NOREPLACE: u64 = 2;
    pub const HINT: u64 = 3;
    pub const FIXED_NOREPLACE: u64 = 4;
}

/// `Pattern` codes: the kind in bits 8 and up, the byte in bits 0..8.
mod pattern {
    pub const FILL: u64 = 1;
    pub const RAMP: u64 = 2;
}

/// `Via` codes.
mod via {
    pub const MEM: u64 = 1;
    pub const VM: u64 = 2;
}

/// `Syscall` codes.
mod call {
    pub const MMAP: u64 = 1;
    pub const MUNMAP: u64 = 2;
    pub const MPROTECT: u64 = 3;
    pub const MADVISE: u64 = 4;
    pub const MREMAP: u64 = 5;
}

/// `BadArg` codes.
mod bad {
    pub const ZERO_LENGTH: u64 = 1;
    pub const UNALIGNED: u64 = 2;
    pub const OVERFLOW: u64 = 3;
    pub const UNKNOWN_ADVICE: u64 = 4;
    pub const UNKNOWN_PROT: u64 = 5;
    pub const UNKNOWN_FLAGS: u64 = 6;
}

#[inline]
pub(super) fn kind_word(k: MapKind) -> u64 {
    match k {
        MapKind::Private => kind::PRIVATE,
        MapKind::Shared => kind::SHARED,
        MapKind::PrivateZero => kind::PRIVATE_ZERO,
        MapKind::SharedZero => kind::SHARED_ZERO,
    }
}

#[inline]
pub(super) fn kind_of(w: u64) -> Option<MapKind> {
    Some(match w {
        kind::PRIVATE => MapKind::Private,
        kind::SHARED => MapKind::Shared,
        kind::PRIVATE_ZERO => MapKind::PrivateZero,
        kind::SHARED_ZERO => MapKind::SharedZero,
        _ => return None,
    })
}

#[inline]
pub(super) fn how_word(h: PlaceHow) -> u64 {
    match h {
        PlaceHow::Fixed => how::FIXED,
        PlaceHow::NoReplace => how::NOREPLACE,
        PlaceHow::Hint => how::HINT,
        PlaceHow::FixedNoReplace => how::FIXED_NOREPLACE,
    }
}

#[inline]
pub(super) fn how_of(w: u64) -> Option<PlaceHow> {
    Some(match w {
        how::FIXED => PlaceHow::Fixed,
        how::NOREPLACE => PlaceHow::NoReplace,
        how::HINT => PlaceHow::Hint,
        how::FIXED_NOREPLACE => PlaceHow::FixedNoReplace,
        _ => return None,
    })
}

#[inline]
pub(super) fn pattern_word(p: Pattern) -> u64 {
    match p {
        Pattern::Fill(b) => pattern::FILL << 8 | b as u64,
        Pattern::Ramp(b) => pattern::RAMP << 8 | b as u64,
    }
}

#[inline]
pub(super) fn pattern_of(w: u64) -> Option<Pattern> {
    let b = w as u8;
    Some(match w >> 8 {
        pattern::FILL => Pattern::Fill(b),
        pattern::RAMP => Pattern::Ramp(b),
        _ => return None,
    })
}

#[inline]
pub(super) fn via_word(v: Via) -> u64 {
    match v {
        Via::Mem => via::MEM,
        Via::Vm => via::VM,
    }
}

#[inline]
pub(super) fn via_of(w: u64) -> Option<Via> {
    Some(match w {
        via::MEM => Via::Mem,
        via::VM => Via::Vm,
        _ => return None,
    })
}

#[inline]
pub(super) fn call_word(c: Syscall) -> u64 {
    match c {
        Syscall::Mmap => call::MMAP,
        Syscall::Munmap => call::MUNMAP,
        Syscall::Mprotect => call::MPROTECT,
        Syscall::Madvise => call::MADVISE,
        Syscall::Mremap => call::MREMAP,
    }
}

#[inline]
pub(super) fn call_of(w: u64) -> Option<Syscall> {
    Some(match w {
        call::MMAP => Syscall::Mmap,
        call::MUNMAP => Syscall::Munmap,
        call::MPROTECT => Syscall::Mprotect,
        call::MADVISE => Syscall::Madvise,
        call::MREMAP => Syscall::Mremap,
        _ => return None,
    })
}

#[inline]
pub(super) fn bad_word(b: BadArg) -> u64 {
    match b {
        BadArg::ZeroLength => bad::ZERO_LENGTH,
        BadArg::Unaligned => bad::UNALIGNED,
        BadArg::Overflow => bad::OVERFLOW,
        BadArg::UnknownAdvice => bad::UNKNOWN_ADVICE,
        BadArg::UnknownProt => bad::UNKNOWN_PROT,
        BadArg::UnknownFlags => bad::UNKNOWN_FLAGS,
    }
}

#[inline]
pub(super) fn bad_of(w: u64) -> Option<BadArg> {
    Some(match w {
        bad::ZERO_LENGTH => BadArg::ZeroLength,
        bad::UNALIGNED => BadArg::Unaligned,
        bad::OVERFLOW => BadArg::Overflow,
        bad::UNKNOWN_ADVICE => BadArg::UnknownAdvice,
        bad::UNKNOWN_PROT => BadArg::UnknownProt,
        bad::UNKNOWN_FLAGS => BadArg::UnknownFlags,
        _ => return None,
    })
}

/// PROT_* bits, as mprotect takes them (and as they travel).
#[inline]
pub fn prot_bits(p: Prot) -> i32 {
    match p {
        Prot::None => libc::PROT_NONE,
        Prot::Read => libc::PROT_READ,
        Prot::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        Prot::Write => libc::PROT_WRITE,
    }
}

#[inline]
pub(super) fn prot_word(p: Prot) -> u64 {
    prot_bits(p) as u64
}

#[inline]
pub(super) fn prot_of(w: u64) -> Option<Prot> {
    const NONE: u64 = libc::PROT_NONE as u64;
    const READ: u64 = libc::PROT_READ as u64;
    const READ_WRITE: u64 = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    const WRITE: u64 = libc::PROT_WRITE as u64;
    Some(match w {
        NONE => Prot::None,
        READ => Prot::Read,
        READ_WRITE => Prot::ReadWrite,
        WRITE => Prot::Write,
        _ => return None,
    })
}

/// The MADV_* number (`tables::madv`), as madvise takes it.
#[inline]
pub(super) fn advice_word(a: Advice) -> u64 {
    a.number() as u64
}

#[inline]
pub(super) fn advice_of(w: u64) -> Option<Advice> {
    let n = i32::try_from(w).ok()?;
    Some(match n {
        madv::DONTNEED => Advice::DontNeed,
        madv::FREE => Advice::Free,
        madv::REMOVE => Advice::Remove,
        madv::DONTFORK => Advice::DontFork,
        madv::DOFORK => Advice::DoFork,
        madv::WIPEONFORK => Advice::WipeOnFork,
        madv::KEEPONFORK => Advice::KeepOnFork,
        madv::POPULATE_READ => Advice::PopulateRead,
        madv::POPULATE_WRITE => Advice::PopulateWrite,
        madv::COLD => Advice::Cold,
        madv::PAGEOUT => Advice::PageOut,
        madv::GUARD_INSTALL => Advice::GuardInstall,
        madv::GUARD_REMOVE => Advice::GuardRemove,
        madv::HUGEPAGE => Advice::HugePage,
        madv::NOHUGEPAGE => Advice::NoHugePage,
        madv::COLLAPSE => Advice::Collapse,
        _ => return None,
    })
}

/// MREMAP_* bits, as mremap takes them (and as they travel; a fixed target travels in a word
/// of its own).
#[inline]
pub fn remap_bits(f: RemapFlags) -> i32 {
    let mut bits = 0;
    if f.maymove {
        bits |= libc::MREMAP_MAYMOVE;
    }
    if f.dontunmap {
        bits |= libc::MREMAP_DONTUNMAP;
    }
    if f.fixed.is_some() {
        bits |= libc::MREMAP_FIXED;
    }
    bits
}

#[inline]
pub(super) fn remap_flags_word(f: RemapFlags) -> u64 {
    remap_bits(f) as u64
}

/// The flags of MREMAP_* bits, given the fixed target's word (which must be 0 without
/// MREMAP_FIXED).
#[inline]
pub(super) fn remap_flags_of(bits: u64, fixed: u64) -> Option<RemapFlags> {
    const MAYMOVE: u64 = libc::MREMAP_MAYMOVE as u64;
    const DONTUNMAP: u64 = libc::MREMAP_DONTUNMAP as u64;
    const FIXED: u64 = libc::MREMAP_FIXED as u64;
    if bits & !(MAYMOVE | DONTUNMAP | FIXED) != 0 {
        return None;
    }
    let fixed = match bits & FIXED != 0 {
        true => Some(at_of(fixed)?),
        false if fixed == 0 => None,
        false => return None,
    };
    Some(RemapFlags {
        maymove: bits & MAYMOVE != 0,
        dontunmap: bits & DONTUNMAP != 0,
        fixed,
    })
}

#[inline]
pub(super) fn map_of(w: u64) -> Option<MapId> {
    (w < caps::MAX_MAPS as u64).then_some(MapId(w as u8))
}

#[inline]
pub(super) fn proc_of(w: u64) -> Option<ProcId> {
    (w < caps::MAX_PROCS as u64).then_some(ProcId(w as u8))
}

/// An address: the handle in bits 32 and up, the byte inside the page in bits 16..32, the page
/// in bits 0..16.
#[inline]
pub(super) fn at_word(a: At) -> u64 {
    (a.map.0 as u64) << 32 | (a.byte as u64) << 16 | a.page as u64
}

#[inline]
pub(super) fn at_of(w: u64) -> Option<At> {
    let byte = (w >> 16 & 0xffff) as u16;
    (byte < caps::MAX_BYTE_OFFSET).then_some(())?;
    Some(At {
        map: map_of(w >> 32)?,
        page: (w & 0xffff) as u16,
        byte,
    })
}

/// A length: its pages in bits 0..32 (at most a u16), the bytes of its last page (0: all of
/// it) in bits 32 and up.
#[inline]
pub(super) fn len_word(pages: u16, tail: u16) -> u64 {
    (tail as u64) << 32 | pages as u64
}

#[inline]
pub(super) fn len_of(w: u64) -> Option<(u16, u16)> {
    let pages = u16::try_from(w & 0xffff_ffff).ok()?;
    let tail = u16::try_from(w >> 32).ok()?;
    (tail <= caps::MAX_BYTE_OFFSET && (tail == 0 || pages > 0)).then_some((pages, tail))
}

/// A map's offset: its pages in bits 0..32 (at most a u16), its bytes past them in bits 32 and
/// up.
#[inline]
pub(super) fn offset_word(o: Offset) -> u64 {
    (o.bytes as u64) << 32 | o.pages as u64
}

#[inline]
pub(super) fn offset_of(w: u64) -> Option<Offset> {
    let pages = u16::try_from(w & 0xffff_ffff).ok()?;
    let bytes = u16::try_from(w >> 32).ok()?;
    (bytes < caps::MAX_BYTE_OFFSET).then_some(Offset { pages, bytes })
}

/// A map's fd and offset, as two words.
#[inline]
pub(super) fn args_words(a: MapArgs) -> [u64; 2] {
    [a.fd as u64 | (a.hugetlb as u64) << 1, offset_word(a.offset)]
}

/// A map's flags word: bit 0 `fd`, bit 1 `hugetlb` (docs/SEMANTICS.md L6).
#[inline]
pub(super) fn map_flags_of(w: u64) -> Option<(bool, bool)> {
    (w <= 3).then_some((w & 1 != 0, w & 2 != 0))
}

#[inline]
pub(super) fn flag_of(w: u64) -> Option<bool> {
    match w {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

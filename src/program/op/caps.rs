//! Hard caps that keep random programs harmless to the machine. The parser rejects traces past
//! them, the generators never exceed them and the executor enforces them again.
//!
//! Only numbers live here; the [`Validator`](super::Validator) is what holds a program to them.

/// Pages in one `map` or `remap` result: 1024, so that a mapping can hold two PMD-sized
/// (2 MiB) huge pages on a 4 KiB kernel (docs/SEMANTICS.md L1). Mappings past
/// [`CLASSIC_MAP_PAGES`] are bounded together by [`MAX_BIG_PAGES`].
pub const MAX_MAP_PAGES: u16 = 1024;
/// The cap of the first version (the 1..=64): what the classic generator draws, so
/// that old fuzz artifacts decode to the same programs, and what every trace written before
/// the cap was raised stays within.
pub const CLASSIC_MAP_PAGES: u16 = 64;
/// Pages of all the maps and remap results of one program that are longer than
/// [`CLASSIC_MAP_PAGES`], added up: keeps a full-state view (a digest per page, in one reply
/// of the executor) and the model small whatever a trace asks for.
pub const MAX_BIG_PAGES: u32 = 2048;
/// Mapping handles per program.
pub const MAX_MAPS: usize = 32;
/// Process handles per program, the root included.
pub const MAX_PROCS: usize = 32;
/// Processes alive at once.
pub const MAX_LIVE: usize = 16;
/// Ops per program.
pub const MAX_OPS: usize = 512;
/// Byte offsets inside a page are bounded by the smallest page size Linux has (4 KiB), so a
/// trace means the same thing on 4 KiB, 16 KiB and 64 KiB kernels.
pub const MAX_BYTE_OFFSET: u16 = 4096;
/// Base pages in one hugetlb page, as the language reckons it (docs/SEMANTICS.md L6): 2 MiB on a
/// 4 KiB kernel, x86-64's default huge page. A `map ... hugetlb` of N pages names the whole
/// huge pages N rounds up to; the probe reports hugetlb only where the kernel's default huge
/// page is this many base pages (`Features::hugetlb`).
pub const HUGETLB_PAGES: u16 = 512;

//! Hard caps that keep random programs harmless to the machine. The parser rejects traces past
//! them, the generators never exceed them and the executor enforces them again.
//!
//! Only numbers live here; the [`Validator`](super::Validator) is what holds a program to them.

/// Pages in one `map` (the 1..=64).
pub const MAX_MAP_PAGES: u16 = 64;
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

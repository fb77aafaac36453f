//! What glibc's own allocator adds to the malloc family (docs/SEMANTICS.md M8 to M11), checked
//! only where the executor probed that `malloc` is glibc's (`Features::glibc_malloc`). The
//! executor reports, for each allocator op that succeeded, the length of the range that
//! appeared during the call and begins 16 bytes before the block (a chunk in a mapping of its
//! own) and the bytes of the ranges that went away (`Outcome::Allocated`). Whether glibc maps
//! a chunk at all depends on its heap (a top that holds the request serves it), so that is
//! learnt; what follows from it is checked:
//!
//! - a chunk gets a mapping of its own only at or above the mmap threshold in force, never
//!   with `mmap-max` 0, and the mapping is the chunk's size plus 8 bytes rounded up to the page
//!   (M8);
//! - `free` of such a chunk unmaps exactly its mapping at once (M9);
//! - `mallopt` sets the threshold and the count, per process, inherited by fork, and turns the
//!   dynamic threshold off in that process (M10);
//! - where the executor probed glibc's dynamic threshold on (`Features::glibc_dynamic_threshold`)
//!   a root starts at the default 128 KiB, and freeing a mapped chunk smaller than 32 MiB raises
//!   the threshold to its size (M11). Without that probe the threshold is known only after the
//!   process's own `mallopt mmap-threshold`.

use super::{Model, ModelError};
use crate::program::{AllocCall, MalloptParam, MapId, ProcId, Tune, caps};

/// glibc's `DEFAULT_MMAP_THRESHOLD_MIN`, the threshold a process starts with (M11).
pub const DEFAULT_MMAP_THRESHOLD: u64 = 128 * 1024;
/// glibc's `DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit (`4 * 1024 * 1024 * sizeof(long)`): the
/// largest chunk whose free raises the threshold (M11).
pub const DEFAULT_MMAP_THRESHOLD_MAX: u64 = 32 << 20;
/// The flag bit of a mapped chunk's size word, which `__libc_free()` compares with the
/// threshold along with the size (M11).
const IS_MMAPPED: u64 = 2;

/// glibc's settings in each process, as the model knows them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Settings {
    /// M_MMAP_THRESHOLD in force (from the root's default, a free's raise or mallopt).
    threshold: u64,
    /// Whether the process (or an ancestor before its fork) set M_MMAP_THRESHOLD with mallopt:
    /// the threshold is then known even where the probe said the dynamic threshold was off.
    set: bool,
    /// Whether a mallopt of the threshold, the trim threshold or mmap-max turned the dynamic
    /// threshold off in this process (M10).
    fixed: bool,
    /// The size of the freed mapped chunk that raised the threshold last, if a free did (M11).
    raised_by: Option<u64>,
    /// Whether M_MMAP_MAX was set to 0.
    no_mmap: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            threshold: DEFAULT_MMAP_THRESHOLD,
            set: false,
            fixed: false,
            raised_by: None,
            no_mmap: false,
        }
    }
}

impl Settings {
    /// The threshold in force, where the model knows it: in every process where the probe
    /// found glibc's defaults with the dynamic threshold on, else after a mallopt.
    fn known(&self, dynamic_probed: bool) -> Option<u64> {
        (dynamic_probed || self.set).then_some(self.threshold)
    }
}

pub(super) type PerProc = [Settings; caps::MAX_PROCS];

/// glibc's chunk size for a request (`checked_request2size`): the request plus 8, rounded up
/// to 16, at least 32.
fn chunk_size(size: u32) -> u64 {
    ((size as u64 + 8 + 15) & !15).max(32)
}

/// The length of a chunk's own mapping (`sysmalloc`, `mremap_chunk`): the chunk's size plus
/// 8, rounded up to the page.
pub(super) fn mapping_len(size: u32, page_size: u64) -> u64 {
    (chunk_size(size) + 8).next_multiple_of(page_size)
}

impl Model {
    /// Whether the glibc rules apply.
    pub(super) fn glibc(&self) -> bool {
        self.features.glibc_malloc
    }

    /// `mallopt` in `proc` (M10): each of the three parameters turns the dynamic threshold
    /// off in the process (M11).
    pub(super) fn glibc_tune(&mut self, proc: ProcId, tune: Tune) {
        let s = &mut self.heap.glibc[proc.0 as usize];
        if let Tune::Mallopt { param, value } = tune {
            // The worker passes the value as an int, cut at i32::MAX.
            let value = value.min(i32::MAX as u32) as u64;
            s.fixed = true;
            match param {
                MalloptParam::MmapThreshold => {
                    s.threshold = value;
                    s.set = true;
                    s.raised_by = None;
                }
                MalloptParam::MmapMax => s.no_mmap = value == 0,
                MalloptParam::TrimThreshold => {}
            }
        }
    }

    /// [M11] `free` of a mapped chunk of `own` bytes in `proc`: with the dynamic threshold on,
    /// a chunk whose size word (its size and the IS_MMAPPED bit) is above the threshold and at
    /// most DEFAULT_MMAP_THRESHOLD_MAX raises the threshold to its size.
    pub(super) fn glibc_released(&mut self, proc: ProcId, own: u64) {
        if !self.features.glibc_dynamic_threshold {
            return;
        }
        let s = &mut self.heap.glibc[proc.0 as usize];
        let word = own | IS_MMAPPED;
        if !s.fixed && word > s.threshold && word <= DEFAULT_MMAP_THRESHOLD_MAX {
            s.threshold = own;
            s.raised_by = Some(own);
        }
    }

    /// [M8] An allocation that came in a fresh mapping of its own (`appeared` > 0): allowed
    /// only at or above the threshold and with `mmap-max` not 0, and of glibc's length. The
    /// block's own mapping, if it has one (for M9's check at `free`).
    pub(super) fn glibc_placed(
        &self,
        proc: ProcId,
        map: MapId,
        (call, size): (AllocCall, u32),
        addr: u64,
        appeared: u64,
        old_own: Option<(u64, u64)>,
    ) -> Result<Option<u64>, ModelError> {
        if call.align().is_some_and(|a| a > 16) {
            // memalign carves the aligned block out of a larger chunk: not 16 bytes in. At an
            // alignment of 16 or less it is malloc (glibc `_mid_memalign()`), and checked so:
            // a realloc of its mapped chunk is M9's (M8).
            return Ok(None);
        }
        let s = self.heap.glibc[proc.0 as usize];
        let bad = |reason: String| ModelError::Placement { map, addr, reason };
        let nb = chunk_size(size);
        let len = mapping_len(size, self.page_size);
        if appeared > 0 && appeared != len {
            // Not a chunk's own mapping: the heap grew by a mapping (`sysmalloc` maps at least
            // 1 MiB as the new top when brk cannot grow), and the block was carved from it.
            if appeared < nb {
                return Err(bad(format!(
                    "is in a fresh mapping of {appeared} bytes, smaller than its chunk ({nb} \
                     bytes) (M8)"
                )));
            }
            return Ok(None);
        }
        if appeared > 0 && old_own.is_some() {
            // A realloc of a mapped chunk that mremap moved (`mremap_chunk`, M9): neither the
            // threshold nor mmap-max has a say.
            return Ok(Some(appeared));
        }
        if appeared > 0 {
            if s.no_mmap {
                return Err(bad(format!(
                    "is in a fresh mapping of {appeared} bytes after mallopt mmap-max 0 (M8)"
                )));
            }
            if let Some(threshold) = s.known(self.features.glibc_dynamic_threshold)
                && nb < threshold
            {
                let why = match s.raised_by {
                    Some(chunk) => {
                        format!(", raised by the free of a mapped chunk of {chunk} bytes: M11")
                    }
                    None => String::new(),
                };
                return Err(bad(format!(
                    "is in a fresh mapping of {appeared} bytes, but its chunk ({nb} bytes) is \
                     below the mmap threshold in force ({threshold}{why}) (M8)"
                )));
            }
            return Ok(Some(appeared));
        }
        // A realloc of a mapped chunk that stayed where it was: mremap resized its mapping
        // in place (`mremap_chunk`).
        Ok(match old_own {
            Some((old_addr, _)) if old_addr == addr => Some(len),
            _ => None,
        })
    }

    /// [M9] `free` of a block in a mapping of its own unmaps exactly that mapping.
    pub(super) fn glibc_freed(
        &self,
        map: MapId,
        addr: u64,
        own: u64,
        vanished: u64,
    ) -> Result<(), ModelError> {
        if vanished == own {
            return Ok(());
        }
        Err(ModelError::Placement {
            map,
            addr,
            reason: format!(
                "was in a mapping of its own of {own} bytes, but free unmapped {vanished} bytes \
                 (M9)"
            ),
        })
    }
}

//! What the target (the kernel, or a Linux-compatible runtime, under the executor) supports:
//! probed by the executor at start by trying, carried to the front in its hello, and read by
//! the model (where behaviour depends on it) and the generator (to skip what is missing).

use crate::program::{Advice, MapKind};

/// What the kernel supports, probed at start by trying (never by parsing versions). The model
/// needs it where behaviour depends on it; the generator to skip what is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// MADV_GUARD_INSTALL/REMOVE on private anonymous memory (6.13).
    pub guard: bool,
    /// Guard regions on shmem (6.15).
    pub guard_shared: bool,
    /// MADV_POPULATE_READ/WRITE (5.14).
    pub populate: bool,
    /// MADV_COLD/PAGEOUT (5.4).
    pub cold_pageout: bool,
    /// MADV_WIPEONFORK (4.14).
    pub wipeonfork: bool,
    /// MADV_FREE (4.5).
    pub free: bool,
    /// MREMAP_DONTUNMAP on private anonymous memory (5.7).
    pub dontunmap: bool,
    /// MREMAP_DONTUNMAP on shared memory (5.13).
    pub dontunmap_shared: bool,
    /// MAP_FIXED_NOREPLACE (4.17): older kernels treat it as a hint.
    pub noreplace: bool,
    /// Forced writes through /proc/self/mem to memory the mapping does not let us write
    /// (`proc_mem.force_override=never` forbids them, 6.12).
    pub force_write: bool,
    /// A pure mremap move (MREMAP_FIXED, same size) that spans several VMAs (6.17; before,
    /// EFAULT with nothing moved: docs/SEMANTICS.md G4).
    pub move_multi_vma: bool,
    /// MADV_COLLAPSE (6.1): a synchronous collapse into PMD-sized THPs (docs/SEMANTICS.md L3).
    pub collapse: bool,
    /// An anonymous mapping whose length is a multiple of the PMD size, placed by the kernel,
    /// starts on a PMD boundary (6.7, and only for such lengths since 6.12; L1).
    pub thp_align: bool,
    /// The executor's `malloc` is glibc's own (ptmalloc in libc.so.6), not an allocator put in
    /// front of it with `LD_PRELOAD` nor another C library's (docs/SEMANTICS.md M7).
    pub glibc_malloc: bool,
    /// glibc's dynamic mmap threshold is on in the processes the executor forks: freeing a
    /// mapped chunk raises the threshold (docs/SEMANTICS.md M11). Off where glibc was tuned
    /// (`GLIBC_TUNABLES`, `MALLOC_*_` variables) or is not the allocator.
    pub glibc_dynamic_threshold: bool,
    /// `clone(CLONE_VM | SIGCHLD)` makes a process that shares the caller's memory
    /// (docs/SEMANTICS.md T30): always on Linux; an emulator may refuse or copy.
    pub clone_vm: bool,
    /// Anonymous MAP_HUGETLB mappings can be made, with a default huge page of
    /// `caps::HUGETLB_PAGES` base pages (docs/SEMANTICS.md L6, L7): a pool exists (the
    /// executor adds a share as root) and the kernel refuses to unmap part of a huge page.
    pub hugetlb: bool,
}

impl Features {
    /// Everything this model knows of.
    pub const ALL: Features = Features {
        guard: true,
        guard_shared: true,
        populate: true,
        cold_pageout: true,
        wipeonfork: true,
        free: true,
        dontunmap: true,
        dontunmap_shared: true,
        noreplace: true,
        force_write: true,
        move_multi_vma: true,
        collapse: true,
        thp_align: true,
        glibc_malloc: true,
        glibc_dynamic_threshold: true,
        clone_vm: true,
        hugetlb: true,
    };

    /// (name, supported) pairs, for reports.
    pub fn list(&self) -> Vec<(&'static str, bool)> {
        vec![
            ("MADV_GUARD_INSTALL (6.13)", self.guard),
            ("guard regions on shmem (6.15)", self.guard_shared),
            ("MADV_POPULATE_READ/WRITE (5.14)", self.populate),
            ("MADV_COLD/PAGEOUT (5.4)", self.cold_pageout),
            ("MADV_WIPEONFORK (4.14)", self.wipeonfork),
            ("MADV_FREE (4.5)", self.free),
            ("MREMAP_DONTUNMAP (5.7)", self.dontunmap),
            (
                "MREMAP_DONTUNMAP on shared memory (5.13)",
                self.dontunmap_shared,
            ),
            ("MAP_FIXED_NOREPLACE (4.17)", self.noreplace),
            ("forced writes through /proc/self/mem", self.force_write),
            ("mremap moves across VMAs (6.17)", self.move_multi_vma),
            ("MADV_COLLAPSE (6.1)", self.collapse),
            ("PMD-aligned anonymous mappings (6.7)", self.thp_align),
            ("malloc is glibc's own (ptmalloc)", self.glibc_malloc),
            (
                "glibc's dynamic mmap threshold is on",
                self.glibc_dynamic_threshold,
            ),
            ("clone(CLONE_VM) children", self.clone_vm),
            ("hugetlb pages (MAP_HUGETLB, 2 MiB)", self.hugetlb),
        ]
    }

    /// Whether an advice may be generated for a mapping kind.
    pub fn allows(&self, advice: Advice, kind: MapKind) -> bool {
        match advice {
            Advice::GuardInstall | Advice::GuardRemove => {
                self.guard && (!kind.is_shared() || self.guard_shared)
            }
            Advice::PopulateRead | Advice::PopulateWrite => self.populate,
            Advice::Cold | Advice::PageOut => self.cold_pageout,
            Advice::WipeOnFork | Advice::KeepOnFork => self.wipeonfork,
            Advice::Free => self.free,
            Advice::Collapse => self.collapse,
            _ => true,
        }
    }
}

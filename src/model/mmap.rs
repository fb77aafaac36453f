//! mmap and munmap, as in mm/mmap.c and mm/vma.c: lengths rounded up to whole pages (for every
//! call that takes one), the fd and offset mmap takes, where a mapping goes (the kernel's
//! choice, a hint, MAP_FIXED, MAP_FIXED_NOREPLACE, both), fresh zero pages, removing pages, the
//! identity of VMAs (`split_vma`), and the errnos of bad arguments to mmap and munmap. Never
//! decides what a page holds beyond "fresh zero"; faults and writes are `memory.rs`'s.

use super::errno::*;
use super::frame::FrameId;
use super::space::{Alts, ObjId, PageBacking, Pte};
use super::{Model, ModelError, SharedObject, observed_addr};
use crate::program::outcome::{Outcome, PROT_R, PROT_W};
use crate::program::{BadArg, MapArgs, MapId, MapKind, PlaceHow, ProcId};

/// Where the model places mappings when no kernel tells it: top-down from here, never reusing
/// an address, which is one of the placements Linux may choose.
pub(super) const MODEL_MMAP_TOP: u64 = 0x7f00_0000_0000;

/// One mmap as the program asks for it.
pub(super) struct Mmap {
    pub proc: ProcId,
    /// The handle the new mapping is named by.
    pub map: MapId,
    pub kind: MapKind,
    /// The length in bytes, as the call passes it.
    pub len: u64,
    pub args: MapArgs,
    /// A placement and the address it names (perhaps unaligned), if the program names one
    /// (`map ... fixed|noreplace|fixed-noreplace|hint mN+P`).
    pub place: Option<(PlaceHow, u64)>,
}

/// One mmap at an address the program names, its length in whole pages.
struct MapAt {
    proc: ProcId,
    map: MapId,
    kind: MapKind,
    pages: u16,
    how: PlaceHow,
    /// The address asked for, perhaps unaligned.
    addr: u64,
}

impl Model {
    /// A length in bytes as the whole pages it covers, `PAGE_ALIGN(len) >> PAGE_SHIFT`, as every
    /// call that takes a length rounds it (A9): mm/mmap.c `do_mmap()`, mm/vma.c
    /// `do_vmi_munmap()`, mm/mprotect.c `do_mprotect_pkey()`, mm/madvise.c
    /// `madvise_should_skip()` and `madvise_do_behavior()`, mm/mremap.c `do_mremap()`. The rest
    /// of the last page is part of the range: mapped (and zero), unmapped, protected or advised
    /// with the rest; the page after it is not.
    pub(super) fn page_align(&self, len: u64) -> u64 {
        len.div_ceil(self.page_size)
    }

    /// mmap: the offset first (an unaligned one is EINVAL before anything else, as the arch's
    /// `sys_mmap` checks it; A10), then the length rounded up (A9), then the placement. The fd
    /// of an anonymous mapping is never looked at (`ksys_mmap_pgoff()` takes a file only
    /// without MAP_ANONYMOUS), and an aligned offset changes nothing (`do_mmap()` sets the
    /// page offset of anonymous memory itself); a /dev/zero mapping is a new object or new
    /// anonymous memory whichever descriptor maps it (A10, C4).
    pub(super) fn mmap(
        &mut self,
        request: Mmap,
        observed: Option<&Outcome>,
    ) -> Result<Outcome, ModelError> {
        let Mmap {
            proc,
            map,
            kind,
            len,
            args,
            place,
        } = request;
        if !args.offset.is_aligned() {
            return Ok(Outcome::Failed { errno: EINVAL });
        }
        if args.hugetlb {
            return self.mmap_hugetlb(proc, map, kind, len, observed);
        }
        let pages = self.page_align(len) as u16;
        match place {
            None => {
                if let Some(addr) = observed_addr(observed)
                    && kind == MapKind::Private
                {
                    self.check_thp_placement(map, addr, pages as u64)?;
                }
                self.do_mmap(proc, map, kind, pages, observed_addr(observed))
            }
            Some((how, addr)) => {
                let request = MapAt {
                    proc,
                    map,
                    kind,
                    pages,
                    how,
                    addr,
                };
                self.map_at(request, observed)
            }
        }
    }

    /// The model's own choice of a free range (get_unmapped_area when no kernel tells): top
    /// down, one page of gap between mappings.
    pub(super) fn get_unmapped_area(&mut self, pages: u16) -> u64 {
        self.next_placement -= (pages as u64 + 1) * self.page_size;
        self.next_placement
    }

    /// Checks the kernel's (or the model's) choice of a range for a mapping that may not
    /// replace anything: page aligned, not wrapping, and free (A5).
    pub(super) fn check_free(
        &self,
        proc: ProcId,
        map: MapId,
        addr: u64,
        pages: u16,
    ) -> Result<(), ModelError> {
        let bad = |reason: &str| ModelError::Placement {
            map,
            addr,
            reason: reason.to_string(),
        };
        if !addr.is_multiple_of(self.page_size) {
            return Err(bad("is not page aligned"));
        }
        if addr.checked_add(pages as u64 * self.page_size).is_none() {
            return Err(bad("wraps around the address space"));
        }
        if self.space(proc).any_mapped(self.vpn(addr), pages as u64) {
            return Err(bad(&format!(
                "overlaps pages that {proc} still maps: without MAP_FIXED the kernel must choose a free range (docs/SEMANTICS.md A5)"
            )));
        }
        Ok(())
    }

    /// mmap with no address: where the kernel put it (`placement`), or the model's choice.
    pub(super) fn do_mmap(
        &mut self,
        proc: ProcId,
        map: MapId,
        kind: MapKind,
        pages: u16,
        placement: Option<u64>,
    ) -> Result<Outcome, ModelError> {
        let addr = match placement {
            Some(addr) => addr,
            None => self.get_unmapped_area(pages),
        };
        self.check_free(proc, map, addr, pages)?;
        self.mmap_region(proc, map, kind, pages, addr);
        Ok(Outcome::Mapped { addr })
    }

    /// Maps fresh zero pages of `kind` at `addr` (which must be free) and names them `map`
    /// (A1, A2, C1, C2): a private page reads the zero page until written; a shared mapping is
    /// a new object of its size.
    pub(super) fn mmap_region(
        &mut self,
        proc: ProcId,
        map: MapId,
        kind: MapKind,
        pages: u16,
        addr: u64,
    ) {
        let vpn = self.vpn(addr);
        let obj = kind.is_shared().then(|| self.new_object(pages as usize));
        let vma = self.new_vma();
        let space = self.space_mut(proc);
        for i in 0..pages as u32 {
            let backing = match obj {
                Some(obj) => PageBacking::Object { obj, index: i },
                None => PageBacking::Private(FrameId::ZERO),
            };
            space.ptes.insert(
                vpn + i as u64,
                Pte {
                    kind,
                    prot: PROT_R | PROT_W,
                    backing,
                    flags: 0,
                    alts: Alts::default(),
                    vma,
                    pgoff: Some(match kind {
                        MapKind::Private => vpn + i as u64,
                        _ => i as u64,
                    }),
                    tlb: 0,
                },
            );
        }
        if let Some(obj) = obj {
            self.object_mut(obj).ptes += pages as u32;
        }
        self.name_result(map, addr, pages, kind);
    }

    /// A new shared object of `pages` zero pages (shmem_zero_setup), in the first free slot.
    fn new_object(&mut self, pages: usize) -> ObjId {
        let obj = SharedObject {
            frames: vec![FrameId::ZERO; pages],
            ptes: 0,
        };
        match self.objects.iter().position(Option::is_none) {
            Some(i) => {
                self.objects[i] = Some(obj);
                ObjId(i as u32)
            }
            None => {
                self.objects.push(Some(obj));
                ObjId(self.objects.len() as u32 - 1)
            }
        }
    }

    /// A VMA identity no page has had.
    pub(super) fn new_vma(&mut self) -> u32 {
        self.next_vma += 1;
        self.next_vma
    }

    /// The VMA identity a page of VMA `old` gets from a call that changes VMA attributes
    /// (split_vma): one new identity per old one, so pages that were one VMA stay one, and
    /// pages that were not stay apart even when their attributes become equal (the kernel may
    /// or may not merge them back: `one_vma` then answers `OneVma::Maybe`).
    pub(super) fn split_vma(&mut self, renamed: &mut Vec<(u32, u32)>, old: u32) -> u32 {
        if let Some(&(_, new)) = renamed.iter().find(|(o, _)| *o == old) {
            return new;
        }
        let new = self.new_vma();
        renamed.push((old, new));
        new
    }

    /// mmap at an address the program names.
    fn map_at(
        &mut self,
        request: MapAt,
        observed: Option<&Outcome>,
    ) -> Result<Outcome, ModelError> {
        let MapAt {
            proc,
            map,
            kind,
            pages,
            how,
            addr,
        } = request;
        let vpn = self.vpn(addr);
        // MAP_FIXED_NOREPLACE makes do_mmap() set MAP_FIXED too, and get_unmapped_area() then
        // refuses an address inside a page with EINVAL, before anything is looked at (D6, D7).
        if how.is_exact() && !addr.is_multiple_of(self.page_size) {
            return Ok(Outcome::Failed { errno: EINVAL });
        }
        match how {
            // MAP_FIXED: whatever was there goes first, then fresh zero pages (D3).
            PlaceHow::Fixed => {
                // Unless that would cut a huge page (L8): the place may hold another
                // process's handle's range, where this one's kernel put a hugetlb mapping.
                if let Some(refused) = self.hugetlb_munmap(proc, vpn, pages as u64) {
                    return Ok(refused);
                }
                self.do_munmap(proc, vpn, pages as u64);
                self.mmap_region(proc, map, kind, pages, addr);
                Ok(Outcome::Mapped { addr })
            }
            // MAP_FIXED_NOREPLACE, with MAP_FIXED or without: EEXIST if anything is there (D4,
            // D6). The range lies inside a program handle's range, which the harness never
            // maps, so the model knows.
            PlaceHow::NoReplace | PlaceHow::FixedNoReplace => {
                if self.space(proc).any_mapped(vpn, pages as u64) {
                    return Ok(Outcome::Failed { errno: EEXIST });
                }
                self.mmap_region(proc, map, kind, pages, addr);
                Ok(Outcome::Mapped { addr })
            }
            // A hint: taken if the kernel likes it, else anywhere free (A5). Run alone, the
            // model takes an unaligned hint's page, as 6.18 does when it is free (D7).
            PlaceHow::Hint => {
                let page = vpn * self.page_size;
                let chosen = match observed_addr(observed) {
                    Some(a) => a,
                    None if !self.space(proc).any_mapped(vpn, pages as u64) => page,
                    None => self.get_unmapped_area(pages),
                };
                self.do_mmap(proc, map, kind, pages, Some(chosen))
            }
        }
    }

    /// munmap of `[vpn, vpn + n)`: every page in it goes, an unmapped part is no error (D1).
    pub(super) fn do_munmap(&mut self, proc: ProcId, vpn: u64, n: u64) {
        let removed = self.space_mut(proc).remove_range(vpn, n);
        for (_, pte) in removed {
            self.release(&pte);
        }
    }
}

/// mmap with a bad argument, measured on 6.18 with the probe that cowcheck's `invalid` op
/// mirrors (man mmap ERRORS agrees): length 0 EINVAL (A4); MAP_FIXED at an unaligned address
/// EINVAL (D3); a length whose rounding wraps ENOMEM (A4).
pub(super) fn mmap_bad_arg(bad: BadArg) -> Outcome {
    let errno = match bad {
        BadArg::Overflow => ENOMEM,
        _ => EINVAL,
    };
    Outcome::Failed { errno }
}

/// munmap with a bad argument (measured on 6.18, as `mmap_bad_arg`): length 0, unaligned,
/// wrapping: EINVAL (D1).
pub(super) fn munmap_bad_arg(_bad: BadArg) -> Outcome {
    Outcome::Failed { errno: EINVAL }
}

//! mremap (G1-G10), split as mm/mremap.c is since the 6.16 rework, with its names:
//!
//! ```text
//! mremap                  the op's arguments become a VmaRemap (vma_remap_struct, "vrm"),
//!                         its sizes rounded up to whole pages (A9)
//! `- do_mremap
//!    |- check_mremap_params    flags, sizes, an unaligned or overlapping
//!    |                         destination: EINVAL                       (G1, G5, G10)
//!    |- (the source looked up) EFAULT when nothing is mapped there
//!    |- check_prep_vma         what the source allows; is it one VMA?  (G4, G6, G7)
//!    |- remap_move             a pure move spanning VMAs (6.17+), VMA by VMA      (G4)
//!    |- mremap_to              MREMAP_FIXED or MREMAP_DONTUNMAP: a move       (G5, G6)
//!    |  `- move_vma, or duplicate_vma for old size 0                              (G7)
//!    `- mremap_at              no new address asked for:
//!       |- shrink_vma          shrinking (or keeping the size) cuts the tail      (G2)
//!       `- expand_vma          growing: in place (expand_vma_in_place), or with
//!                              MREMAP_MAYMOVE move_vma, else ENOMEM               (G3)
//! ```
//!
//! Moved pages keep their frames, flags and guards (F8, G9); a private tail grows zero; a
//! shared object never grows, so its new tail raises SIGBUS (G8). Where Linux leaves the
//! choice (room to grow in place, where a moved range goes, whether two VMAs with equal
//! attributes were merged), the model learns it from the observation; where a failed
//! MREMAP_FIXED move may or may not have unmapped its destination (6.1 and 6.12 do, 6.18 does
//! not: G5), it holds both worlds until the observations tell them apart (`step_worlds`,
//! `choose_world`). Never touches another process's pages.

use super::errno::*;
use super::frame::FrameId;
use super::space::{Alts, PageBacking, Pte, flag};
use super::{Model, ModelError, observed_addr, observed_errno};
use crate::program::outcome::Outcome;
use crate::program::{BadArg, MapId, MapKind, ProcId, RemapFlags};
use worlds::MAX_WORLDS;

#[path = "mremap_worlds.rs"]
mod worlds;

/// One mremap op's arguments, as `step` has them.
pub(super) struct Mremap {
    pub proc: ProcId,
    /// The source's first page's address.
    pub addr: u64,
    /// The old and new sizes in bytes, as the call passes them (old size 0: an alias).
    pub old_len: u64,
    pub new_len: u64,
    /// The pages the result's handle covers.
    pub new_pages: u16,
    pub flags: RemapFlags,
    /// The handle the result is named by.
    pub result: MapId,
}

/// One mremap as it is worked through: the model's `struct vma_remap_struct`.
struct VmaRemap<'o> {
    proc: ProcId,
    /// The source's first page (`vrm->addr`), as a page number and an address.
    vpn: u64,
    addr: u64,
    /// The old and new lengths in pages (`vrm->old_len`, `vrm->new_len`, page aligned). A
    /// shrinking move cuts the old length to the new one; a multi-VMA move that stops cuts
    /// both.
    old_len: u64,
    new_len: u64,
    /// Whether the sizes as the call passed them, in bytes, differ (while their pages may
    /// not: G10).
    sizes_differ: bool,
    /// The new length as the call gave it: the result's handle covers this many pages.
    new_pages: u16,
    flags: RemapFlags,
    /// MREMAP_FIXED's address (`vrm->new_addr`).
    new_addr: Option<u64>,
    /// The handle the result is named by.
    result: MapId,
    /// What the kernel did, where there is a kernel.
    observed: Option<&'o Outcome>,
    /// The VMAs known to have been faulted (an anon_vma): those holding a written private
    /// page, looked at before anything moves or is unmapped (see `move_vma`).
    faulted: Vec<u32>,
    /// The source spans VMAs (or may, and the kernel said it did): a pure move goes VMA by
    /// VMA (`remap_move`).
    multi: bool,
}

impl VmaRemap<'_> {
    /// MREMAP_FIXED and MREMAP_DONTUNMAP always move (`vrm_implies_new_addr`).
    fn implies_new_addr(&self) -> bool {
        self.flags.fixed.is_some() || self.flags.dontunmap
    }

    /// Whether the call maps anything new (`vrm_will_map_new`): a move, or growing. Shrinking
    /// or keeping the size in place does not. (Old size 0 with new size 0 counts as mapping
    /// new; Linux refuses new size 0 before it gets here.)
    fn will_map_new(&self) -> bool {
        self.implies_new_addr() || self.new_len > self.old_len || self.old_len == 0
    }

    /// A move to a fixed address that keeps the size (`vrm_move_only`): since 6.17 it may span
    /// VMAs.
    fn move_only(&self) -> bool {
        self.flags.fixed.is_some() && self.old_len == self.new_len
    }
}

/// Whether a range of pages is one VMA, as far as the model can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OneVma {
    /// Equal attributes, all from one call: certainly one VMA.
    Yes,
    /// Equal attributes, but made by different calls, which the kernel may or may not have
    /// merged.
    Maybe,
    /// Not one VMA: a hole, attributes that differ, or page offsets that do not follow on.
    No,
}

fn fail(errno: i32) -> Result<Outcome, ModelError> {
    Ok(Outcome::Failed { errno })
}

impl Model {
    /// mremap: the call becomes a `VmaRemap`, worked through by `do_mremap`.
    pub(super) fn mremap(
        &mut self,
        call: Mremap,
        observed: Option<&Outcome>,
    ) -> Result<Outcome, ModelError> {
        let vpn = self.vpn(call.addr);
        let mut faulted: Vec<u32> = Vec::new();
        for p in self.space(call.proc).ptes.values() {
            if matches!(p.backing, PageBacking::Private(f) if f != FrameId::ZERO)
                && !faulted.contains(&p.vma)
            {
                faulted.push(p.vma);
            }
        }
        let mut vrm = VmaRemap {
            proc: call.proc,
            vpn,
            addr: vpn * self.page_size,
            // do_mremap(): PAGE_ALIGN of both sizes (A9).
            old_len: self.page_align(call.old_len),
            new_len: self.page_align(call.new_len),
            sizes_differ: call.old_len != call.new_len,
            new_pages: call.new_pages,
            flags: call.flags,
            new_addr: call.flags.fixed.map(|at| self.at(at)),
            result: call.result,
            observed,
            faulted,
            multi: false,
        };
        self.do_mremap(&mut vrm)
    }

    /// One page of `proc` moved from page `from` to page `to` as `mremap(from, page, page,
    /// MREMAP_MAYMOVE | MREMAP_FIXED, to)` moves it, naming no handle: a racing `remap`
    /// thread's round (T13). `to` is unmapped first; a hole at `from` is EFAULT.
    pub(super) fn move_page(&mut self, proc: ProcId, from: u64, to: u64) -> Result<(), i32> {
        let Some(src) = self.space(proc).get(from).copied() else {
            return Err(EFAULT);
        };
        let faulted: Vec<u32> = (self.space(proc).ptes.values())
            .filter(|p| matches!(p.backing, PageBacking::Private(f) if f != FrameId::ZERO))
            .map(|p| p.vma)
            .collect();
        let vrm = VmaRemap {
            proc,
            vpn: from,
            addr: from * self.page_size,
            old_len: 1,
            new_len: 1,
            sizes_differ: false,
            new_pages: 1,
            flags: RemapFlags {
                maymove: true,
                dontunmap: false,
                fixed: None,
            },
            new_addr: Some(to * self.page_size),
            result: MapId(0),
            observed: None,
            faulted,
            multi: false,
        };
        self.do_munmap(proc, to, 1);
        self.move_vma(&vrm, &src, to * self.page_size)
            .map_err(|_| EFAULT)
    }

    /// The arguments are checked (EINVAL), then the source (EFAULT unless it is mapped and, where
    /// the call maps anything new, one VMA), then the call moves or resizes.
    fn do_mremap(&mut self, vrm: &mut VmaRemap) -> Result<Outcome, ModelError> {
        if let Err(errno) = self.check_mremap_params(vrm) {
            return fail(errno);
        }
        let Some(src) = self.space(vrm.proc).get(vrm.vpn).copied() else {
            // 6.18 looks the address up first (EFAULT); kernels before the 6.16 rework shrank
            // without looking (probe: "shrink, hole at start -> EFAULT" on 6.18).
            if !vrm.will_map_new() && observed_addr(vrm.observed) == Some(vrm.addr) {
                self.shrink_vma(vrm);
                return Ok(self.name_result(vrm.result, vrm.addr, vrm.new_pages, MapKind::Private));
            }
            return fail(EFAULT);
        };
        if let Err(errno) = self.check_prep_vma(vrm, &src) {
            self.maybe_unmapped_first(vrm, &src, errno);
            return fail(errno);
        }
        if vrm.multi {
            self.remap_move(vrm, &src)
        } else if vrm.implies_new_addr() {
            self.mremap_to(vrm, &src)
        } else {
            self.mremap_at(vrm, &src)
        }
    }

    /// The flags and sizes, before the source is looked up (G1): MREMAP_FIXED's address is
    /// page aligned (G10), MREMAP_FIXED and MREMAP_DONTUNMAP need MREMAP_MAYMOVE, DONTUNMAP
    /// keeps the size, and the new range may not overlap the old one (G5), checked with the
    /// arguments, before the address is looked up (check_mremap_params; measured).
    fn check_mremap_params(&self, vrm: &VmaRemap) -> Result<(), i32> {
        let flags = vrm.flags;
        // Kernels before the 6.16 rework look the source up before `mremap_to()` checks the
        // destination: with nothing mapped at the source, a bad destination is EFAULT there
        // (measured on 6.12), EINVAL on 6.18. Both are allowed, learnt from the errno (G10).
        let destination = || {
            if self.space(vrm.proc).get(vrm.vpn).is_none()
                && observed_errno(vrm.observed) == Some(EFAULT)
            {
                EFAULT
            } else {
                EINVAL
            }
        };
        if vrm
            .new_addr
            .is_some_and(|d| !d.is_multiple_of(self.page_size))
        {
            return Err(destination());
        }
        if (flags.fixed.is_some() || flags.dontunmap) && !flags.maymove {
            return Err(EINVAL);
        }
        if flags.dontunmap && vrm.old_len != vrm.new_len {
            return Err(EINVAL);
        }
        // DONTUNMAP with sizes that differ in bytes and round to the same pages: 6.18 compares
        // the rounded sizes and moves (measured); kernels that compare the sizes as passed
        // (before the 6.16 rework, and some of its versions) say EINVAL. Both are allowed,
        // learnt from the observation (G10).
        if flags.dontunmap && vrm.sizes_differ && observed_errno(vrm.observed) == Some(EINVAL) {
            return Err(EINVAL);
        }
        if let Some(d) = vrm.new_addr {
            let dv = self.vpn(d);
            if dv < vrm.vpn + vrm.old_len && vrm.vpn < dv + vrm.new_len {
                return Err(destination());
            }
        }
        Ok(())
    }

    /// A `MREMAP_FIXED` move that `check_prep_vma` refused, and the kernel refused too. Before the
    /// 6.16 rework `mremap_to()` unmapped the destination (and a shrinking move's source tail)
    /// before `vma_to_resize()` looked at the source, so on 6.1 and 6.12 the failure leaves
    /// them unmapped; 6.18 checks first and leaves them (G5). Both are allowed: the world where
    /// they were unmapped is held beside this one until an outcome or a snapshot tells them
    /// apart (`step_worlds`, `choose_world`). Only the checks `vma_to_resize()` makes count
    /// (the source spanning VMAs: EFAULT; old size 0 on private memory: EINVAL); the argument
    /// checks and the source's lookup come before the unmapping on every kernel.
    fn maybe_unmapped_first(&mut self, vrm: &VmaRemap, src: &Pte, errno: i32) {
        let Some(dest) = vrm.new_addr else {
            return;
        };
        if observed_errno(vrm.observed) != Some(errno) || self.others.len() + 1 >= MAX_WORLDS {
            return;
        }
        // DONTUNMAP of shared memory before 5.13: not measured here, so not allowed.
        if vrm.flags.dontunmap && src.kind.is_shared() && !self.features.dontunmap_shared {
            return;
        }
        let dv = self.vpn(dest);
        let tail = vrm.old_len.saturating_sub(vrm.new_len);
        let space = self.space(vrm.proc);
        if !space.any_mapped(dv, vrm.new_len) && !space.any_mapped(vrm.vpn + vrm.new_len, tail) {
            return;
        }
        let mut other = self.clone();
        other.others.clear();
        other.do_munmap(vrm.proc, dv, vrm.new_len);
        other.do_munmap(vrm.proc, vrm.vpn + vrm.new_len, tail);
        self.others.push(other);
    }

    /// What the source (`src`, its first page) allows, and, where the call maps anything new,
    /// whether the part of it that moves is one VMA (a pure move that spans VMAs sets
    /// `vrm.multi`).
    fn check_prep_vma(&self, vrm: &mut VmaRemap, src: &Pte) -> Result<(), i32> {
        // DONTUNMAP of shared memory, on a kernel without it (before 5.13): EINVAL (G6).
        if vrm.flags.dontunmap && src.kind.is_shared() && !self.features.dontunmap_shared {
            return Err(EINVAL);
        }
        // Old size 0 (G7): EINVAL on private memory (4.14+); on shared memory without MAYMOVE
        // the kernel tries to grow in place over the mapping itself and says ENOMEM (measured
        // on 6.18; docs/SEMANTICS.md G7 says EINVAL, which is what the man page implies).
        if vrm.old_len == 0 && !src.kind.is_shared() {
            return Err(EINVAL);
        }
        if vrm.old_len == 0 && !vrm.flags.maymove {
            return Err(ENOMEM);
        }
        // Shrinking (or keeping the size) in place does not ask whether the range is one VMA
        // (`mremap_at`).
        if !vrm.will_map_new() {
            return Ok(());
        }
        // The part of the source that moves (a shrinking move drops its tail) must be one VMA,
        // checked before anything is unmapped (check_prep_vma; measured on 6.18: a shrinking
        // FIXED move whose dropped tail lies in another VMA succeeds, a growing one whose
        // source spans two VMAs fails with the destination intact).
        if vrm.old_len > 0 {
            let efault = observed_errno(vrm.observed) == Some(EFAULT);
            match self.one_vma(vrm.proc, vrm.vpn, vrm.old_len.min(vrm.new_len)) {
                OneVma::Yes => {}
                // Since 6.17 a pure move (FIXED, same size) may span VMAs, and the gaps between
                // them too: each VMA moves by the same offset (G4; probe R28.move-multi-vma;
                // gaps measured on 6.18).
                OneVma::No if vrm.move_only() && self.features.move_multi_vma => vrm.multi = true,
                // Equal attributes from different calls, and the kernel said EFAULT: it had
                // not merged them, so a pure move went VMA by VMA (and stopped, see
                // `remap_move`).
                OneVma::Maybe if vrm.move_only() && efault && self.features.move_multi_vma => {
                    vrm.multi = true
                }
                // Merged or not, the kernel's business.
                OneVma::Maybe | OneVma::No if efault => return Err(EFAULT),
                OneVma::Maybe => {}
                OneVma::No => return Err(EFAULT),
            }
        }
        Ok(())
    }

    /// Whether pages `[vpn, vpn + n)` of `proc` are all mapped with the same VMA attributes
    /// (kind, protection, VMA flags, and for shared memory one object at consecutive offsets),
    /// and, if so, whether one call made them (`OneVma::Yes`) or several (`OneVma::Maybe`).
    fn one_vma(&self, proc: ProcId, vpn: u64, n: u64) -> OneVma {
        let space = self.space(proc);
        let Some(first) = space.get(vpn) else {
            return OneVma::No;
        };
        let mut same_call = true;
        for i in 0..n {
            let Some(p) = space.get(vpn + i) else {
                return OneVma::No;
            };
            // A VMA is linear in page offset (where both are known).
            let linear = match (first.pgoff, p.pgoff) {
                (Some(a), Some(b)) => b == a + i,
                _ => true,
            };
            let contiguous = linear
                && match (first.backing, p.backing) {
                    (PageBacking::Private(_), PageBacking::Private(_)) => true,
                    (
                        PageBacking::Object { obj: a, index: ia },
                        PageBacking::Object { obj: b, index: ib },
                    ) => a == b && ib == ia + i as u32,
                    _ => false,
                };
            if p.kind != first.kind
                || p.prot != first.prot
                || p.flags & flag::VMA != first.flags & flag::VMA
                || !contiguous
            {
                return OneVma::No;
            }
            same_call &= p.vma == first.vma;
        }
        if same_call {
            OneVma::Yes
        } else {
            OneVma::Maybe
        }
    }

    /// A pure move (MREMAP_FIXED, same size) of a source that spans VMAs, and the gaps between
    /// them, since 6.17 (G4). It stops with EFAULT at the first private /dev/zero VMA; the
    /// VMAs before it stay moved (their destinations unmapped first), it and those after it
    /// stay where they were. A private /dev/zero mapping alone moves like any other. Measured
    /// on 6.18 (probe: [shared 3][private /dev/zero 1], [private /dev/zero 1][private 3],
    /// [private 2][private /dev/zero 1][private 1], with and without DONTUNMAP).
    fn remap_move(&mut self, vrm: &mut VmaRemap, src: &Pte) -> Result<Outcome, ModelError> {
        let mut stopped = false;
        let space = self.space(vrm.proc);
        if let Some(cut) = (0..vrm.old_len).find(|&i| {
            space
                .get(vrm.vpn + i)
                .is_some_and(|p| p.kind == MapKind::PrivateZero)
        }) {
            if cut == 0 {
                return fail(EFAULT);
            }
            stopped = true;
            vrm.old_len = cut;
            vrm.new_len = cut;
        }
        // Each VMA unmaps only its own destination: what is mapped opposite a gap of the
        // source stays (measured on 6.18). Then the source is looked up again, as `mremap_to`
        // does.
        let dest = vrm.new_addr.expect("a pure move is MREMAP_FIXED");
        let dv = self.vpn(dest);
        for i in 0..vrm.new_len {
            if self.space(vrm.proc).get(vrm.vpn + i).is_some() {
                self.do_munmap(vrm.proc, dv + i, 1);
            }
        }
        if self.space(vrm.proc).get(vrm.vpn).is_none() {
            return fail(EFAULT);
        }
        self.move_vma(vrm, src, dest)?;
        if stopped {
            return fail(EFAULT);
        }
        Ok(self.name_result(vrm.result, dest, vrm.new_pages, src.kind))
    }

    /// A move to a new address, for MREMAP_FIXED or MREMAP_DONTUNMAP (G5, G6). A move to a fixed
    /// address unmaps the destination, looks the source up again (a destination that held the
    /// source itself, possible with old size 0, leaves nothing: EFAULT), and cuts a shrinking
    /// source's tail (mremap_to; measured on 6.18).
    fn mremap_to(&mut self, vrm: &mut VmaRemap, src: &Pte) -> Result<Outcome, ModelError> {
        if let Some(d) = vrm.new_addr {
            self.do_munmap(vrm.proc, self.vpn(d), vrm.new_len);
            if self.space(vrm.proc).get(vrm.vpn).is_none() {
                return fail(EFAULT);
            }
        }
        if vrm.old_len > vrm.new_len {
            self.shrink_vma(vrm);
            vrm.old_len = vrm.new_len;
        }
        if vrm.old_len == 0 {
            return self.duplicate_vma(vrm, src);
        }
        let target = match vrm.new_addr {
            Some(d) => d,
            None => self.vrm_set_new_addr(vrm, src.kind != MapKind::Private)?,
        };
        if vrm.new_addr.is_none() && target == vrm.addr {
            // A DONTUNMAP move the kernel says left the range where it was: taken as a resize
            // in place, which at equal sizes adds nothing.
            return self.expand_vma_in_place(vrm, src);
        }
        self.move_vma(vrm, src, target)?;
        Ok(self.name_result(vrm.result, target, vrm.new_pages, src.kind))
    }

    /// A resize with no new address asked for: shrinking (or keeping the size) cuts the tail
    /// in place and returns the address (G2; probe on 6.18: a hole inside the kept part is no
    /// error); growing is `expand_vma`.
    fn mremap_at(&mut self, vrm: &mut VmaRemap, src: &Pte) -> Result<Outcome, ModelError> {
        if !vrm.will_map_new() {
            self.shrink_vma(vrm);
            return Ok(self.name_result(vrm.result, vrm.addr, vrm.new_pages, src.kind));
        }
        self.expand_vma(vrm, src)
    }

    /// Unmaps the source's tail past the new length.
    fn shrink_vma(&mut self, vrm: &VmaRemap) {
        self.do_munmap(vrm.proc, vrm.vpn + vrm.new_len, vrm.old_len - vrm.new_len);
    }

    /// Growing without a new address (G3): in place when the kernel has room, else a move with
    /// MAYMOVE, else ENOMEM. The kernel's room is its choice (harness mappings may be there):
    /// learnt from the observation.
    fn expand_vma(&mut self, vrm: &mut VmaRemap, src: &Pte) -> Result<Outcome, ModelError> {
        if vrm.old_len == 0 {
            return self.duplicate_vma(vrm, src);
        }
        let can_expand = self.vrm_can_expand_in_place(vrm);
        let target = match vrm.observed {
            Some(Outcome::Mapped { addr }) if *addr == vrm.addr || vrm.flags.maymove => *addr,
            // No room after the range: the kernel's to know (harness mappings may be there).
            Some(Outcome::Failed { errno }) if *errno == ENOMEM && !vrm.flags.maymove => {
                return fail(ENOMEM);
            }
            _ if can_expand => vrm.addr,
            _ if vrm.flags.maymove => self.get_unmapped_area(vrm.new_pages),
            _ => return fail(ENOMEM),
        };
        if target == vrm.addr {
            return self.expand_vma_in_place(vrm, src);
        }
        if src.kind == MapKind::Private && observed_addr(vrm.observed) == Some(target) {
            self.check_thp_placement(vrm.result, target, vrm.new_pages as u64)?; // [L1]
        }
        self.move_vma(vrm, src, target)?;
        Ok(self.name_result(vrm.result, target, vrm.new_pages, src.kind))
    }

    /// Whether the pages the source would grow into are free.
    fn vrm_can_expand_in_place(&self, vrm: &VmaRemap) -> bool {
        !self.space(vrm.proc).any_mapped(
            vrm.vpn + vrm.old_len,
            vrm.new_len.saturating_sub(vrm.old_len),
        )
    }

    /// Grow in place (G3): the new tail must have been free.
    fn expand_vma_in_place(&mut self, vrm: &VmaRemap, src: &Pte) -> Result<Outcome, ModelError> {
        if !self.vrm_can_expand_in_place(vrm) {
            return Err(ModelError::Placement {
                map: vrm.result,
                addr: vrm.addr,
                reason: format!("grows in place over pages that {} still maps", vrm.proc),
            });
        }
        self.extend(vrm.proc, vrm.vpn, vrm.old_len, vrm.new_len, src);
        Ok(self.name_result(vrm.result, vrm.addr, vrm.new_pages, src.kind))
    }

    /// Where a move with no fixed address goes: where the kernel put it, or the model's choice
    /// (`vrm_set_new_addr`, get_unmapped_area).
    /// A place the kernel chose for a whole number of PMDs of private anonymous memory is PMD
    /// aligned (L1); shmem aligns to the object's offset instead, and private /dev/zero only on
    /// some kernels, which L1 does not claim (`other`: any other kind).
    fn vrm_set_new_addr(&mut self, vrm: &VmaRemap, other: bool) -> Result<u64, ModelError> {
        match observed_addr(vrm.observed) {
            Some(a) => {
                if a != vrm.addr && !other {
                    self.check_thp_placement(vrm.result, a, vrm.new_pages as u64)?;
                }
                Ok(a)
            }
            None => Ok(self.get_unmapped_area(vrm.new_pages)),
        }
    }

    /// Old size 0 (G7): an alias, a second mapping of the same shared object at the same
    /// offset (Linux's check_prep_vma calls it an attempt to 'duplicate' a mapping).
    fn duplicate_vma(&mut self, vrm: &VmaRemap, src: &Pte) -> Result<Outcome, ModelError> {
        let addr = match vrm.new_addr {
            Some(d) => d,
            None => {
                let a = self.vrm_set_new_addr(vrm, src.kind != MapKind::Private)?;
                self.check_free(vrm.proc, vrm.result, a, vrm.new_pages)?;
                a
            }
        };
        let vma = self.new_vma();
        let PageBacking::Object { obj, index } = src.backing else {
            unreachable!("checked shared")
        };
        let av = self.vpn(addr);
        for i in 0..vrm.new_len {
            let pte = Pte {
                backing: PageBacking::Object {
                    obj,
                    index: index + i as u32,
                },
                flags: src.flags & flag::VMA,
                alts: Alts::default(),
                vma,
                pgoff: Some(index as u64 + i),
                ..*src
            };
            self.take(&pte);
            self.space_mut(vrm.proc).ptes.insert(av + i, pte);
        }
        Ok(self.name_result(vrm.result, addr, vrm.new_pages, src.kind))
    }

    /// Moves the source's `old_len` pages to `target` (G3, G5, G6), keeping their frames,
    /// flags and guards (F8, G9), and grows it there to `new_len` pages. The caller names the
    /// result.
    fn move_vma(&mut self, vrm: &VmaRemap, src: &Pte, target: u64) -> Result<(), ModelError> {
        let proc = vrm.proc;
        let tv = self.vpn(target);
        if vrm.new_addr.is_none() {
            self.check_free(proc, vrm.result, target, vrm.new_pages)?;
        }
        let moved = self.space_mut(proc).remove_range(vrm.vpn, vrm.old_len);
        if vrm.flags.dontunmap {
            // The old range stays mapped: private pages read zero, shared pages still show the
            // object, an alias (G6).
            for (vpn, pte) in &moved {
                // The page tables moved, guard markers with them (F8, G9): what stays is a
                // fresh view.
                let stay = if pte.kind.is_shared() {
                    let stay = Pte {
                        alts: Alts::default(),
                        flags: pte.flags & flag::VMA,
                        ..*pte
                    };
                    self.take(&stay);
                    stay
                } else {
                    Pte {
                        backing: PageBacking::Private(FrameId::ZERO),
                        alts: Alts::default(),
                        flags: pte.flags & flag::VMA,
                        ..*pte
                    }
                };
                self.space_mut(proc).ptes.insert(*vpn, stay);
            }
        }
        // Every page keeps its offset in the range (a gap stays a gap). What moves is a new
        // VMA (move_vma's copy_vma; one per source VMA in a multi-VMA move), not the one it
        // came from: its page offset no longer continues the source's, so what is left of the
        // source (DONTUNMAP, a partial move) is not one VMA with it. Whether it merges with
        // its new neighbours is the kernel's business (`one_vma` allows both). Found by the
        // fuzzer: `map 2; map 2 fixed over it; remap page 1 dontunmap fixed onto page 0;
        // remap both pages` is EFAULT on 6.18 (two VMAs), where the model had one.
        let mut renamed = Vec::new();
        // copy_vma gives an anonymous VMA that was never faulted (no anon_vma) the offset of
        // its new address, "to increase its chance of merging" (mm/vma.c); one that was keeps
        // its own. The model knows a VMA was faulted when it held a written private page
        // (`faulted`); otherwise the moved offsets are unknown.
        let anonymous = matches!(src.kind, MapKind::Private | MapKind::PrivateZero);
        for (vpn, mut pte) in moved {
            let offset = vpn - vrm.vpn;
            if offset < vrm.new_len {
                if anonymous && !vrm.faulted.contains(&pte.vma) {
                    pte.pgoff = None;
                }
                pte.vma = self.split_vma(&mut renamed, pte.vma);
                self.space_mut(proc).ptes.insert(tv + offset, pte);
                // The page itself moved (its page-table entry did): a pipe page spliced from
                // it follows it, so the owner's later writes at the new address are its own
                // writes in place (K3; found by `cowcheck run --seed 99 --max-ops 120`).
                self.pipe_page_moved(proc, vpn, tv + offset);
            } else {
                self.release(&pte);
            }
        }
        let grown = Pte {
            vma: self.split_vma(&mut renamed, src.vma),
            pgoff: src
                .pgoff
                .filter(|_| !anonymous || vrm.faulted.contains(&src.vma)),
            ..*src
        };
        self.extend(proc, tv, vrm.old_len.min(vrm.new_len), vrm.new_len, &grown);
        Ok(())
    }

    /// Adds pages `[have, want)` after `vpn`, continuing `like`: zero pages for private memory,
    /// the object's next pages (past its end: SIGBUS, G8) for shared memory.
    fn extend(&mut self, proc: ProcId, vpn: u64, have: u64, want: u64, like: &Pte) {
        for i in have..want {
            let backing = match like.backing {
                PageBacking::Private(_) => PageBacking::Private(FrameId::ZERO),
                PageBacking::Object { obj, index } => PageBacking::Object {
                    obj,
                    index: index + i as u32,
                },
            };
            let pte = Pte {
                backing,
                flags: like.flags & flag::VMA,
                alts: Alts::default(),
                pgoff: like.pgoff.map(|o| o + i),
                ..*like
            };
            self.take(&pte);
            self.space_mut(proc).ptes.insert(vpn + i, pte);
        }
    }
}

/// mremap with a bad argument, measured on 6.18 with the probe that cowcheck's `invalid` op
/// mirrors (man mremap ERRORS agrees): new size 0, unaligned, wrapping new size, unknown
/// flags: EINVAL (G1). A new size whose rounding wraps is a version difference (G1): 6.1
/// (measured on 6.1.192 with `cowcheck matrix --kernel`) checks the size only when it looks for
/// room, failing with ENOMEM, or with EFAULT when the old range is no longer mapped; 6.18
/// rejects it with the other arguments, EINVAL. The model allows the three and takes the
/// kernel's.
pub(super) fn mremap_bad_arg(bad: BadArg, observed: Option<&Outcome>) -> Outcome {
    match (bad, observed) {
        (BadArg::Overflow, Some(Outcome::Failed { errno }))
            if matches!(*errno, EINVAL | ENOMEM | EFAULT) =>
        {
            Outcome::Failed { errno: *errno }
        }
        _ => Outcome::Failed { errno: EINVAL },
    }
}

#[cfg(test)]
#[path = "mremap_tests.rs"]
mod tests;

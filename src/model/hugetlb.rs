//! hugetlb (MAP_HUGETLB), as in mm/hugetlb.c and the hugetlb cases of mm/mmap.c, mm/vma.c,
//! mm/mprotect.c and mm/madvise.c (docs/SEMANTICS.md L6-L14): whole huge pages at a huge page
//! boundary, range checks in units of the huge page, the advice a hugetlb VMA takes, and the
//! reservations across fork.
//!
//! Contents are the base-page rules' (B2, B5): the model keeps its base-page frames, and a
//! copy-on-write copies the whole huge page at once (`hugetlb_wp()`), so that which process
//! shares which huge page is exact. The huge page's identity is the frame of its first base
//! page (its head), which a fault always gives a frame of its own (zero bytes): two processes
//! map the same huge page exactly when they hold the same head frame.
//!
//! What depends on the pool, which other executors share and whose free count the model does
//! not know, is a set of outcomes learnt from the observation (L9): a fault that needs a page
//! nobody reserved may be SIGBUS, a child's page that the reservation's owner took back may be
//! gone (SIGBUS), and a map may be ENOMEM. A view (which reads every page) may fault a page
//! in, so whether a page is present is learnt from views too (`hugetlb_settle`).

use super::errno::*;
use super::frame::FrameId;
use super::space::{PageBacking, Pte, tlb};
use super::{Life, Model, ModelError, observed_addr, observed_errno};
use crate::program::outcome::{Death, Outcome, PROT_R, PROT_W, SIGBUS, Snapshot, UNREADABLE};
use crate::program::{Advice, MapId, MapKind, PageRange, Pattern, ProcId, Span, caps};

/// Base pages in a huge page.
const HUGE: u64 = caps::HUGETLB_PAGES as u64;

/// Whether two hugetlb pages may be one VMA as far as a split is concerned: the same
/// protection and VMA flags. The model's VMA identities are finer than the kernel's (an
/// mprotect to the protection a page already has renames it, but the kernel splits nothing
/// then: found by `run --seed 7 --no-physical`), and a hugetlb VMA only ever ends on a huge
/// page boundary, so a range that cuts a huge page is refused whichever way it is grouped.
fn same_vma(p: &Pte, here: &Pte) -> bool {
    use super::space::flag;
    p.tlb != 0 && p.prot == here.prot && p.flags & flag::VMA == here.flags & flag::VMA
}

impl Model {
    /// mmap with MAP_HUGETLB (L6): the length rounded up to whole huge pages, at a huge page
    /// boundary that the kernel chooses (`hugetlb_get_unmapped_area()`); a private mapping's
    /// maker owns its reservation (L9). ENOMEM when the pool cannot reserve the pages, which
    /// only the observation can tell (L9).
    pub(super) fn mmap_hugetlb(
        &mut self,
        proc: ProcId,
        map: MapId,
        kind: MapKind,
        len: u64,
        observed: Option<&Outcome>,
    ) -> Result<Outcome, ModelError> {
        if observed_errno(observed) == Some(ENOMEM) {
            return Ok(Outcome::Failed { errno: ENOMEM });
        }
        let pages = self.page_align(len).div_ceil(HUGE) * HUGE;
        let huge = HUGE * self.page_size;
        let addr = match observed_addr(observed) {
            Some(a) => a,
            None => self
                .get_unmapped_area((pages + HUGE) as u16)
                .next_multiple_of(huge),
        };
        if !addr.is_multiple_of(huge) {
            return Err(ModelError::Placement {
                map,
                addr,
                reason: format!(
                    "is not on a huge page boundary ({huge:#x}): a hugetlb mapping starts on one (docs/SEMANTICS.md L6)"
                ),
            });
        }
        self.check_free(proc, map, addr, pages as u16)?;
        self.mmap_region(proc, map, kind, pages as u16, addr);
        let state = match kind {
            MapKind::Private => tlb::PAGE | tlb::OWNER | tlb::RESERVED,
            _ => tlb::PAGE,
        };
        let vpn = self.vpn(addr);
        for p in self
            .space_mut(proc)
            .ptes
            .range_mut(vpn..vpn + pages)
            .map(|(_, p)| p)
        {
            p.tlb = state;
        }
        Ok(Outcome::Mapped { addr })
    }

    /// Whether page `vpn` of `proc` is a hugetlb page inside a huge page (not on its first
    /// base page): a VMA boundary there would split a huge page, which the kernel refuses
    /// (`hugetlb_vm_op_split()`: EINVAL; L8).
    fn splits_huge(&self, proc: ProcId, vpn: u64) -> bool {
        !vpn.is_multiple_of(HUGE) && self.space(proc).get(vpn).is_some_and(|p| p.tlb != 0)
    }

    /// munmap of `[vpn, vpn + n)` where it would cut a huge page: EINVAL with nothing unmapped
    /// (`do_vmi_align_munmap()` splits at both ends before it unmaps anything; L8). `None`: the
    /// base-page rule applies.
    pub(super) fn hugetlb_munmap(&self, proc: ProcId, vpn: u64, n: u64) -> Option<Outcome> {
        (self.splits_huge(proc, vpn) || self.splits_huge(proc, vpn + n))
            .then_some(Outcome::Failed { errno: EINVAL })
    }

    /// mprotect of `[start, end)` to `prot` where it would cut a huge page (L8): the walk
    /// (`do_mprotect_pkey()`) changes VMA after VMA and fails with EINVAL at the first one it
    /// would have to split inside a huge page; a VMA whose protection does not change is not
    /// split (`mprotect_fixup()`). Returns the page where the walk stops, if it does.
    pub(super) fn hugetlb_protect_stop(
        &self,
        proc: ProcId,
        start: u64,
        end: u64,
        prot: u8,
    ) -> Option<u64> {
        let changes = |vpn: u64| self.space(proc).get(vpn).is_some_and(|p| p.prot != prot);
        if self.splits_huge(proc, start) && changes(start) {
            return Some(start);
        }
        if self.splits_huge(proc, end) && changes(end - 1) {
            return Some(self.tlb_vma_start(proc, end - 1).max(start));
        }
        None
    }

    /// The first page of the hugetlb VMA holding `vpn` (as far as the model tells VMAs apart).
    fn tlb_vma_start(&self, proc: ProcId, vpn: u64) -> u64 {
        let space = self.space(proc);
        let Some(here) = space.get(vpn) else {
            return vpn;
        };
        let mut v = vpn;
        while v > 0 && space.get(v - 1).is_some_and(|p| same_vma(p, here)) {
            v -= 1;
        }
        v
    }

    /// madvise of `[start, end)` where it holds hugetlb pages (L10): the walk goes VMA by
    /// VMA (`madvise_walk_vmas()`), the base-page rules for what is not hugetlb, this file's
    /// for hugetlb VMAs. `None`: no hugetlb page in the range.
    pub(super) fn madvise_hugetlb(
        &mut self,
        proc: ProcId,
        base: u64,
        pages: PageRange,
        advice: Advice,
        observed: Option<&Outcome>,
    ) -> Option<Outcome> {
        let first = self.vpn(base);
        let (start, end) = (first + pages.start as u64, first + pages.end as u64);
        let is_tlb = |m: &Model, v: u64| m.space(proc).get(v).is_some_and(|p| p.tlb != 0);
        if !(start..end).any(|v| is_tlb(self, v)) {
            return None;
        }
        let mut hole = false;
        let mut v = start;
        while v < end {
            let tlb_run = is_tlb(self, v);
            let mut w = v + 1;
            while w < end && is_tlb(self, w) == tlb_run {
                w += 1;
            }
            if tlb_run {
                if let Err(errno) = self.madvise_tlb_run(proc, v, w, advice) {
                    return Some(Outcome::Failed { errno });
                }
            } else {
                let part = PageRange {
                    start: (v - first) as u16,
                    end: (w - first) as u16,
                };
                match self.madvise(proc, base, part, advice, observed) {
                    Outcome::Done => {}
                    Outcome::Failed { errno: ENOMEM } => hole = true,
                    other => return Some(other),
                }
            }
            v = w;
        }
        Some(if hole {
            Outcome::Failed { errno: ENOMEM }
        } else {
            Outcome::Done
        })
    }

    /// One advice on the hugetlb pages `[start, end)`, VMA by VMA (L10, measured on 6.18).
    fn madvise_tlb_run(
        &mut self,
        proc: ProcId,
        start: u64,
        end: u64,
        advice: Advice,
    ) -> Result<(), i32> {
        let mut v = start;
        while v < end {
            let here = *self.space(proc).get(v).expect("mapped");
            let mut w = v + 1;
            while w < end && self.space(proc).get(w).is_some_and(|p| same_vma(p, &here)) {
                w += 1;
            }
            self.madvise_tlb_vma(proc, v, w, advice)?;
            v = w;
        }
        Ok(())
    }

    /// One advice on `[start, end)`, all of one hugetlb VMA.
    fn madvise_tlb_vma(
        &mut self,
        proc: ProcId,
        start: u64,
        end: u64,
        advice: Advice,
    ) -> Result<(), i32> {
        let pte = *self.space(proc).get(start).expect("mapped");
        let shared = pte.kind.is_shared();
        let cut = !start.is_multiple_of(HUGE) || self.splits_huge(proc, end);
        match advice {
            // The start must be on a huge page; the end is rounded down to one
            // (`madvise_dontneed_free_valid_vma()`): only whole huge pages are zapped.
            Advice::DontNeed => {
                if !start.is_multiple_of(HUGE) {
                    return Err(EINVAL);
                }
                let to = end - end % HUGE;
                for vpn in start..to {
                    self.hugetlb_zap(proc, vpn, shared);
                }
                Ok(())
            }
            // MADV_REMOVE needs a shared mapping one may write (EACCES for a private one); a
            // shared one is refused by the validator (not modelled).
            Advice::Remove => Err(if shared { EINVAL } else { EACCES }),
            // VMA flags: a split inside a huge page is refused, but a VMA whose flags do not
            // change is not split (`madvise_update_vma()`).
            Advice::DontFork
            | Advice::DoFork
            | Advice::KeepOnFork
            | Advice::HugePage
            | Advice::NoHugePage => {
                use super::space::flag;
                let f = pte.flags;
                let changes = match advice {
                    Advice::DontFork => f & flag::DONTFORK == 0,
                    Advice::DoFork => f & flag::DONTFORK != 0,
                    Advice::KeepOnFork => f & flag::WIPEONFORK != 0,
                    Advice::HugePage => f & flag::HUGEPAGE == 0 || f & flag::NOHUGEPAGE != 0,
                    _ => f & flag::NOHUGEPAGE == 0 || f & flag::HUGEPAGE != 0,
                };
                if !changes {
                    return Ok(());
                }
                if cut {
                    return Err(EINVAL);
                }
                let mut renamed = Vec::new();
                for vpn in start..end {
                    let p = *self.space(proc).get(vpn).expect("mapped");
                    self.madvise_vma_behavior(proc, vpn, &p, advice, None)?;
                    let vma = self.split_vma(&mut renamed, p.vma);
                    self.space_mut(proc).get_mut(vpn).expect("mapped").vma = vma;
                }
                Ok(())
            }
            // Refused on hugetlb VMAs (measured: whole huge pages or not).
            Advice::Free
            | Advice::WipeOnFork
            | Advice::Cold
            | Advice::PageOut
            | Advice::GuardInstall
            | Advice::GuardRemove
            | Advice::Collapse => Err(EINVAL),
            // Refused by the validator on hugetlb handles (not modelled): a range that reaches
            // hugetlb pages only through another handle cannot be told.
            Advice::PopulateRead | Advice::PopulateWrite => Err(EINVAL),
        }
    }

    /// MADV_DONTNEED of one base page of a whole huge page: a private page reads zero next and
    /// its next fault needs a page again (the reservation was consumed; L9, L10); a shared
    /// page stays in its object.
    fn hugetlb_zap(&mut self, proc: ProcId, vpn: u64, shared: bool) {
        if !shared {
            self.drop_private(proc, vpn);
        }
        if let Some(p) = self.space_mut(proc).get_mut(vpn) {
            p.tlb &= !(tlb::PRESENT | tlb::RESERVED | tlb::GONE | tlb::TAKEN);
        }
    }

    /// A fork child's hugetlb pages (L9): it owns no reservation (`hugetlb_dup_vma_private()`);
    /// a private page present in the parent is present in the child too
    /// (`copy_hugetlb_page_range()`), shared with it until either writes.
    ///
    /// A private page the parent may have lost to the owner's take-back (not known present,
    /// yet not zero: `take_back()`) is, in the child, either the old page (the parent still
    /// had it) or nothing: the parent's VMA was marked HPAGE_RESV_UNMAPPED so that its own
    /// faults die, but the child's VMA does not inherit the mark, and its fault maps a fresh
    /// zeroed huge page where the pool has one (L14). So zero is an alternative there, learnt
    /// from the first observation (as after MADV_FREE, F2), base page by base page.
    pub(super) fn hugetlb_fork(&mut self, child: ProcId) {
        for p in self.space_mut(child).ptes.values_mut() {
            if p.tlb != 0 {
                let lost = !p.kind.is_shared()
                    && p.tlb & tlb::PRESENT == 0
                    && p.backing != PageBacking::Private(FrameId::ZERO);
                if lost && !p.alts.iter().any(|a| a == FrameId::ZERO) {
                    // The zero frame is not counted (`Frames::take`): nothing to take.
                    p.alts.push(FrameId::ZERO);
                }
                p.tlb &= !(tlb::OWNER | tlb::RESERVED | tlb::GONE);
                if p.kind.is_shared() {
                    p.tlb &= !tlb::PRESENT;
                }
            }
        }
    }

    /// Whether touching private hugetlb page `vpn` of `proc` (a store if `write`) may die of
    /// SIGBUS, the pool having no page for it (L9): a fault with no reservation behind it
    /// (any fault of a fork child; the owner's after a zap), or a copy-on-write by a process
    /// that does not own the reservation. The owner's copy-on-write never fails: if no page is
    /// free it takes the page back from the children (`unmap_ref_private()`).
    fn tlb_may_bus(&self, proc: ProcId, vpn: u64, write: bool) -> bool {
        let Some(p) = self.space(proc).get(vpn) else {
            return false;
        };
        if p.tlb == 0 || p.kind.is_shared() {
            return false;
        }
        if p.tlb & tlb::PRESENT == 0 {
            return p.tlb & (tlb::OWNER | tlb::RESERVED) != tlb::OWNER | tlb::RESERVED;
        }
        write && p.tlb & tlb::OWNER == 0 && self.head_shared(proc, vpn).is_some()
    }

    /// The head frame of the huge page holding `vpn`, if another page table maps it too.
    fn head_shared(&self, proc: ProcId, vpn: u64) -> Option<FrameId> {
        match self.space(proc).get(vpn - vpn % HUGE)?.backing {
            PageBacking::Private(f) if f != FrameId::ZERO && self.frames.refs(f) > 1 => Some(f),
            _ => None,
        }
    }

    /// A private hugetlb page's access that did not fail: the fault maps the huge page (the
    /// reservation consumed; a zeroed page where there was none), and a store to a huge page
    /// shared with fork relatives copies all of it for the writer (`hugetlb_wp()`). When the
    /// owner copies, the kernel may instead have taken the page back from the others, which
    /// then die of SIGBUS at their next touch: their page is no longer known present (L9).
    fn tlb_touch(&mut self, proc: ProcId, vpn: u64, write: bool) {
        let head = vpn - vpn % HUGE;
        let Some(p) = self.space(proc).get(head).copied() else {
            return;
        };
        if p.tlb == 0 {
            return;
        }
        // A shared huge page is mapped in this page table from its first touch on (I15).
        if p.kind.is_shared() {
            for q in self.huge_ptes(proc, head) {
                q.tlb |= tlb::PRESENT;
            }
            return;
        }
        if p.tlb & tlb::PRESENT == 0 {
            if p.backing == PageBacking::Private(FrameId::ZERO) {
                let f = self.frames.copy_of(FrameId::ZERO);
                self.space_mut(proc).get_mut(head).expect("mapped").backing =
                    PageBacking::Private(f);
            }
            for q in self.huge_ptes(proc, head) {
                q.tlb = (q.tlb | tlb::PRESENT) & !(tlb::RESERVED | tlb::GONE | tlb::TAKEN);
            }
        }
        if !write {
            return;
        }
        if self.head_shared(proc, head).is_none() {
            return;
        }
        if p.tlb & tlb::OWNER != 0 {
            self.take_back(proc, head);
        }
        for v in head..head + HUGE {
            if let Some(PageBacking::Private(f)) = self.space(proc).get(v).map(|p| p.backing)
                && f != FrameId::ZERO
                && self.frames.refs(f) > 1
            {
                let copy = self.exclusive(f);
                self.space_mut(proc).get_mut(v).expect("mapped").backing =
                    PageBacking::Private(copy);
            }
        }
    }

    /// The owner `proc` may have taken the huge page at `head` back from every other process
    /// that shares it (`unmap_ref_private()`): theirs is no longer known present (L9).
    fn take_back(&mut self, proc: ProcId, head: u64) {
        let Some(old) = self.head_shared(proc, head) else {
            return;
        };
        for q in 0..self.procs.len() {
            let other = ProcId(q as u8);
            if other == proc || self.procs[q].life != Life::Alive {
                continue;
            }
            let same = self
                .space(other)
                .get(head)
                .is_some_and(|o| o.tlb != 0 && o.backing == PageBacking::Private(old));
            if same {
                for o in self.huge_ptes(other, head) {
                    o.tlb = (o.tlb & !tlb::PRESENT) | tlb::TAKEN;
                }
            }
        }
    }

    /// The page-table entries of the huge page that starts at `head`.
    fn huge_ptes(&mut self, proc: ProcId, head: u64) -> impl Iterator<Item = &mut Pte> {
        self.space_mut(proc)
            .ptes
            .range_mut(head..head + HUGE)
            .map(|(_, p)| p)
    }

    /// A load or store of `span` that reaches private hugetlb pages (L9), before the
    /// base-page rules do the rest: each hugetlb fault in order, up to the first page that
    /// faults for another reason. Where a fault may die of SIGBUS and the kernel's did, the
    /// op's outcome is that death, the pages before it loaded or stored. `None`: the
    /// base-page rules give the outcome.
    pub(super) fn hugetlb_access(
        &mut self,
        proc: ProcId,
        base: u64,
        span: Span,
        store: Option<Pattern>,
        observed: Option<&Outcome>,
    ) -> Option<Outcome> {
        let base_vpn = self.vpn(base);
        let need = if store.is_some() { PROT_W } else { PROT_R };
        let range = span.page_range();
        for page in range.pages() {
            let vpn = base_vpn + page as u64;
            if self.fault(proc, vpn, need).is_some() {
                return None;
            }
            if self.tlb_may_bus(proc, vpn, store.is_some())
                && let Some(Outcome::Killed { death, .. }) = observed
                && death.signal == SIGBUS
                && death.page == vpn * self.page_size
            {
                let death: Death = *death;
                let before = Span::Pages(PageRange {
                    start: range.start,
                    end: page,
                });
                let digests = match store {
                    _ if page == range.start => Vec::new(),
                    Some(pattern) => {
                        self.write(proc, base, before, pattern);
                        Vec::new()
                    }
                    None => match self.read(proc, base, before, observed) {
                        Outcome::Read { digests } => digests,
                        _ => Vec::new(),
                    },
                };
                return Some(Outcome::Killed { death, digests });
            }
            self.tlb_touch(proc, vpn, store.is_some());
        }
        None
    }

    /// Learns from a view which private hugetlb pages the kernel had (L9). A view reads every
    /// page, and its reads are faults: a page not known present that the view read was faulted
    /// in by the view itself (the reservation consumed, a page taken from the pool). A view that
    /// reads with `process_vm_readv` pins each page, and a read-only pin of a huge page shared
    /// with fork relatives unshares it (a copy-on-write): a non-owner's may find no page
    /// (EFAULT, so unreadable), and the owner's may take the page back from the others, as its
    /// write would (measured on 6.18). Owners' views first, so that a page they took back may
    /// be gone in the others' views of the same snapshot. A page a view could not read, where
    /// that is allowed, shows unreadable until a view reads it.
    pub(super) fn hugetlb_settle(&mut self, observed: &Snapshot) {
        self.tlb_words_presence();
        for owners in [true, false] {
            for view in &observed.procs {
                // A process without hugetlb pages has nothing to settle here: skip its view
                // rather than look up each of its pages.
                if self.life(view.proc) != Life::Alive
                    || !self.space(view.proc).ptes.values().any(|p| p.tlb != 0)
                {
                    continue;
                }
                for &(addr, d) in &view.pages {
                    self.settle_tlb_page(view.proc, self.vpn(addr), d, owners);
                }
            }
        }
    }

    /// One page of a view (`hugetlb_settle`), in the owners' pass or the others'.
    fn settle_tlb_page(&mut self, proc: ProcId, vpn: u64, seen: u64, owners: bool) {
        let Some(p) = self.space(proc).get(vpn).copied() else {
            return;
        };
        // A shared huge page a view read is mapped here from then on (I15).
        if p.tlb != 0 && p.kind.is_shared() && !owners && seen != UNREADABLE {
            self.tlb_touch(proc, vpn, false);
            return;
        }
        if p.tlb == 0 || p.kind.is_shared() || (p.tlb & tlb::OWNER != 0) != owners {
            return;
        }
        let present = p.tlb & tlb::PRESENT != 0;
        let shared = present && self.head_shared(proc, vpn).is_some();
        if owners && shared && seen != UNREADABLE {
            self.take_back(proc, vpn - vpn % HUGE);
        }
        if seen == UNREADABLE && ((shared && !owners) || self.tlb_may_bus(proc, vpn, false)) {
            self.space_mut(proc).get_mut(vpn).expect("mapped").tlb |= tlb::GONE;
            return;
        }
        self.space_mut(proc).get_mut(vpn).expect("mapped").tlb &= !tlb::GONE;
        if !present && seen != UNREADABLE {
            // A view reads a huge page base page after base page, and the pool may change
            // between two of them (another program takes or frees huge pages): its first
            // pages may have found no page where a later one faulted the huge page in. Those
            // stay unreadable in this view (L13).
            let head = vpn - vpn % HUGE;
            let gone: Vec<u64> = (head..vpn)
                .filter(|v| {
                    self.space(proc)
                        .get(*v)
                        .is_some_and(|p| p.tlb & tlb::GONE != 0)
                })
                .collect();
            self.tlb_touch(proc, vpn, false);
            for v in gone {
                self.space_mut(proc).get_mut(v).expect("mapped").tlb |= tlb::GONE;
            }
        }
    }
}

//! Faults, copy-on-write, reads and writes, as in mm/memory.c (and the fault entry of
//! arch/x86/mm/fault.c): which access faults and how (A7, D1, F8, G8), which frame a write
//! lands in (B2, B5), and the references page-table entries hold on frames and shared objects
//! (taken by fork's copy, dropped by a zap). Never changes which pages are mapped: that is
//! `mmap.rs`'s, `fork.rs`'s and `mremap.rs`'s.

use super::frame::FrameId;
use super::space::{Alts, ObjId, PageBacking, Pte, flag};
use super::{Model, SharedObject};
use crate::program::outcome::{
    BUS_ADRERR, Death, Outcome, PROT_R, PROT_W, SEGV_ACCERR, SEGV_MAPERR, SIGBUS, SIGSEGV, digest,
};
use crate::program::{Pattern, ProcId, Span};

impl Model {
    pub(super) fn object(&self, obj: ObjId) -> &SharedObject {
        self.objects[obj.0 as usize].as_ref().expect("live object")
    }

    pub(super) fn object_mut(&mut self, obj: ObjId) -> &mut SharedObject {
        self.objects[obj.0 as usize].as_mut().expect("live object")
    }

    /// Whether a shared page lies past its object's end (SIGBUS, G8).
    pub(super) fn past_end(&self, pte: &Pte) -> bool {
        match pte.backing {
            PageBacking::Object { obj, index } => index as usize >= self.object(obj).frames.len(),
            PageBacking::Private(_) => false,
        }
    }

    /// The fault, if any, of touching page `vpn` of `proc` with access `need` (PROT_R or W).
    /// Order as the kernel checks: no VMA (MAPERR, D1), VMA protection (ACCERR; x86 lets a
    /// write-only page be read, A7), then the page: guard marker (MAPERR, F8), past a
    /// shared object's end (SIGBUS/BUS_ADRERR, G8).
    pub(super) fn fault(&self, proc: ProcId, vpn: u64, need: u8) -> Option<Death> {
        let page = vpn * self.page_size;
        let segv = |code| {
            Some(Death {
                signal: SIGSEGV,
                code,
                page,
            })
        };
        let Some(pte) = self.space(proc).get(vpn) else {
            return segv(SEGV_MAPERR);
        };
        let allowed = if need == PROT_R {
            pte.prot & (PROT_R | PROT_W) != 0
        } else {
            pte.prot & need == need
        };
        if !allowed {
            return segv(SEGV_ACCERR);
        }
        if pte.flags & flag::GUARD != 0 {
            return segv(SEGV_MAPERR);
        }
        if self.past_end(pte) {
            return Some(Death {
                signal: SIGBUS,
                code: BUS_ADRERR,
                page,
            });
        }
        None
    }

    /// A store of `pattern` over `span`: page by page, the first page that faults kills the
    /// writer, the pages before it written.
    pub(super) fn write(
        &mut self,
        proc: ProcId,
        base: u64,
        span: Span,
        pattern: Pattern,
    ) -> Outcome {
        let base_vpn = self.vpn(base);
        for page in span.page_range().pages() {
            let vpn = base_vpn + page as u64;
            if let Some(death) = self.fault(proc, vpn, PROT_W) {
                return Outcome::Killed {
                    death,
                    digests: Vec::new(),
                };
            }
            self.store(proc, vpn, page, span, pattern);
        }
        Outcome::Done
    }

    /// Stores `pattern` into page `page` of a span at `vpn` of `proc` (already checked
    /// writable), breaking copy-on-write first.
    pub(super) fn store(
        &mut self,
        proc: ProcId,
        vpn: u64,
        page: u16,
        span: Span,
        pattern: Pattern,
    ) {
        let page_offset = page as usize * self.page_size as usize;
        let range = span.bytes_in_page(self.page_size as usize);
        let store = |bytes: &mut [u8]| {
            pattern.fill(&mut bytes[range.clone()], page_offset + range.start);
        };
        // A page written after MADV_FREE keeps either its old bytes or zeroes around the
        // write, whichever the kernel had by then (F2): the zero branch becomes an
        // alternative until an observation tells.
        let pte = *self.space(proc).get(vpn).expect("fault checked");
        let mut alts = Alts::default();
        for a in pte.alts.iter() {
            let a = self.exclusive(a);
            store(self.frames.bytes_mut(a));
            alts.push(a);
        }
        if pte.flags & flag::LAZY != 0 {
            let z = self.frames.copy_of(FrameId::ZERO);
            store(self.frames.bytes_mut(z));
            if !alts.push(z) {
                self.frames.release(z);
            }
        }
        let f = self.writable_frame(proc, vpn);
        store(self.frames.bytes_mut(f));
        let pte = self.space_mut(proc).get_mut(vpn).expect("present");
        pte.alts = alts;
        pte.flags &= !flag::LAZY;
    }

    /// `f` itself if only one reference holds it, else a private copy (the old one released).
    pub(super) fn exclusive(&mut self, f: FrameId) -> FrameId {
        if f != FrameId::ZERO && self.frames.refs(f) == 1 {
            return f;
        }
        let copy = self.frames.copy_of(f);
        self.frames.release(f);
        copy
    }

    /// The frame that a write to `vpn` of `proc` lands in, breaking copy-on-write first: a
    /// private page whose frame is the zero page or is shared with a fork relative gets a copy of
    /// its own (B2); a shared object's page is written in place, allocated on first write (B5).
    pub(super) fn writable_frame(&mut self, proc: ProcId, vpn: u64) -> FrameId {
        let pte = *self.space(proc).get(vpn).expect("fault checked");
        match pte.backing {
            PageBacking::Private(f) => self.do_wp_page(proc, vpn, &pte, f),
            PageBacking::Object { obj, index } => self.shmem_fault(obj, index),
        }
    }

    /// A write to private page `vpn` of `proc` now holding frame `f` (B2, K4): in place when
    /// the page is this process's own, or nobody else holds the frame (do_wp_page:
    /// PageAnonExclusive, else reuse only at refcount 1); else a copy (wp_page_copy; for a page
    /// never written, do_anonymous_page's fresh zeroed page).
    fn do_wp_page(&mut self, proc: ProcId, vpn: u64, pte: &Pte, f: FrameId) -> FrameId {
        let own = pte.flags & flag::EXCLUSIVE != 0 && f != FrameId::ZERO;
        let frame = if own { f } else { self.exclusive(f) };
        if frame != f {
            // Had the kernel already made the page this process's own (a read-only pin
            // unshares it), the write went in place and a pipe it was spliced into shows it:
            // the new page is an allowed view of such a pipe page (K3).
            for page in self.pipe.iter_mut() {
                if page.owner == (proc, vpn) && page.frames.contains(&f) {
                    page.frames.push(frame);
                    self.frames.take(frame);
                }
            }
        }
        let p = self.space_mut(proc).get_mut(vpn).expect("present");
        p.backing = PageBacking::Private(frame);
        p.flags |= flag::EXCLUSIVE;
        frame
    }

    /// The frame of page `index` of a shared object, allocated (zeroed) on its first fault, read
    /// or write (shmem_get_folio): every mapper then reads and writes that very frame (B5).
    pub(super) fn shmem_fault(&mut self, obj: ObjId, index: u32) -> FrameId {
        let f = self.object(obj).frames[index as usize];
        if f != FrameId::ZERO {
            return f;
        }
        let fresh = self.frames.copy_of(FrameId::ZERO);
        self.object_mut(obj).frames[index as usize] = fresh;
        fresh
    }

    /// The frame `proc` sees at `vpn` (its primary one), if mapped and inside its object.
    pub(super) fn frame_at(&self, proc: ProcId, vpn: u64) -> Option<FrameId> {
        self.frame_of(self.space(proc).get(vpn)?)
    }

    /// The frame a page-table entry shows (its primary one), if inside its object.
    pub(super) fn frame_of(&self, pte: &Pte) -> Option<FrameId> {
        match pte.backing {
            PageBacking::Private(f) => Some(f),
            PageBacking::Object { obj, index } => {
                self.object(obj).frames.get(index as usize).copied()
            }
        }
    }

    /// Digest of bytes `range` of a frame.
    pub(super) fn digest_of(&mut self, f: FrameId, range: std::ops::Range<usize>) -> u64 {
        if range.start == 0 && range.end == self.page_size as usize {
            self.frames.digest(f)
        } else {
            digest(&self.frames.bytes(f)[range])
        }
    }

    /// A load of `span`: each page's digest, the first page that faults kills the reader (the
    /// digests before it kept). A page whose contents were open learns the kernel's choice from
    /// the observed digest (`settle`).
    pub(super) fn read(
        &mut self,
        proc: ProcId,
        base: u64,
        span: Span,
        observed: Option<&Outcome>,
    ) -> Outcome {
        let base_vpn = self.vpn(base);
        let seen: &[u64] = match observed {
            Some(Outcome::Read { digests }) | Some(Outcome::Killed { digests, .. }) => digests,
            _ => &[],
        };
        let range = span.bytes_in_page(self.page_size as usize);
        let mut digests = Vec::with_capacity(span.page_range().len() as usize);
        for (k, page) in span.page_range().pages().enumerate() {
            let vpn = base_vpn + page as u64;
            if let Some(death) = self.fault(proc, vpn, PROT_R) {
                return Outcome::Killed { death, digests };
            }
            if let Some(&d) = seen.get(k) {
                self.settle(proc, vpn, range.clone(), d);
            }
            let f = self.frame_at(proc, vpn).expect("fault checked");
            digests.push(self.digest_of(f, range.clone()));
        }
        Outcome::Read { digests }
    }

    /// A new page-table entry's references: its frames, or a place in its object (the get_page
    /// of fork's copy_present_pte).
    pub(super) fn take(&mut self, pte: &Pte) {
        match pte.backing {
            PageBacking::Private(f) => self.frames.take(f),
            PageBacking::Object { obj, .. } => self.object_mut(obj).ptes += 1,
        }
        for a in pte.alts.iter() {
            self.frames.take(a);
        }
    }

    /// A removed page-table entry's references go (zap_pte_range); a shared object goes with
    /// the last entry that maps it, and its frames with it (B5).
    pub(super) fn release(&mut self, pte: &Pte) {
        for a in pte.alts.iter() {
            self.frames.release(a);
        }
        match pte.backing {
            PageBacking::Private(f) => self.frames.release(f),
            PageBacking::Object { obj, .. } => {
                let o = self.object_mut(obj);
                o.ptes -= 1;
                if o.ptes == 0 {
                    let frames = std::mem::take(&mut o.frames);
                    self.objects[obj.0 as usize] = None;
                    for f in frames {
                        self.frames.release(f);
                    }
                }
            }
        }
    }
}

//! The reference model of Linux anonymous memory across fork: pure and deterministic, it never
//! makes a syscall. It holds a process tree, a page-granular address space per process and
//! explicit backing frames, and answers what each op must return and what every live process
//! must see.
//!
//! Rules (SEMANTICS.md section in brackets):
//! - fresh mappings read zero, private and shared, anonymous or /dev/zero [A1, A2, C1, C2];
//! - fork copies private memory by value at the instant of fork: both sides share each frame
//!   until one of them writes, and the writer gets a copy [B2, B3]; DONTFORK pages are not
//!   inherited, WIPEONFORK pages arrive zeroed, guards are inherited except in WIPEONFORK
//!   ranges [B1, B4, F4, F5, F8];
//! - a shared mapping is one object; every mapper, across any number of fork levels, sees every
//!   write at once, and the object lives while anyone maps it [B5]; its size is fixed, and a
//!   page past its end raises SIGBUS [G8];
//! - exit is an munmap of everything [B6]; munmap removes every page touching the range, an
//!   unmapped sub-range is not an error, and a later access is SIGSEGV/SEGV_MAPERR [D1];
//! - mprotect changes pages up to the first hole and then fails with ENOMEM [E1]; madvise
//!   applies to the mapped parts and then fails with ENOMEM, and stops at the first VMA it
//!   rejects [F0]; each advice's own rules are at `advise`;
//! - mremap: `remap`;
//! - the kernel chooses where a mapping goes [A5] and, where Linux leaves a choice (MADV_FREE
//!   dropping a page or not, growing in place or moving, a version-dependent errno), the model
//!   holds the set of allowed outcomes and learns the kernel's choice from the observation
//!   (`step`, `reconcile`), checking that it was allowed [§4]. Run alone, it picks one.

pub mod frame;
pub mod space;

use crate::program::outcome::{
    BUS_ADRERR, Backing, Death, Outcome, PROT_R, PROT_W, ProcView, Region, SEGV_ACCERR,
    SEGV_MAPERR, SIGBUS, SIGSEGV, Snapshot, digest, push_region,
};
use crate::program::{
    Advice, At, BadArg, MapId, MapKind, Op, PageRange, Pattern, PlaceHow, ProcId, Prot, RemapFlags,
    Span, Syscall, Via, caps,
};
use frame::{FrameId, Frames};
use space::{AddressSpace, Alts, ObjId, PageBacking, Pte, flag};

pub use crate::program::tables::errno;
use errno::*;

/// Where the model places mappings when no kernel tells it: top-down from here, never reusing
/// an address, which is one of the placements Linux may choose.
const MODEL_MMAP_TOP: u64 = 0x7f00_0000_0000;

pub use crate::program::features::Features;
pub use crate::program::outcome::UNREADABLE;

/// The kernel did something the model cannot even represent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("the kernel placed {map} at {addr:#x}, which {reason}")]
    Placement {
        map: MapId,
        addr: u64,
        reason: String,
    },
}

/// A process's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    Unborn,
    Alive,
    Exited,
    Killed(Death),
}

#[derive(Clone, Debug)]
struct Process {
    life: Life,
    parent: Option<ProcId>,
    space: AddressSpace,
}

/// The range one `map` (or `remap`) op returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapHandle {
    pub base: u64,
    pub pages: u16,
    pub kind: MapKind,
}

#[derive(Clone, Debug)]
struct SharedObject {
    /// One frame per page of the object; its length is the object's size.
    frames: Vec<FrameId>,
    /// Page-table entries (in all processes) that point into the object.
    ptes: u32,
}

/// The model's whole world.
#[derive(Clone, Debug)]
pub struct Model {
    page_size: u64,
    features: Features,
    frames: Frames,
    objects: Vec<Option<SharedObject>>,
    procs: Vec<Process>,
    maps: Vec<Option<MapHandle>>,
    next_placement: u64,
    next_vma: u32,
    /// The program's pipe: each entry one vmspliced page, as the frames it may show (more than
    /// one where the page's contents were open to the kernel's choice).
    pipe: std::collections::VecDeque<PipePage>,
}

/// One vmspliced page in the pipe.
#[derive(Clone, Debug)]
struct PipePage {
    /// The frames it may show (more than one where the page's contents were open).
    frames: Vec<FrameId>,
    /// Who spliced it, and where: that process's own later writes may show through the pipe.
    owner: (ProcId, u64),
}

/// Buffers in a pipe of the default size (PIPE_DEF_BUFFERS): one vmspliced page each.
const PIPE_BUFFERS: usize = 16;

fn prot_bits(p: Prot) -> u8 {
    match p {
        Prot::None => 0,
        Prot::Read => PROT_R,
        Prot::ReadWrite => PROT_R | PROT_W,
        Prot::Write => PROT_W,
    }
}

/// The address an observation says the kernel chose, if it chose one.
fn observed_addr(observed: Option<&Outcome>) -> Option<u64> {
    match observed {
        Some(Outcome::Mapped { addr }) => Some(*addr),
        _ => None,
    }
}

fn observed_errno(observed: Option<&Outcome>) -> Option<i32> {
    match observed {
        Some(Outcome::Failed { errno }) => Some(*errno),
        _ => None,
    }
}

impl Model {
    /// A world with one live root process `p0`, nothing mapped, every feature present.
    pub fn new(page_size: usize) -> Model {
        Model::with_features(page_size, Features::ALL)
    }

    /// A world for a kernel with these features.
    pub fn with_features(page_size: usize, features: Features) -> Model {
        let mut procs = vec![
            Process {
                life: Life::Unborn,
                parent: None,
                space: AddressSpace::default(),
            };
            caps::MAX_PROCS
        ];
        procs[0].life = Life::Alive;
        Model {
            page_size: page_size as u64,
            features,
            frames: Frames::new(page_size),
            objects: Vec::new(),
            procs,
            maps: vec![None; caps::MAX_MAPS],
            next_placement: MODEL_MMAP_TOP,
            next_vma: 0,
            pipe: Default::default(),
        }
    }

    pub fn page_size(&self) -> usize {
        self.page_size as usize
    }

    pub fn features(&self) -> Features {
        self.features
    }

    pub fn life(&self, p: ProcId) -> Life {
        self.procs[p.0 as usize].life
    }

    pub fn parent(&self, p: ProcId) -> Option<ProcId> {
        self.procs[p.0 as usize].parent
    }

    pub fn handle(&self, m: MapId) -> Option<MapHandle> {
        self.maps.get(m.0 as usize).copied().flatten()
    }

    /// Frames in use (zero page excluded): for invariants and statistics.
    pub fn frames_in_use(&self) -> usize {
        self.frames.in_use()
    }

    /// Applies one op with no observation but, for a `map`, the address the kernel returned
    /// (`None`: the model chooses).
    pub fn apply(&mut self, op: &Op, placement: Option<u64>) -> Result<Outcome, ModelError> {
        let observed = placement.map(|addr| Outcome::Mapped { addr });
        self.step(op, observed.as_ref())
    }

    /// Applies one op. `observed` is what the kernel did, where there is a kernel: the model
    /// takes from it only what Linux leaves to the kernel (where a mapping goes, which of the
    /// allowed outcomes happened) and returns its own prediction, which equals the observation
    /// exactly when the kernel behaved.
    pub fn step(&mut self, op: &Op, observed: Option<&Outcome>) -> Result<Outcome, ModelError> {
        let proc = op.proc();
        if self.life(proc) != Life::Alive {
            return Ok(Outcome::Skipped);
        }
        // Every handle the op reads an address from must have one: a handle whose map or remap
        // never succeeded names nothing, on either side.
        let needs_base: Vec<MapId> = match *op {
            Op::Map { .. } | Op::Fork { .. } | Op::Exit { .. } => vec![],
            Op::MapAt { at, .. } => vec![at.map],
            Op::Remap { map, flags, .. } => {
                let mut v = vec![map];
                v.extend(flags.fixed.map(|a| a.map));
                v
            }
            _ => op.map().into_iter().collect(),
        };
        if needs_base.iter().any(|m| self.handle(*m).is_none()) {
            return Ok(Outcome::Skipped);
        }
        let base = |m: MapId| self.handle(m).expect("checked").base;
        let outcome = match *op {
            Op::Map {
                map, kind, pages, ..
            } => self.map(proc, map, kind, pages, observed_addr(observed))?,
            Op::MapAt {
                map,
                kind,
                pages,
                how,
                at,
                ..
            } => {
                let addr = self.at(at);
                self.map_at(proc, map, kind, pages, how, addr, observed)?
            }
            Op::Write {
                map, span, pattern, ..
            } => self.write(proc, base(map), span, pattern),
            Op::Read { map, span, .. } => self.read(proc, base(map), span, observed),
            Op::Fork { child, .. } => self.fork(proc, child),
            Op::Exit { .. } => {
                self.end(proc, Life::Exited);
                Outcome::Done
            }
            Op::Unmap { map, pages, .. } => {
                let vpn = self.vpn(base(map)) + pages.start as u64;
                self.unmap_pages(proc, vpn, pages.len() as u64);
                Outcome::Done
            }
            Op::Protect {
                map, pages, prot, ..
            } => self.protect(proc, base(map), pages, prot),
            Op::Advise {
                map, pages, advice, ..
            } => self.advise(proc, base(map), pages, advice, observed),
            Op::Remap {
                map,
                old,
                new_pages,
                flags,
                result,
                ..
            } => self.remap(proc, base(map), old, new_pages, flags, result, observed)?,
            Op::Invalid { call, bad, .. } => invalid_call(call, bad),
            Op::Poke {
                map,
                span,
                pattern,
                via,
                ..
            } => self.poke(proc, base(map), span, pattern, via),
            Op::Vmsplice { map, page, .. } => self.vmsplice(proc, base(map), page, observed),
            Op::PipeRead { .. } => self.pipe_read(observed),
        };
        if let Some(death) = outcome.death() {
            self.end(proc, Life::Killed(death));
        }
        Ok(outcome)
    }

    fn vpn(&self, addr: u64) -> u64 {
        addr / self.page_size
    }

    fn at(&self, at: At) -> u64 {
        self.handle(at.map).expect("checked").base + at.page as u64 * self.page_size
    }

    /// The model's own choice of a free range.
    fn choose_addr(&mut self, pages: u16) -> u64 {
        self.next_placement -= (pages as u64 + 1) * self.page_size;
        self.next_placement
    }

    fn check_free(
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
        if self.procs[proc.0 as usize]
            .space
            .any_mapped(self.vpn(addr), pages as u64)
        {
            return Err(bad(&format!(
                "overlaps pages that {proc} still maps: without MAP_FIXED the kernel must choose a free range (SEMANTICS A5)"
            )));
        }
        Ok(())
    }

    fn map(
        &mut self,
        proc: ProcId,
        map: MapId,
        kind: MapKind,
        pages: u16,
        placement: Option<u64>,
    ) -> Result<Outcome, ModelError> {
        let addr = match placement {
            Some(addr) => addr,
            None => self.choose_addr(pages),
        };
        self.check_free(proc, map, addr, pages)?;
        self.install(proc, map, kind, pages, addr);
        Ok(Outcome::Mapped { addr })
    }

    /// Maps fresh zero pages of `kind` at `addr` (which must be free) and names them `map`.
    fn install(&mut self, proc: ProcId, map: MapId, kind: MapKind, pages: u16, addr: u64) {
        let vpn = self.vpn(addr);
        let obj = kind.is_shared().then(|| self.new_object(pages as usize));
        let vma = self.new_vma();
        let space = &mut self.procs[proc.0 as usize].space;
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
                },
            );
        }
        if let Some(obj) = obj {
            self.object_mut(obj).ptes += pages as u32;
        }
        self.maps[map.0 as usize] = Some(MapHandle {
            base: addr,
            pages,
            kind,
        });
    }

    fn new_vma(&mut self) -> u32 {
        self.next_vma += 1;
        self.next_vma
    }

    #[allow(clippy::too_many_arguments)]
    fn map_at(
        &mut self,
        proc: ProcId,
        map: MapId,
        kind: MapKind,
        pages: u16,
        how: PlaceHow,
        addr: u64,
        observed: Option<&Outcome>,
    ) -> Result<Outcome, ModelError> {
        let vpn = self.vpn(addr);
        match how {
            // MAP_FIXED: whatever was there goes first, then fresh zero pages (D3).
            PlaceHow::Fixed => {
                self.unmap_pages(proc, vpn, pages as u64);
                self.install(proc, map, kind, pages, addr);
                Ok(Outcome::Mapped { addr })
            }
            // MAP_FIXED_NOREPLACE: EEXIST if anything is there (D4). The range lies inside a
            // program handle's range, which the harness never maps, so the model knows.
            PlaceHow::NoReplace => {
                if self.procs[proc.0 as usize]
                    .space
                    .any_mapped(vpn, pages as u64)
                {
                    return Ok(Outcome::Failed { errno: EEXIST });
                }
                self.install(proc, map, kind, pages, addr);
                Ok(Outcome::Mapped { addr })
            }
            // A hint: taken if the kernel likes it, else anywhere free (A5).
            PlaceHow::Hint => {
                let chosen = match observed_addr(observed) {
                    Some(a) => a,
                    None if !self.procs[proc.0 as usize]
                        .space
                        .any_mapped(vpn, pages as u64) =>
                    {
                        addr
                    }
                    None => self.choose_addr(pages),
                };
                self.map(proc, map, kind, pages, Some(chosen))
            }
        }
    }

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

    fn object(&self, obj: ObjId) -> &SharedObject {
        self.objects[obj.0 as usize].as_ref().expect("live object")
    }

    fn object_mut(&mut self, obj: ObjId) -> &mut SharedObject {
        self.objects[obj.0 as usize].as_mut().expect("live object")
    }

    /// Whether a shared page lies past its object's end (SIGBUS, G8).
    fn past_end(&self, pte: &Pte) -> bool {
        match pte.backing {
            PageBacking::Object { obj, index } => index as usize >= self.object(obj).frames.len(),
            PageBacking::Private(_) => false,
        }
    }

    /// The fault, if any, of touching page `vpn` of `proc` with access `need` (PROT_R or W).
    /// Order as the kernel checks: no VMA (MAPERR), VMA protection (ACCERR; x86 lets a
    /// write-only page be read, A7), then the page: guard marker (MAPERR, F8), past a shared
    /// object's end (SIGBUS/BUS_ADRERR, G8).
    fn fault(&self, proc: ProcId, vpn: u64, need: u8) -> Option<Death> {
        let page = vpn * self.page_size;
        let segv = |code| {
            Some(Death {
                signal: SIGSEGV,
                code,
                page,
            })
        };
        let Some(pte) = self.procs[proc.0 as usize].space.get(vpn) else {
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

    fn write(&mut self, proc: ProcId, base: u64, span: Span, pattern: Pattern) -> Outcome {
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
    fn store(&mut self, proc: ProcId, vpn: u64, page: u16, span: Span, pattern: Pattern) {
        let page_offset = page as usize * self.page_size as usize;
        let range = span.bytes_in_page(self.page_size as usize);
        let store = |bytes: &mut [u8]| {
            for i in range.clone() {
                bytes[i] = pattern.byte_at(page_offset + i);
            }
        };
        // A page written after MADV_FREE keeps either its old bytes or zeroes around the
        // write, whichever the kernel had by then (F2): the zero branch becomes an
        // alternative until an observation tells.
        let pte = *self.procs[proc.0 as usize]
            .space
            .get(vpn)
            .expect("fault checked");
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
        let pte = self.procs[proc.0 as usize]
            .space
            .get_mut(vpn)
            .expect("present");
        pte.alts = alts;
        pte.flags &= !flag::LAZY;
    }

    /// vmsplice of one page into the pipe (CVE-2020-29374 class, SEMANTICS K3): the pipe takes
    /// a reference to the page as it is. A later write by a fork relative goes to a copy and is
    /// never seen through the pipe; a later write by the process itself to a page it owns
    /// (EXCLUSIVE) goes in place and is. Reads the page as get_user_pages does: EFAULT where a
    /// load would fault; a full pipe is EAGAIN (the pipe is non-blocking).
    fn vmsplice(
        &mut self,
        proc: ProcId,
        base: u64,
        page: u16,
        observed: Option<&Outcome>,
    ) -> Outcome {
        let vpn = self.vpn(base) + page as u64;
        if self.fault(proc, vpn, PROT_R).is_some() {
            return Outcome::Failed { errno: EFAULT };
        }
        // A write-only page (x86) is read by get_user_pages only if its page-table entry is
        // already there; faulting it in for a read is refused (no VM_READ): EFAULT. Whether it
        // is there depends on earlier loads and forks, which the model does not track, so both
        // outcomes are allowed (measured: both happen on 6.18).
        let write_only = self.procs[proc.0 as usize]
            .space
            .get(vpn)
            .is_some_and(|p| p.prot & PROT_R == 0);
        if write_only && observed_errno(observed) == Some(EFAULT) {
            return Outcome::Failed { errno: EFAULT };
        }
        if self.pipe.len() >= PIPE_BUFFERS {
            return Outcome::Failed { errno: EAGAIN };
        }
        let pte = *self.procs[proc.0 as usize].space.get(vpn).expect("checked");
        let mut candidates = Vec::new();
        match pte.backing {
            PageBacking::Private(f) => {
                candidates.push(f);
                candidates.extend(pte.alts.iter());
                if pte.flags & flag::LAZY != 0 {
                    candidates.push(FrameId::ZERO);
                }
            }
            // A read fault on shmem allocates the page in the object: later writes by any
            // mapper land in that very page, so the pipe sees them.
            PageBacking::Object { obj, index } => {
                let f = self.object(obj).frames[index as usize];
                let f = if f == FrameId::ZERO {
                    let fresh = self.frames.copy_of(FrameId::ZERO);
                    self.object_mut(obj).frames[index as usize] = fresh;
                    fresh
                } else {
                    f
                };
                candidates.push(f);
            }
        }
        for f in &candidates {
            self.frames.take(*f);
        }
        self.pipe.push_back(PipePage {
            frames: candidates,
            owner: (proc, vpn),
        });
        Outcome::Done
    }

    /// Reads the oldest page out of the pipe: EAGAIN when it is empty. Any of the page's
    /// allowed views may show: the frames it referred to, and the splicing process's own
    /// later copies of the page (whether its write went in place depends on whether the kernel
    /// had made the page its own: a read-only pin, such as the snapshot's process_vm_readv,
    /// unshares a copy-on-write page, FAULT_FLAG_UNSHARE since 5.19; measured). A fork
    /// relative's write is never one of them.
    fn pipe_read(&mut self, observed: Option<&Outcome>) -> Outcome {
        let Some(page) = self.pipe.pop_front() else {
            return Outcome::Failed { errno: EAGAIN };
        };
        let full = 0..self.page_size as usize;
        let seen = match observed {
            Some(Outcome::Read { digests }) => digests.first().copied(),
            _ => None,
        };
        let digests: Vec<u64> = page
            .frames
            .iter()
            .map(|f| self.digest_of(*f, full.clone()))
            .collect();
        let d = match seen {
            Some(s) if digests.contains(&s) => s,
            _ => digests[0],
        };
        for f in page.frames {
            self.frames.release(f);
        }
        Outcome::Read { digests: vec![d] }
    }

    /// A write through the kernel, page by page; the first page it cannot write ends it with
    /// an errno, the pages before it written. /proc/self/mem (`mem`) forces the write: where
    /// the mapping is not writable, a private page is copied and written for this process only,
    /// a shared one is refused, EIO (SEMANTICS E6, K1: it must never reach another process or
    /// the zero page); process_vm_writev (`vm`) writes only where the mapping allows, else
    /// EFAULT. Neither raises a signal: unmapped, guard and past-the-end pages are errors.
    fn poke(&mut self, proc: ProcId, base: u64, span: Span, pattern: Pattern, via: Via) -> Outcome {
        let errno = match via {
            Via::Mem => EIO,
            Via::Vm => EFAULT,
        };
        let base_vpn = self.vpn(base);
        for page in span.page_range().pages() {
            let vpn = base_vpn + page as u64;
            let Some(pte) = self.procs[proc.0 as usize].space.get(vpn).copied() else {
                return Outcome::Failed { errno };
            };
            let writable = pte.prot & PROT_W != 0
                || (via == Via::Mem && self.features.force_write && !pte.kind.is_shared());
            if !writable || pte.flags & flag::GUARD != 0 || self.past_end(&pte) {
                return Outcome::Failed { errno };
            }
            self.store(proc, vpn, page, span, pattern);
        }
        Outcome::Done
    }

    /// `f` itself if only one reference holds it, else a private copy (the old one released).
    fn exclusive(&mut self, f: FrameId) -> FrameId {
        if f != FrameId::ZERO && self.frames.refs(f) == 1 {
            return f;
        }
        let copy = self.frames.copy_of(f);
        self.frames.release(f);
        copy
    }

    /// The frame that a write to `vpn` of `proc` lands in, breaking copy-on-write first: a
    /// private page whose frame is the zero page or is shared with a fork relative gets a copy of
    /// its own [B2]; a shared object's page is written in place, allocated on first write [B5].
    fn writable_frame(&mut self, proc: ProcId, vpn: u64) -> FrameId {
        let pte = *self.procs[proc.0 as usize]
            .space
            .get(vpn)
            .expect("fault checked");
        match pte.backing {
            PageBacking::Private(f) => {
                // In place when the page is this process's own, or nobody else holds the frame
                // (do_wp_page: PageAnonExclusive, else reuse only at refcount 1).
                let own = pte.flags & flag::EXCLUSIVE != 0 && f != FrameId::ZERO;
                let frame = if own { f } else { self.exclusive(f) };
                if frame != f {
                    // Had the kernel already made the page this process's own (a read-only
                    // pin unshares it), the write went in place and a pipe it was spliced into
                    // shows it: the new page is an allowed view of such a pipe page.
                    for page in self.pipe.iter_mut() {
                        if page.owner == (proc, vpn) && page.frames.contains(&f) {
                            page.frames.push(frame);
                            self.frames.take(frame);
                        }
                    }
                }
                let p = self.procs[proc.0 as usize]
                    .space
                    .get_mut(vpn)
                    .expect("present");
                p.backing = PageBacking::Private(frame);
                p.flags |= flag::EXCLUSIVE;
                frame
            }
            PageBacking::Object { obj, index } => {
                let f = self.object(obj).frames[index as usize];
                if f != FrameId::ZERO {
                    return f;
                }
                let fresh = self.frames.copy_of(FrameId::ZERO);
                self.object_mut(obj).frames[index as usize] = fresh;
                fresh
            }
        }
    }

    /// The frame `proc` sees at `vpn` (its primary one), if mapped and inside its object.
    fn frame_at(&self, proc: ProcId, vpn: u64) -> Option<FrameId> {
        let pte = self.procs[proc.0 as usize].space.get(vpn)?;
        match pte.backing {
            PageBacking::Private(f) => Some(f),
            PageBacking::Object { obj, index } => {
                self.object(obj).frames.get(index as usize).copied()
            }
        }
    }

    /// Digest of bytes `range` of a frame.
    fn digest_of(&mut self, f: FrameId, range: std::ops::Range<usize>) -> u64 {
        if range.start == 0 && range.end == self.page_size as usize {
            self.frames.digest(f)
        } else {
            digest(&self.frames.bytes(f)[range])
        }
    }

    /// Narrows a page with alternatives to those that agree with an observed digest of bytes
    /// `range`. Returns whether the observation is one of the allowed values (a page without
    /// alternatives: whether it equals the page).
    fn settle(&mut self, proc: ProcId, vpn: u64, range: std::ops::Range<usize>, seen: u64) -> bool {
        let Some(pte) = self.procs[proc.0 as usize].space.get(vpn).copied() else {
            return false;
        };
        let Some(primary) = self.frame_at(proc, vpn) else {
            return false;
        };
        let primary_ok = self.digest_of(primary, range.clone()) == seen;
        let lazy = pte.flags & flag::LAZY != 0;
        if pte.alts.is_empty() && !lazy {
            return primary_ok;
        }
        let zero_ok = lazy && self.digest_of(FrameId::ZERO, range.clone()) == seen;
        let mut keep = Alts::default();
        let mut promoted = None;
        for a in pte.alts.iter() {
            if self.digest_of(a, range.clone()) == seen {
                if !primary_ok && promoted.is_none() {
                    promoted = Some(a);
                } else {
                    keep.push(a);
                }
            } else {
                self.frames.release(a);
            }
        }
        let PageBacking::Private(old_primary) = pte.backing else {
            return primary_ok;
        };
        let p = self.procs[proc.0 as usize]
            .space
            .get_mut(vpn)
            .expect("present");
        p.alts = keep;
        if primary_ok {
            return true;
        }
        if let Some(a) = promoted {
            p.backing = PageBacking::Private(a);
            self.frames.release(old_primary);
            return true;
        }
        if zero_ok {
            // Dropped by the kernel: zero from now on, until written (one-way, F2).
            p.backing = PageBacking::Private(FrameId::ZERO);
            p.flags &= !(flag::LAZY | flag::EXCLUSIVE);
            for a in p.alts.iter().collect::<Vec<_>>() {
                self.frames.release(a);
            }
            self.procs[proc.0 as usize]
                .space
                .get_mut(vpn)
                .expect("present")
                .alts = Alts::default();
            self.frames.release(old_primary);
            return true;
        }
        false
    }

    fn read(&mut self, proc: ProcId, base: u64, span: Span, observed: Option<&Outcome>) -> Outcome {
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

    /// fork: the child gets the parent's pages, except DONTFORK ones (F4); WIPEONFORK pages
    /// arrive as fresh zero pages without guards (B4, F8), the flag kept.
    fn fork(&mut self, proc: ProcId, child: ProcId) -> Outcome {
        // After fork no private page is anyone's own: both sides copy on their next write.
        for pte in self.procs[proc.0 as usize].space.ptes.values_mut() {
            pte.flags &= !flag::EXCLUSIVE;
        }
        let parent = self.procs[proc.0 as usize].space.clone();
        let mut space = AddressSpace::default();
        for (vpn, pte) in parent.ptes {
            if pte.flags & flag::DONTFORK != 0 {
                continue;
            }
            let mut pte = pte;
            if pte.flags & flag::WIPEONFORK != 0 {
                pte.backing = PageBacking::Private(FrameId::ZERO);
                pte.alts = Alts::default();
                pte.flags &= !(flag::GUARD | flag::LAZY);
            }
            self.take(&pte);
            space.ptes.insert(vpn, pte);
        }
        self.procs[child.0 as usize] = Process {
            life: Life::Alive,
            parent: Some(proc),
            space,
        };
        Outcome::Done
    }

    fn take(&mut self, pte: &Pte) {
        match pte.backing {
            PageBacking::Private(f) => self.frames.take(f),
            PageBacking::Object { obj, .. } => self.object_mut(obj).ptes += 1,
        }
        for a in pte.alts.iter() {
            self.frames.take(a);
        }
    }

    fn release(&mut self, pte: &Pte) {
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

    fn unmap_pages(&mut self, proc: ProcId, vpn: u64, n: u64) {
        let removed = self.procs[proc.0 as usize].space.remove_range(vpn, n);
        for (_, pte) in removed {
            self.release(&pte);
        }
    }

    /// Exit or death: the address space goes as if unmapped [B6]; children live on.
    fn end(&mut self, proc: ProcId, life: Life) {
        let space = std::mem::take(&mut self.procs[proc.0 as usize].space);
        for pte in space.ptes.values() {
            self.release(pte);
        }
        self.procs[proc.0 as usize].life = life;
        // The pipe goes with the last process that holds it (every process does).
        if self.procs.iter().all(|p| p.life != Life::Alive) {
            for page in std::mem::take(&mut self.pipe) {
                for f in page.frames {
                    self.frames.release(f);
                }
            }
        }
    }

    /// mprotect: pages change up to the first hole, then ENOMEM (E1; probe R14.mprotect-hole).
    /// Data is never touched (E2).
    fn protect(&mut self, proc: ProcId, base: u64, pages: PageRange, prot: Prot) -> Outcome {
        let start = self.vpn(base) + pages.start as u64;
        // The range becomes a VMA of its own; whether the kernel merges it back with its
        // neighbours once their attributes match again is its business (anon_vma, accounting),
        // so a later "is this one VMA" has both answers (see `one_vma`; measured: a
        // write-only-then-none page did not merge back).
        let mut renamed = Vec::new();
        for vpn in start..start + pages.len() as u64 {
            let Some(old) = self.procs[proc.0 as usize].space.get(vpn).map(|p| p.vma) else {
                return Outcome::Failed { errno: ENOMEM };
            };
            let vma = self.split_vma(&mut renamed, old);
            let pte = self.procs[proc.0 as usize]
                .space
                .get_mut(vpn)
                .expect("mapped");
            pte.prot = prot_bits(prot);
            pte.vma = vma;
        }
        Outcome::Done
    }

    /// The VMA identity a page of VMA `old` gets from a call that changes VMA attributes:
    /// one new identity per old one, so pages that were one VMA stay one, and pages that were
    /// not stay apart even when their attributes become equal (the kernel may or may not merge
    /// them back: `one_vma` then allows both answers).
    fn split_vma(&mut self, renamed: &mut Vec<(u32, u32)>, old: u32) -> u32 {
        if let Some(&(_, new)) = renamed.iter().find(|(o, _)| *o == old) {
            return new;
        }
        let new = self.new_vma();
        renamed.push((old, new));
        new
    }

    /// Drops a private page's contents: it reads zero next (DONTNEED, guard install).
    fn drop_private(&mut self, proc: ProcId, vpn: u64) {
        let pte = *self.procs[proc.0 as usize].space.get(vpn).expect("mapped");
        if let PageBacking::Private(f) = pte.backing {
            for a in pte.alts.iter() {
                self.frames.release(a);
            }
            self.frames.release(f);
            let p = self.procs[proc.0 as usize]
                .space
                .get_mut(vpn)
                .expect("mapped");
            p.backing = PageBacking::Private(FrameId::ZERO);
            p.alts = Alts::default();
            p.flags &= !(flag::LAZY | flag::EXCLUSIVE);
        }
    }

    /// madvise, page by page in address order (F0): a hole is skipped and reported as ENOMEM
    /// at the end; an advice a VMA rejects stops the walk there with its errno, the pages
    /// before it advised (madvise_walk_vmas). POPULATE stops at a hole (ENOMEM) too.
    fn advise(
        &mut self,
        proc: ProcId,
        base: u64,
        pages: PageRange,
        advice: Advice,
        observed: Option<&Outcome>,
    ) -> Outcome {
        let start = self.vpn(base) + pages.start as u64;
        let mut renamed = Vec::new();
        let mut hole = false;
        for vpn in start..start + pages.len() as u64 {
            let Some(pte) = self.procs[proc.0 as usize].space.get(vpn).copied() else {
                if matches!(advice, Advice::PopulateRead | Advice::PopulateWrite) {
                    return Outcome::Failed { errno: ENOMEM };
                }
                hole = true;
                continue;
            };
            let shared = pte.kind.is_shared();
            let set = |m: &mut Model, f: u8, on: bool| {
                let p = m.procs[proc.0 as usize].space.get_mut(vpn).expect("mapped");
                if on {
                    p.flags |= f;
                } else {
                    p.flags &= !f;
                }
            };
            match advice {
                // Private: zero on next touch, in this process only; shared: the PTE goes, the
                // object keeps the data (F1). Guards stay (F8).
                Advice::DontNeed => {
                    if !shared {
                        self.drop_private(proc, vpn);
                    }
                }
                // Private only, /dev/zero private included (F2, C1).
                Advice::Free => {
                    if shared {
                        return Outcome::Failed { errno: EINVAL };
                    }
                    let untouched =
                        pte.backing == PageBacking::Private(FrameId::ZERO) && pte.alts.is_empty();
                    if !untouched {
                        set(self, flag::LAZY, true);
                    }
                }
                // Shared only: punches a hole in the object, every mapper reads zero (F3).
                // On a read-only mapping, old kernels say EACCES and 6.18 succeeds: both allowed.
                // A private /dev/zero mapping has a file, so it passes the "no file" test and
                // fails the "shared and may write" one: EACCES (madvise_remove(); measured).
                Advice::Remove => {
                    if pte.kind == MapKind::PrivateZero {
                        return Outcome::Failed { errno: EACCES };
                    }
                    if !shared {
                        return Outcome::Failed { errno: EINVAL };
                    }
                    if pte.prot & PROT_W == 0 && observed_errno(observed) == Some(EACCES) {
                        return Outcome::Failed { errno: EACCES };
                    }
                    if let PageBacking::Object { obj, index } = pte.backing
                        && let Some(&f) = self.object(obj).frames.get(index as usize)
                    {
                        self.frames.release(f);
                        self.object_mut(obj).frames[index as usize] = FrameId::ZERO;
                    }
                }
                Advice::DontFork => set(self, flag::DONTFORK, true),
                Advice::DoFork => set(self, flag::DONTFORK, false),
                // Private anonymous only: EINVAL on shared and on any file-backed VMA, private
                // /dev/zero included (F5, C1).
                Advice::WipeOnFork => {
                    if pte.kind != MapKind::Private {
                        return Outcome::Failed { errno: EINVAL };
                    }
                    set(self, flag::WIPEONFORK, true);
                }
                Advice::KeepOnFork => set(self, flag::WIPEONFORK, false),
                // Content never changes; permission EINVAL, guard or SIGBUS EFAULT (F6).
                Advice::PopulateRead | Advice::PopulateWrite => {
                    let need = if advice == Advice::PopulateRead {
                        pte.prot & PROT_R != 0
                    } else {
                        pte.prot & PROT_W != 0
                    };
                    if !need {
                        return Outcome::Failed { errno: EINVAL };
                    }
                    if pte.flags & flag::GUARD != 0 || self.past_end(&pte) {
                        return Outcome::Failed { errno: EFAULT };
                    }
                }
                Advice::Cold => {}
                Advice::HugePage => {
                    set(self, flag::NOHUGEPAGE, false);
                    set(self, flag::HUGEPAGE, true);
                }
                Advice::NoHugePage => {
                    set(self, flag::HUGEPAGE, false);
                    set(self, flag::NOHUGEPAGE, true);
                }
                // Content unchanged. A lazily freed page stays what it was, may-be-dropped:
                // SEMANTICS F7 says PAGEOUT discards it, but only a folio already on the LRU is
                // reclaimed, and MADV_FREE leaves it in a per-CPU batch until that CPU drains it,
                // so PAGEOUT from another CPU skips it. Measured on 6.18 (C probe, 50 tries
                // each): free and pageout on one CPU, dropped 50/50; pageout pinned to the other
                // CPU, kept 50/50; after fork, in the child, kept 49/50 on the other CPU and
                // dropped 50/50 on the same. Found by the fuzzer (free, fork, exit, pageout).
                Advice::PageOut => {}
                // Private: the data is dropped (reads 0 after removal); shared: the object
                // keeps it (F8).
                Advice::GuardInstall => {
                    if shared && !self.features.guard_shared {
                        return Outcome::Failed { errno: EINVAL };
                    }
                    if !shared {
                        self.drop_private(proc, vpn);
                    }
                    set(self, flag::GUARD, true);
                }
                Advice::GuardRemove => set(self, flag::GUARD, false),
            }
            // A VMA flag splits the range off (see `split_vma`).
            if matches!(
                advice,
                Advice::DontFork
                    | Advice::DoFork
                    | Advice::WipeOnFork
                    | Advice::KeepOnFork
                    | Advice::HugePage
                    | Advice::NoHugePage
            ) {
                let vma = self.split_vma(&mut renamed, pte.vma);
                if let Some(p) = self.procs[proc.0 as usize].space.get_mut(vpn) {
                    p.vma = vma;
                }
            }
        }
        if hole {
            Outcome::Failed { errno: ENOMEM }
        } else {
            Outcome::Done
        }
    }

    /// Whether pages `[vpn, vpn + n)` of `proc` are all mapped with the same VMA attributes
    /// (kind, protection, VMA flags, and for shared memory one object at consecutive offsets).
    /// `Some(true)`: certainly one VMA; `Some(false)`: maybe (equal attributes, but made by
    /// different calls, which the kernel may or may not have merged); `None`: not one VMA.
    fn one_vma(&self, proc: ProcId, vpn: u64, n: u64) -> Option<bool> {
        let space = &self.procs[proc.0 as usize].space;
        let first = space.get(vpn)?;
        let mut same_call = true;
        for i in 0..n {
            let p = space.get(vpn + i)?;
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
                return None;
            }
            same_call &= p.vma == first.vma;
        }
        Some(same_call)
    }

    /// mremap (SEMANTICS G1-G9): flags checked first (EINVAL), then the source (EFAULT unless
    /// it is mapped and one VMA), then: old size 0 aliases a shared object; shrinking cuts the
    /// tail in place; growing happens in place when the kernel has room, else moves with
    /// MAYMOVE, else ENOMEM (the kernel's room is its choice: learnt from the observation);
    /// FIXED and DONTUNMAP move. Moved pages keep their frames, flags and guards; a private
    /// tail grows zero; a shared object never grows, so its new tail raises SIGBUS.
    #[allow(clippy::too_many_arguments)]
    fn remap(
        &mut self,
        proc: ProcId,
        base: u64,
        old: PageRange,
        new_pages: u16,
        flags: RemapFlags,
        result: MapId,
        observed: Option<&Outcome>,
    ) -> Result<Outcome, ModelError> {
        let ps = self.page_size;
        let old_vpn = self.vpn(base) + old.start as u64;
        let mut old_n = (old.end - old.start) as u64;
        let mut new_n = new_pages as u64;
        let fail = |errno| Ok(Outcome::Failed { errno });
        // The VMAs known to have been faulted (an anon_vma): those holding a written private
        // page, looked at before anything moves or is unmapped (see the move below).
        let mut faulted: Vec<u32> = Vec::new();
        for p in self.procs[proc.0 as usize].space.ptes.values() {
            if matches!(p.backing, PageBacking::Private(f) if f != FrameId::ZERO)
                && !faulted.contains(&p.vma)
            {
                faulted.push(p.vma);
            }
        }
        if (flags.fixed.is_some() || flags.dontunmap) && !flags.maymove {
            return fail(EINVAL);
        }
        if flags.dontunmap && old_n != new_n {
            return fail(EINVAL);
        }
        // The new range may not overlap the old one (G5), checked with the arguments, before the
        // address is looked up (check_mremap_params; measured).
        let dest = flags.fixed.map(|at| self.at(at));
        if let Some(d) = dest {
            let dv = self.vpn(d);
            if dv < old_vpn + old_n && old_vpn < dv + new_n {
                return fail(EINVAL);
            }
        }
        let old_addr = old_vpn * ps;
        let shrink_in_place = flags.fixed.is_none() && !flags.dontunmap && new_n <= old_n;
        let Some(first) = self.procs[proc.0 as usize].space.get(old_vpn).copied() else {
            // 6.18 looks the address up first (EFAULT); kernels before the 6.16 rework shrank
            // without looking (probe: "shrink, hole at start -> EFAULT" on 6.18).
            if shrink_in_place && old_n > 0 && observed_addr(observed) == Some(old_addr) {
                self.unmap_pages(proc, old_vpn + new_n, old_n - new_n);
                return Ok(self.name_result(result, old_addr, new_pages, MapKind::Private));
            }
            return fail(EFAULT);
        };
        if flags.dontunmap && first.kind.is_shared() && !self.features.dontunmap_shared {
            return fail(EINVAL);
        }
        // old_size 0 (G7): EINVAL on private memory (4.14+); on shared memory without MAYMOVE
        // the kernel tries to grow in place over the mapping itself and says ENOMEM (measured
        // on 6.18; SEMANTICS G7 says EINVAL, which is what the man page implies).
        if old_n == 0 && !first.kind.is_shared() {
            return fail(EINVAL);
        }
        if old_n == 0 && !flags.maymove {
            return fail(ENOMEM);
        }
        if old_n > 0 && shrink_in_place {
            // Shrinking (or keeping the size) cuts the tail and returns the address, without
            // asking whether the range is one VMA (G2; probe on 6.18: a hole inside the kept
            // part is no error).
            self.unmap_pages(proc, old_vpn + new_n, old_n - new_n);
            return Ok(self.name_result(result, old_addr, new_pages, first.kind));
        }
        // The part of the source that moves (a shrinking move drops its tail) must be one VMA,
        // checked before anything is unmapped (check_prep_vma; measured on 6.18: a shrinking
        // FIXED move whose dropped tail lies in another VMA succeeds, a growing one whose
        // source spans two VMAs fails with the destination intact).
        let mut multi = false;
        if old_n > 0 {
            let pure_move = flags.fixed.is_some() && old_n == new_n;
            match self.one_vma(proc, old_vpn, old_n.min(new_n)) {
                Some(true) => {}
                // Since 6.17 a pure move (FIXED, same size) may span VMAs, and the gaps between
                // them too: each VMA moves by the same offset (G4; probe R28.move-multi-vma;
                // gaps measured on 6.18).
                None if pure_move => multi = true,
                // Equal attributes from different calls, and the kernel said EFAULT: it had
                // not merged them, so a pure move went VMA by VMA (and stopped, see below).
                Some(false) if pure_move && observed_errno(observed) == Some(EFAULT) => {
                    multi = true
                }
                // Merged or not, the kernel's business.
                Some(false) | None if observed_errno(observed) == Some(EFAULT) => {
                    return fail(EFAULT);
                }
                Some(false) => {}
                None => return fail(EFAULT),
            }
        }
        // A multi-VMA move stops with EFAULT at the first private /dev/zero VMA; the VMAs
        // before it stay moved (their destinations unmapped first), it and those after it stay
        // where they were. A private /dev/zero mapping alone moves like any other. Measured on
        // 6.18 (probe: [shared 3][private /dev/zero 1], [private /dev/zero 1][private 3],
        // [private 2][private /dev/zero 1][private 1], with and without DONTUNMAP).
        let mut stopped = false;
        if multi {
            let space = &self.procs[proc.0 as usize].space;
            if let Some(cut) = (0..old_n).find(|&i| {
                space
                    .get(old_vpn + i)
                    .is_some_and(|p| p.kind == MapKind::PrivateZero)
            }) {
                if cut == 0 {
                    return fail(EFAULT);
                }
                stopped = true;
                old_n = cut;
                new_n = cut;
            }
        }
        // Then a move to a fixed address unmaps the destination, looks the source up again
        // (a destination that held the source itself, possible with old size 0, leaves
        // nothing: EFAULT), and cuts a shrinking source's tail (mremap_to; measured on 6.18).
        // A multi-VMA move goes VMA by VMA, each unmapping only its own destination: what is
        // mapped opposite a gap of the source stays (measured on 6.18).
        if let Some(d) = dest {
            let dv = self.vpn(d);
            if multi {
                for i in 0..new_n {
                    if self.procs[proc.0 as usize].space.get(old_vpn + i).is_some() {
                        self.unmap_pages(proc, dv + i, 1);
                    }
                }
            } else {
                self.unmap_pages(proc, dv, new_n);
            }
            if self.procs[proc.0 as usize].space.get(old_vpn).is_none() {
                return fail(EFAULT);
            }
        }
        if old_n > new_n {
            self.unmap_pages(proc, old_vpn + new_n, old_n - new_n);
            old_n = new_n;
        }
        if old_n == 0 {
            // An alias: a second mapping of the same object at the same offset (G7).
            let addr = match dest {
                Some(d) => d,
                None => {
                    let a = observed_addr(observed).unwrap_or_else(|| self.choose_addr(new_pages));
                    self.check_free(proc, result, a, new_pages)?;
                    a
                }
            };
            let vma = self.new_vma();
            let PageBacking::Object { obj, index } = first.backing else {
                unreachable!("checked shared")
            };
            let av = self.vpn(addr);
            for i in 0..new_n {
                let pte = Pte {
                    backing: PageBacking::Object {
                        obj,
                        index: index + i as u32,
                    },
                    flags: first.flags & flag::VMA,
                    alts: Alts::default(),
                    vma,
                    pgoff: Some(index as u64 + i),
                    ..first
                };
                self.take(&pte);
                self.procs[proc.0 as usize].space.ptes.insert(av + i, pte);
            }
            return Ok(self.name_result(result, addr, new_pages, first.kind));
        }
        let ext_free = !self.procs[proc.0 as usize]
            .space
            .any_mapped(old_vpn + old_n, new_n.saturating_sub(old_n));
        let target = match dest {
            Some(d) => d,
            None if flags.dontunmap => {
                observed_addr(observed).unwrap_or_else(|| self.choose_addr(new_pages))
            }
            None => match observed {
                Some(Outcome::Mapped { addr }) if *addr == old_addr || flags.maymove => *addr,
                // No room after the range: the kernel's to know (harness mappings may be there).
                Some(Outcome::Failed { errno }) if *errno == ENOMEM && !flags.maymove => {
                    return fail(ENOMEM);
                }
                _ if ext_free => old_addr,
                _ if flags.maymove => self.choose_addr(new_pages),
                _ => return fail(ENOMEM),
            },
        };
        if target == old_addr && dest.is_none() {
            // Grow in place (G3): the new tail must have been free.
            if !ext_free {
                return Err(ModelError::Placement {
                    map: result,
                    addr: target,
                    reason: format!("grows in place over pages that {proc} still maps"),
                });
            }
            self.extend(proc, old_vpn, old_n, new_n, &first);
            return Ok(self.name_result(result, old_addr, new_pages, first.kind));
        }
        // Move (G3, G5, G6).
        let tv = self.vpn(target);
        if dest.is_none() {
            self.check_free(proc, result, target, new_pages)?;
        }
        let moved = self.procs[proc.0 as usize]
            .space
            .remove_range(old_vpn, old_n);
        if flags.dontunmap {
            // The old range stays mapped: private pages read zero, shared pages still show the
            // object (an alias) (G6).
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
                self.procs[proc.0 as usize].space.ptes.insert(*vpn, stay);
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
        let anonymous = matches!(first.kind, MapKind::Private | MapKind::PrivateZero);
        for (vpn, mut pte) in moved {
            let offset = vpn - old_vpn;
            if offset < new_n {
                if anonymous && !faulted.contains(&pte.vma) {
                    pte.pgoff = None;
                }
                pte.vma = self.split_vma(&mut renamed, pte.vma);
                self.procs[proc.0 as usize]
                    .space
                    .ptes
                    .insert(tv + offset, pte);
            } else {
                self.release(&pte);
            }
        }
        let grown = Pte {
            vma: self.split_vma(&mut renamed, first.vma),
            pgoff: first
                .pgoff
                .filter(|_| !anonymous || faulted.contains(&first.vma)),
            ..first
        };
        self.extend(proc, tv, old_n.min(new_n), new_n, &grown);
        if stopped {
            return fail(EFAULT);
        }
        Ok(self.name_result(result, target, new_pages, first.kind))
    }

    /// Adds pages `[have, want)` after `vpn`, continuing `like`: zero pages for private memory,
    /// the object's next pages (past its end: SIGBUS) for shared memory.
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
            self.procs[proc.0 as usize].space.ptes.insert(vpn + i, pte);
        }
    }

    fn name_result(&mut self, result: MapId, addr: u64, pages: u16, kind: MapKind) -> Outcome {
        self.maps[result.0 as usize] = Some(MapHandle {
            base: addr,
            pages,
            kind,
        });
        Outcome::Mapped { addr }
    }

    /// The whole observable state of every live process.
    pub fn snapshot(&mut self) -> Snapshot {
        let mut procs = Vec::new();
        for p in 0..self.procs.len() {
            if self.procs[p].life != Life::Alive {
                continue;
            }
            let proc = ProcId(p as u8);
            let mut regions = Vec::new();
            let mut pages = Vec::new();
            let entries: Vec<(u64, Pte)> = self.procs[p]
                .space
                .ptes
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect();
            for (vpn, pte) in entries {
                let start = vpn * self.page_size;
                push_region(
                    &mut regions,
                    Region {
                        start,
                        end: start + self.page_size,
                        prot: pte.prot,
                        shared: pte.kind.is_shared(),
                        backing: backing_name(pte.kind),
                    },
                );
                // Snapshots read the pages /proc/self/maps lists as readable.
                if pte.prot & PROT_R != 0 {
                    let d = if pte.flags & flag::GUARD != 0 || self.past_end(&pte) {
                        UNREADABLE
                    } else {
                        let f = self.frame_at(proc, vpn).expect("mapped");
                        self.frames.digest(f)
                    };
                    pages.push((start, d));
                }
            }
            procs.push(ProcView {
                proc,
                regions,
                pages,
            });
        }
        Snapshot { procs }
    }

    /// Learns the kernel's choices from an observed snapshot: pages whose contents Linux leaves
    /// open (MADV_FREE) narrow to what was seen, when that is allowed.
    pub fn reconcile(&mut self, observed: &Snapshot) {
        let full = 0..self.page_size as usize;
        for view in &observed.procs {
            if self.life(view.proc) != Life::Alive {
                continue;
            }
            for &(addr, d) in &view.pages {
                if d != UNREADABLE {
                    self.settle(view.proc, self.vpn(addr), full.clone(), d);
                }
            }
        }
    }

    /// The bytes `proc` sees in the page at `addr`, if mapped: for reports.
    pub fn page_bytes(&self, proc: ProcId, addr: u64) -> Option<Vec<u8>> {
        let f = self.frame_at(proc, self.vpn(addr))?;
        Some(self.frames.bytes(f).to_vec())
    }

    /// Whether `proc`'s pages at `a` and `b` are one page of one shared object (an alias, as
    /// mremap with old size 0 or DONTUNMAP of shared memory makes): a write to one is seen
    /// through the other.
    pub fn aliases(&self, proc: ProcId, a: u64, b: u64) -> bool {
        let space = &self.procs[proc.0 as usize].space;
        match (space.get(self.vpn(a)), space.get(self.vpn(b))) {
            (Some(x), Some(y)) => matches!(
                (x.backing, y.backing),
                (
                    PageBacking::Object { obj: o1, index: i1 },
                    PageBacking::Object { obj: o2, index: i2 },
                ) if o1 == o2 && i1 == i2
            ),
            _ => false,
        }
    }

    /// Which mapping handle and page index an address falls in, for reports (the newest handle
    /// whose range covers it).
    pub fn locate(&self, addr: u64) -> Option<(MapId, u16)> {
        self.maps
            .iter()
            .enumerate()
            .rev()
            .filter_map(|(i, h)| h.map(|h| (MapId(i as u8), h)))
            .find(|(_, h)| addr >= h.base && addr < h.base + h.pages as u64 * self.page_size)
            .map(|(m, h)| (m, ((addr - h.base) / self.page_size) as u16))
    }
}

/// A call with a bad argument: the errno Linux gives, measured on 6.18 with the probe that
/// cowcheck's `invalid` op mirrors (man mmap/munmap/mprotect/madvise/mremap ERRORS agree):
/// - mmap: length 0 EINVAL (A4); MAP_FIXED at an unaligned address EINVAL (D3); a length
///   whose rounding wraps ENOMEM (A4);
/// - munmap: length 0, unaligned, wrapping: EINVAL (D1);
/// - mprotect: length 0 succeeds doing nothing; unaligned EINVAL; wrapping ENOMEM (the end is
///   below the start); unknown PROT bits EINVAL (E1);
/// - madvise: length 0 succeeds (F0); unaligned, wrapping, unknown advice: EINVAL (F0);
/// - mremap: new size 0, unaligned, wrapping new size, unknown flags: EINVAL (G1).
fn invalid_call(call: Syscall, bad: BadArg) -> Outcome {
    let errno = match (call, bad) {
        (Syscall::Mprotect | Syscall::Madvise, BadArg::ZeroLength) => return Outcome::Done,
        (Syscall::Mmap | Syscall::Mprotect, BadArg::Overflow) => ENOMEM,
        _ => EINVAL,
    };
    Outcome::Failed { errno }
}

/// How /proc/PID/maps names a mapping of this kind (SEMANTICS A2, C1, C2, O4).
fn backing_name(kind: MapKind) -> Backing {
    match kind {
        MapKind::Private => Backing::Anon,
        MapKind::PrivateZero => Backing::DevZero,
        MapKind::Shared | MapKind::SharedZero => Backing::Shmem,
    }
}

/// What a page is, semantically, at one moment: the "page state" axis of semantic coverage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PageState {
    /// Nothing mapped there.
    Unmapped,
    /// A private page never written: it reads the zero page.
    PrivateUntouched,
    /// A private page whose frame only this process maps.
    PrivateExclusive,
    /// A private page whose frame is shared copy-on-write with at least one live fork relative.
    PrivateCowShared,
    /// A page of a shared object that no other live process maps.
    SharedAlone,
    /// A page of a shared object that other live processes map too.
    SharedWithOthers,
}

impl PageState {
    pub const ALL: [PageState; 6] = [
        PageState::Unmapped,
        PageState::PrivateUntouched,
        PageState::PrivateExclusive,
        PageState::PrivateCowShared,
        PageState::SharedAlone,
        PageState::SharedWithOthers,
    ];
    pub fn name(self) -> &'static str {
        match self {
            PageState::Unmapped => "unmapped",
            PageState::PrivateUntouched => "private-untouched",
            PageState::PrivateExclusive => "private-exclusive",
            PageState::PrivateCowShared => "private-cow-shared",
            PageState::SharedAlone => "shared-alone",
            PageState::SharedWithOthers => "shared-with-others",
        }
    }
}

impl Model {
    /// The state of the page at `addr` in `proc`, and the kind of mapping it belongs to.
    pub fn page_state(&self, proc: ProcId, addr: u64) -> (PageState, Option<MapKind>) {
        let Some(pte) = self.procs[proc.0 as usize].space.get(self.vpn(addr)) else {
            return (PageState::Unmapped, None);
        };
        let state = match pte.backing {
            PageBacking::Private(f) if f == FrameId::ZERO => PageState::PrivateUntouched,
            PageBacking::Private(f) if self.frames.refs(f) > 1 => PageState::PrivateCowShared,
            PageBacking::Private(_) => PageState::PrivateExclusive,
            PageBacking::Object { obj, .. } => {
                let mine = self.procs[proc.0 as usize]
                    .space
                    .ptes
                    .values()
                    .filter(|p| matches!(p.backing, PageBacking::Object { obj: o, .. } if o == obj))
                    .count() as u32;
                let total = self.objects[obj.0 as usize].as_ref().map_or(0, |o| o.ptes);
                if total > mine {
                    PageState::SharedWithOthers
                } else {
                    PageState::SharedAlone
                }
            }
        };
        (state, Some(pte.kind))
    }
}

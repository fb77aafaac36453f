//! The reference model of Linux anonymous memory across fork: pure and deterministic, it never
//! makes a syscall. It holds a process tree, a page-granular address space per process and
//! explicit backing frames, and answers what each op must return and what every live process
//! must see.
//!
//! Rules (SEMANTICS.md section in brackets):
//! - fresh mappings read zero, private and shared, anonymous or /dev/zero [A1, A2, C1, C2];
//! - fork copies private memory by value at the instant of fork: both sides share each frame
//!   until one of them writes, and the writer gets a copy [B2, B3];
//! - a shared mapping is one object; every mapper, across any number of fork levels, sees every
//!   write at once, and the object lives while anyone maps it [B5];
//! - exit is an munmap of everything [B6]; munmap removes every page touching the range, an
//!   unmapped sub-range is not an error, and a later access is SIGSEGV/SEGV_MAPERR [D1];
//! - the kernel chooses where a mapping goes [A5]: the model is told the address the kernel
//!   returned and checks only that the range was free in the model; run alone, it picks one.

pub mod frame;
pub mod space;

use crate::outcome::{
    Backing, Death, Outcome, PROT_R, PROT_W, ProcView, Region, SEGV_ACCERR, SEGV_MAPERR,
    SIGSEGV, Snapshot, push_region,
};
use crate::program::{MapId, MapKind, Op, Pattern, ProcId, Span, caps};
use frame::{FrameId, Frames};
use space::{AddressSpace, ObjId, PageBacking, Pte};

/// Where the model places mappings when no kernel tells it: top-down from here, never reusing
/// an address, which is one of the placements Linux may choose.
const MODEL_MMAP_TOP: u64 = 0x7f00_0000_0000;

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

/// The range one `map` op returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapHandle {
    pub base: u64,
    pub pages: u16,
    pub kind: MapKind,
}

#[derive(Clone, Debug)]
struct SharedObject {
    frames: Vec<FrameId>,
    /// Page-table entries (in all processes) that point into the object.
    ptes: u32,
}

/// The model's whole world.
#[derive(Clone, Debug)]
pub struct Model {
    page_size: u64,
    frames: Frames,
    objects: Vec<Option<SharedObject>>,
    procs: Vec<Process>,
    maps: Vec<Option<MapHandle>>,
    next_placement: u64,
}

impl Model {
    /// A world with one live root process `p0` and nothing mapped.
    pub fn new(page_size: usize) -> Model {
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
            frames: Frames::new(page_size),
            objects: Vec::new(),
            procs,
            maps: vec![None; caps::MAX_MAPS],
            next_placement: MODEL_MMAP_TOP,
        }
    }

    pub fn page_size(&self) -> usize {
        self.page_size as usize
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

    /// Applies one op. `placement` is the address the kernel returned for a `map`; `None` lets
    /// the model choose.
    pub fn apply(&mut self, op: &Op, placement: Option<u64>) -> Result<Outcome, ModelError> {
        let proc = op.proc();
        if self.life(proc) != Life::Alive {
            return Ok(Outcome::Skipped);
        }
        if let Some(m) = op.map() {
            if !matches!(op, Op::Map { .. }) && self.handle(m).is_none() {
                // The map that names this handle never ran (its process was dead): nothing has
                // an address to touch, on either side.
                return Ok(Outcome::Skipped);
            }
        }
        let outcome = match *op {
            Op::Map {
                map, kind, pages, ..
            } => self.map(proc, map, kind, pages, placement)?,
            Op::Write {
                map, span, pattern, ..
            } => self.write(proc, map, span, pattern),
            Op::Read { map, span, .. } => self.read(proc, map, span),
            Op::Fork { child, .. } => self.fork(proc, child),
            Op::Exit { .. } => {
                self.end(proc, Life::Exited);
                Outcome::Done
            }
            Op::Unmap { map, pages, .. } => {
                let h = self.handle(map).expect("checked above");
                let vpn = self.vpn(h.base) + pages.start as u64;
                self.unmap_pages(proc, vpn, pages.len() as u64);
                Outcome::Done
            }
        };
        if let Some(death) = outcome.death() {
            self.end(proc, Life::Killed(death));
        }
        Ok(outcome)
    }

    fn vpn(&self, addr: u64) -> u64 {
        addr / self.page_size
    }

    fn map(
        &mut self,
        proc: ProcId,
        map: MapId,
        kind: MapKind,
        pages: u16,
        placement: Option<u64>,
    ) -> Result<Outcome, ModelError> {
        let len = pages as u64 * self.page_size;
        let addr = match placement {
            Some(addr) => addr,
            None => {
                self.next_placement -= len + self.page_size;
                self.next_placement
            }
        };
        let bad = |reason: &str| ModelError::Placement {
            map,
            addr,
            reason: reason.to_string(),
        };
        if addr % self.page_size != 0 {
            return Err(bad("is not page aligned"));
        }
        if addr.checked_add(len).is_none() {
            return Err(bad("wraps around the address space"));
        }
        let vpn = self.vpn(addr);
        if self.procs[proc.0 as usize]
            .space
            .any_mapped(vpn, pages as u64)
        {
            return Err(bad(&format!(
                "overlaps pages that {proc} still maps: mmap without MAP_FIXED must choose a free range (SEMANTICS A5)"
            )));
        }
        let backing_of = |i: u32, obj: Option<ObjId>| match obj {
            Some(obj) => PageBacking::Object { obj, index: i },
            None => PageBacking::Private(FrameId::ZERO),
        };
        let obj = if kind.is_shared() {
            Some(self.new_object(pages as usize))
        } else {
            None
        };
        let space = &mut self.procs[proc.0 as usize].space;
        for i in 0..pages as u32 {
            space.ptes.insert(
                vpn + i as u64,
                Pte {
                    kind,
                    prot: PROT_R | PROT_W,
                    backing: backing_of(i, obj),
                },
            );
        }
        if let Some(obj) = obj {
            self.objects[obj.0 as usize].as_mut().expect("new").ptes += pages as u32;
        }
        self.maps[map.0 as usize] = Some(MapHandle {
            base: addr,
            pages,
            kind,
        });
        Ok(Outcome::Mapped { addr })
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

    /// The fault, if any, of touching page `vpn` of `proc` with access `need` (PROT_R or W).
    fn fault(&self, proc: ProcId, vpn: u64, need: u8) -> Option<Death> {
        let page = vpn * self.page_size;
        match self.procs[proc.0 as usize].space.get(vpn) {
            None => Some(Death {
                signal: SIGSEGV,
                code: SEGV_MAPERR,
                page,
            }),
            Some(pte) if pte.prot & need != need => Some(Death {
                signal: SIGSEGV,
                code: SEGV_ACCERR,
                page,
            }),
            Some(_) => None,
        }
    }

    fn write(&mut self, proc: ProcId, map: MapId, span: Span, pattern: Pattern) -> Outcome {
        let h = self.handle(map).expect("checked by apply");
        let base_vpn = self.vpn(h.base);
        for page in span.page_range().pages() {
            let vpn = base_vpn + page as u64;
            if let Some(death) = self.fault(proc, vpn, PROT_W) {
                return Outcome::Killed {
                    death,
                    digests: Vec::new(),
                };
            }
            let frame = self.writable_frame(proc, vpn);
            let bytes = self.frames.bytes_mut(frame);
            let page_offset = page as usize * self.page_size as usize;
            for i in span.bytes_in_page(self.page_size as usize) {
                bytes[i] = pattern.byte_at(page_offset + i);
            }
        }
        Outcome::Done
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
                if f != FrameId::ZERO && self.frames.refs(f) == 1 {
                    return f;
                }
                let copy = self.frames.copy_of(f);
                self.frames.release(f);
                self.procs[proc.0 as usize]
                    .space
                    .get_mut(vpn)
                    .expect("present")
                    .backing = PageBacking::Private(copy);
                copy
            }
            PageBacking::Object { obj, index } => {
                let o = self.objects[obj.0 as usize].as_mut().expect("live object");
                let f = o.frames[index as usize];
                if f != FrameId::ZERO {
                    return f;
                }
                let fresh = self.frames.copy_of(FrameId::ZERO);
                self.objects[obj.0 as usize].as_mut().expect("live").frames[index as usize] =
                    fresh;
                fresh
            }
        }
    }

    /// The frame `proc` sees at `vpn`, if mapped.
    fn frame_at(&self, proc: ProcId, vpn: u64) -> Option<FrameId> {
        let pte = self.procs[proc.0 as usize].space.get(vpn)?;
        Some(match pte.backing {
            PageBacking::Private(f) => f,
            PageBacking::Object { obj, index } => {
                self.objects[obj.0 as usize].as_ref().expect("live").frames[index as usize]
            }
        })
    }

    fn read(&mut self, proc: ProcId, map: MapId, span: Span) -> Outcome {
        let h = self.handle(map).expect("checked by apply");
        let base_vpn = self.vpn(h.base);
        let mut digests = Vec::with_capacity(span.page_range().len() as usize);
        for page in span.page_range().pages() {
            let vpn = base_vpn + page as u64;
            if let Some(death) = self.fault(proc, vpn, PROT_R) {
                return Outcome::Killed { death, digests };
            }
            let f = self.frame_at(proc, vpn).expect("fault checked");
            let d = match span {
                Span::Pages(_) => self.frames.digest(f),
                Span::Bytes { .. } => crate::outcome::digest(
                    &self.frames.bytes(f)[span.bytes_in_page(self.page_size as usize)],
                ),
            };
            digests.push(d);
        }
        Outcome::Read { digests }
    }

    fn fork(&mut self, proc: ProcId, child: ProcId) -> Outcome {
        let space = self.procs[proc.0 as usize].space.clone();
        for pte in space.ptes.values() {
            self.take(pte.backing);
        }
        self.procs[child.0 as usize] = Process {
            life: Life::Alive,
            parent: Some(proc),
            space,
        };
        Outcome::Done
    }

    fn take(&mut self, b: PageBacking) {
        match b {
            PageBacking::Private(f) => self.frames.take(f),
            PageBacking::Object { obj, .. } => {
                self.objects[obj.0 as usize].as_mut().expect("live").ptes += 1
            }
        }
    }

    fn release(&mut self, b: PageBacking) {
        match b {
            PageBacking::Private(f) => self.frames.release(f),
            PageBacking::Object { obj, .. } => {
                let o = self.objects[obj.0 as usize].as_mut().expect("live");
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
        for pte in removed {
            self.release(pte.backing);
        }
    }

    /// Exit or death: the address space goes as if unmapped [B6]; children live on.
    fn end(&mut self, proc: ProcId, life: Life) {
        let space = std::mem::take(&mut self.procs[proc.0 as usize].space);
        for pte in space.ptes.values() {
            self.release(pte.backing);
        }
        self.procs[proc.0 as usize].life = life;
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
                if pte.prot & PROT_R != 0 {
                    let f = self.frame_at(proc, vpn).expect("mapped");
                    pages.push((start, self.frames.digest(f)));
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

    /// The bytes `proc` sees in the page at `addr`, if mapped: for reports.
    pub fn page_bytes(&self, proc: ProcId, addr: u64) -> Option<Vec<u8>> {
        let f = self.frame_at(proc, self.vpn(addr))?;
        Some(self.frames.bytes(f).to_vec())
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

/// How /proc/PID/maps names a mapping of this kind (SEMANTICS A2, C1, C2, O4).
fn backing_name(kind: MapKind) -> Backing {
    match kind {
        MapKind::Private => Backing::Anon,
        MapKind::PrivateZero => Backing::DevZero,
        MapKind::Shared | MapKind::SharedZero => Backing::Shmem,
    }
}

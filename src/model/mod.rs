//! The reference model of Linux anonymous memory across fork: pure and deterministic, it never
//! makes a syscall. It holds a process tree, a page-granular address space per process and
//! explicit backing frames, and answers what each op must return and what every live process
//! must see. It uses only `crate::program` (ops, outcomes, features, tables): it must never
//! import the kernel executor, the checker, the reports or a front end, and it holds no
//! `unsafe`.
//!
//! One file per family, split as Linux's mm/ is, with the kernel's function names where the
//! model does the same thing:
//! - `mod.rs` (this file): `Model`, its state, the op dispatch (`step`, `apply`), learning the
//!   kernel's choices (`reconcile`, `settle`), errors;
//! - `space.rs`: address spaces at page granularity, page-table entries and their flags;
//! - `frame.rs`: backing frames, reference-counted;
//! - `mmap.rs`: mmap, placement, munmap, VMA identity, and the argument errnos of mmap and
//!   munmap (mm/mmap.c, mm/vma.c);
//! - `memory.rs`: faults, copy-on-write, reads and writes (mm/memory.c);
//! - `fork.rs`: fork and exit (kernel/fork.c `dup_mmap`, mm/memory.c `copy_page_range`,
//!   mm/mmap.c `exit_mmap`);
//! - `mprotect.rs`, `madvise.rs`, `mremap.rs`: one call each (mm/mprotect.c, mm/madvise.c,
//!   mm/mremap.c);
//! - `malloc.rs`: the malloc family's blocks (M1-M6), outside the address space;
//! - `pipe.rs`: vmsplice, pipe reads, and writes forced through the kernel (/proc/self/mem,
//!   process_vm_writev);
//! - `observe.rs`: snapshots, page digests, how /proc/PID/maps names a mapping, `Life`,
//!   `PageState`;
//! - `physical.rs`: what the physical channel (pagemap) must show, from the frames (I2-I9);
//! - `thp.rs`: what of a PMD that may be huge the channel predicts, and collapses learnt from
//!   the views (I20-I23);
//! - `clone_vm.rs`: `clone(CLONE_VM)` children, which share their parent's address space
//!   (T30-T34).
//!
//! Rules (docs/SEMANTICS.md IDs in parentheses; where the model differs from that document, the
//! comment at the rule says what was measured):
//! - fresh mappings read zero, private and shared, anonymous or /dev/zero (A1, A2, C1, C2),
//!   every mmap of /dev/zero new memory whichever descriptor it goes through (C4) (`mmap.rs`);
//! - a length in bytes covers the whole pages it reaches, for every call (A9); mmap never looks
//!   at an anonymous mapping's fd, ignores an aligned offset and refuses an unaligned one
//!   (A10); MAP_FIXED and MAP_FIXED_NOREPLACE refuse an address inside a page, and together
//!   act as MAP_FIXED_NOREPLACE (D6, D7) (`mmap.rs`);
//! - fork copies private memory by value at the instant of fork: both sides share each frame
//!   until one of them writes, and the writer gets a copy (B2, B3); DONTFORK pages are not
//!   inherited, WIPEONFORK pages arrive zeroed, guards are inherited except in WIPEONFORK
//!   ranges (B1, B4, F4, F5, F8); see `fork.rs`, `memory.rs`;
//! - a shared mapping is one object; every mapper, across any number of fork levels, sees every
//!   write at once, and the object lives while anyone maps it (B5); its size is fixed, and a
//!   page past its end raises SIGBUS (G8); see `memory.rs`;
//! - exit is an munmap of everything (B6); munmap removes every page touching the range, an
//!   unmapped sub-range is not an error, and a later access is SIGSEGV/SEGV_MAPERR (D1)
//!   (`fork.rs`, `mmap.rs`);
//! - mprotect changes pages up to the first hole and then fails with ENOMEM (E1)
//!   (`mprotect.rs`); madvise applies to the mapped parts and then fails with ENOMEM, and stops
//!   at the first VMA it rejects (F0), and with a length of 0 does nothing (F14); each
//!   advice's own rules are in `madvise.rs`;
//! - mremap (G1-G10): `mremap.rs`;
//! - a racing thread's page holds the interleaving's counter, learnt from what is seen; a fork's
//!   child holds one counter stored up to the fork's return, fixed from then on (T1-T4, see
//!   `thread.rs`);
//! - vmsplice takes a reference to the page as it is (K3); a forced write never reaches another
//!   process or the zero page (E6, K1); see `pipe.rs`;
//! - the kernel chooses where a mapping goes (A5) and, where Linux leaves a choice (MADV_FREE
//!   dropping a page or not, growing in place or moving, a version-dependent errno), the model
//!   holds the set of allowed outcomes and learns the kernel's choice from the observation
//!   (`step`, `reconcile`), checking that it was allowed (§4). Run alone, it picks one.

#![forbid(unsafe_code)]

pub mod frame;
pub mod space;

mod clone_vm;
mod fork;
mod glibc;
mod huge;
mod hugetlb;
mod hugetlb_phys;
mod madvise;
mod malloc;
mod memory;
mod mmap;
mod mprotect;
mod mremap;
mod observe;
mod page_words;
mod physical;
mod pipe;
mod race_advice;
mod race_layout;
mod race_splice;
mod racers;
mod thp;
mod thp_collapse;
mod thp_pieces;
mod thread;
mod thread_ops;
mod vfork;

use crate::program::outcome::{Outcome, Snapshot};
use crate::program::{MapId, MapKind, Op, PageRange, ProcId, Syscall, caps, tail_len};
use frame::{FrameId, Frames};
use space::{AddressSpace, Alts, PageBacking, flag};

pub use crate::program::features::Features;
pub use crate::program::outcome::UNREADABLE;
pub use crate::program::tables::errno;
pub use observe::{Life, ObjectPages, PageState};
pub use physical::{Identity, Prediction, Presence};
pub use racers::Watch;
pub use thread::RaceWord;

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

#[derive(Clone, Debug)]
struct Process {
    life: Life,
    parent: Option<ProcId>,
    /// The address space the process runs in: an index into `Model::spaces`. A process's own
    /// at birth (its handle's number); a `clone(CLONE_VM)` child's is its parent's (T30).
    mm: usize,
}

/// The range one `map` (or `remap`) op returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapHandle {
    pub base: u64,
    pub pages: u16,
    pub kind: MapKind,
}

/// A shared mapping's object (the shmem file behind MAP_SHARED|MAP_ANONYMOUS or a shared
/// /dev/zero mapping, shmem_zero_setup).
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
    /// Address spaces (`mm_struct`s), by `Process::mm` (`clone_vm.rs`).
    spaces: Vec<AddressSpace>,
    maps: Vec<Option<MapHandle>>,
    /// Where the model's own next placement ends (`get_unmapped_area`).
    next_placement: u64,
    next_vma: u32,
    /// The program's pipe: each entry one vmspliced page, as the frames it may show (more than
    /// one where the page's contents were open to the kernel's choice).
    pipe: std::collections::VecDeque<pipe::PipePage>,
    /// Every process's live malloc-family blocks (`malloc.rs`).
    heap: malloc::Heap,
    /// Racing threads and what was learnt of their pages (`thread.rs`, T1-T4).
    threads: thread::Racers,
    /// Other worlds the kernel may be in, where the observations so far cannot tell (a failed
    /// MREMAP_FIXED move that may have unmapped its destination first, G5): each is stepped
    /// alongside and dropped when an outcome or a snapshot rules it out (`mremap.rs`).
    others: Vec<Model>,
    /// Frames of zero bytes that are learnt pieces of a transparent huge page (`thp_pieces.rs`,
    /// I24): predicted by the physical channel, though all zero.
    thp_pieces: std::collections::BTreeSet<frame::FrameId>,
    /// Whole PMDs (process, first page) the last op's MADV_COLLAPSE returned 0 over, for the
    /// view right after it to resolve (`thp_collapse.rs`, I25).
    collapses: Vec<(ProcId, u64)>,
}

/// The address an observation says the kernel chose, if it chose one.
fn observed_addr(observed: Option<&Outcome>) -> Option<u64> {
    match observed {
        Some(Outcome::Mapped { addr }) => Some(*addr),
        Some(Outcome::Allocated { addr, .. }) if *addr != 0 => Some(*addr),
        _ => None,
    }
}

/// The errno an observation says the call failed with, if it failed.
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
        let mut procs: Vec<Process> = (0..caps::MAX_PROCS)
            .map(|mm| Process {
                life: Life::Unborn,
                parent: None,
                mm,
            })
            .collect();
        procs[0].life = Life::Alive;
        Model {
            page_size: page_size as u64,
            features,
            frames: Frames::new(page_size),
            objects: Vec::new(),
            procs,
            spaces: vec![AddressSpace::default(); caps::MAX_PROCS],
            maps: vec![None; caps::MAX_MAPS],
            next_placement: mmap::MODEL_MMAP_TOP,
            next_vma: 0,
            pipe: Default::default(),
            heap: Default::default(),
            threads: Default::default(),
            others: Vec::new(),
            thp_pieces: Default::default(),
            collapses: Vec::new(),
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
        if self.others.is_empty() {
            return self.step_one(op, observed);
        }
        self.step_worlds(op, observed)
    }

    /// Applies one op to this world alone.
    fn step_one(&mut self, op: &Op, observed: Option<&Outcome>) -> Result<Outcome, ModelError> {
        // A collapse is resolved by the view right after its op, or not at all (I25).
        self.collapses.clear();
        let proc = op.proc();
        if self.life(proc) != Life::Alive {
            return Ok(Outcome::Skipped);
        }
        // The malloc family and blocks' bytes: `malloc.rs` (M1-M6).
        if let Some(outcome) = self.malloc_step(op, observed) {
            return outcome;
        }
        // Every handle the op reads an address from must have one: a handle whose map or remap
        // never succeeded names nothing, on either side.
        let needs_base: Vec<MapId> = match *op {
            Op::Map { .. } | Op::Fork { .. } | Op::Exit { .. } | Op::CloneVm { .. } => vec![],
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
                map,
                kind,
                pages,
                tail,
                args,
                ..
            } => {
                let request = mmap::Mmap {
                    proc,
                    map,
                    kind,
                    len: tail_len(pages, tail, self.page_size as usize) as u64,
                    args,
                    place: None,
                };
                self.mmap(request, observed)?
            }
            Op::MapAt {
                map,
                kind,
                pages,
                tail,
                args,
                how,
                at,
                ..
            } => {
                let request = mmap::Mmap {
                    proc,
                    map,
                    kind,
                    len: tail_len(pages, tail, self.page_size as usize) as u64,
                    args,
                    place: Some((how, self.at(at))),
                };
                self.mmap(request, observed)?
            }
            Op::Write {
                map, span, pattern, ..
            } => {
                let at = base(map);
                match self.hugetlb_access(proc, at, span, Some(pattern), observed) {
                    Some(death) => death,
                    None => self.write(proc, at, span, pattern),
                }
            }
            Op::Read { map, span, .. } => {
                let at = base(map);
                match self.hugetlb_access(proc, at, span, None, observed) {
                    Some(death) => death,
                    None => {
                        let predicted = self.read(proc, at, span, observed);
                        self.racy_read(proc, at, span, predicted, observed)
                    }
                }
            }
            Op::Fork { child, .. } => {
                let forked = self.fork(proc, child);
                self.fork_racing(proc, child, forked, observed)
            }
            // Op threads (`thread_ops.rs`, T20-T22): starting, handing an op and ending change
            // no memory.
            Op::Thread { .. } | Op::By { .. } | Op::End { .. } => self.thread_op(op),
            Op::Exit { .. } => {
                self.racers_end(proc);
                self.end(proc, Life::Exited);
                Outcome::Done
            }
            Op::Unmap {
                map, pages, tail, ..
            } => {
                let vpn = self.vpn(base(map)) + pages.start as u64;
                let len = self.page_align(self.extent_len(pages, tail));
                match self.hugetlb_munmap(proc, vpn, len) {
                    Some(refused) => refused,
                    None => {
                        self.do_munmap(proc, vpn, len);
                        Outcome::Done
                    }
                }
            }
            Op::Protect {
                map,
                pages,
                tail,
                prot,
                ..
            } => {
                let pages = self.rounded(pages, tail);
                self.mprotect(proc, base(map), pages, prot)
            }
            Op::Advise {
                map,
                pages,
                tail,
                advice,
                ..
            } => {
                let pages = self.rounded(pages, tail);
                self.madvise(proc, base(map), pages, advice, observed)
            }
            Op::Remap {
                map,
                old,
                old_tail,
                new_pages,
                new_tail,
                flags,
                result,
                ..
            } => {
                let call = mremap::Mremap {
                    proc,
                    addr: base(map) + old.start as u64 * self.page_size,
                    old_len: self.extent_len(old, old_tail),
                    new_len: tail_len(new_pages, new_tail, self.page_size as usize) as u64,
                    new_pages,
                    flags,
                    result,
                };
                self.mremap(call, observed)?
            }
            // A call with a bad argument: each family's table of errnos.
            Op::Invalid { call, bad, .. } => match call {
                Syscall::Mmap => mmap::mmap_bad_arg(bad),
                Syscall::Munmap => mmap::munmap_bad_arg(bad),
                Syscall::Mprotect => mprotect::mprotect_bad_arg(bad),
                Syscall::Madvise => madvise::madvise_bad_arg(bad),
                Syscall::Mremap => mremap::mremap_bad_arg(bad, observed),
            },
            Op::Poke {
                map,
                span,
                pattern,
                via,
                ..
            } => self.poke(proc, base(map), span, pattern, via),
            Op::Vmsplice { map, page, .. } => self.vmsplice(proc, base(map), page, observed),
            Op::PipeRead { .. } => self.pipe_read(observed),
            Op::Alloc { .. } | Op::Free { .. } | Op::Tune { .. } => unreachable!("malloc_step"),
            Op::Race {
                thread,
                kind,
                map,
                page,
                ..
            } => self.race(proc, thread, kind, base(map), page),
            Op::Stop { thread, .. } => self.stop(proc, thread, observed),
            // The child's death is the op's outcome, not the parent's (T5): `vfork.rs`.
            Op::Vfork {
                map, span, pattern, ..
            } => return Ok(self.vfork(proc, base(map), span, pattern)),
            // The child runs in `proc`'s address space (T30): `clone_vm.rs`.
            Op::CloneVm { child, .. } => self.clone_vm(proc, child),
        };
        if let Some(death) = outcome.death() {
            self.racers_end(proc);
            self.end(proc, Life::Killed(death));
        }
        Ok(outcome)
    }

    /// `proc`'s address space.
    fn space(&self, proc: ProcId) -> &AddressSpace {
        &self.spaces[self.procs[proc.0 as usize].mm]
    }

    fn space_mut(&mut self, proc: ProcId) -> &mut AddressSpace {
        let mm = self.procs[proc.0 as usize].mm;
        &mut self.spaces[mm]
    }

    fn vpn(&self, addr: u64) -> u64 {
        addr / self.page_size
    }

    /// The address an `mN+P` (or `mN+P+MB`) argument names.
    fn at(&self, at: crate::program::At) -> u64 {
        self.handle(at.map).expect("checked").base
            + at.page as u64 * self.page_size
            + at.byte as u64
    }

    /// The length in bytes of a range whose last page is cut after `tail` bytes.
    fn extent_len(&self, pages: PageRange, tail: u16) -> u64 {
        tail_len(pages.len(), tail, self.page_size as usize) as u64
    }

    /// A range whose last page is cut after `tail` bytes, as the whole pages the call rounds
    /// its length up to (A9).
    fn rounded(&self, pages: PageRange, tail: u16) -> PageRange {
        let len = self.page_align(self.extent_len(pages, tail));
        PageRange {
            start: pages.start,
            end: pages.start + len as u16,
        }
    }

    /// Names `map` as the range `pages` pages from `addr`, and says so.
    fn name_result(&mut self, map: MapId, addr: u64, pages: u16, kind: MapKind) -> Outcome {
        self.maps[map.0 as usize] = Some(MapHandle {
            base: addr,
            pages,
            kind,
        });
        Outcome::Mapped { addr }
    }

    /// Learns the kernel's choices from an observed snapshot: pages whose contents Linux leaves
    /// open (MADV_FREE) narrow to what was seen, when that is allowed.
    pub fn reconcile(&mut self, observed: &Snapshot) {
        self.choose_world(observed);
        self.settle_racing(observed);
        self.hugetlb_settle(observed);
        let full = 0..self.page_size as usize;
        for view in &observed.procs {
            if self.life(view.proc) != Life::Alive {
                continue;
            }
            // Only a page with alternatives or lazily freed has a choice to narrow (`settle`
            // changes nothing else): most views have none, and need no lookup a page.
            let open: std::collections::BTreeSet<u64> = (self.space(view.proc).ptes.iter())
                .filter(|(_, pte)| !pte.alts.is_empty() || pte.flags & flag::LAZY != 0)
                .map(|(&vpn, _)| vpn)
                .collect();
            if open.is_empty() {
                continue;
            }
            for &(addr, d) in &view.pages {
                let vpn = self.vpn(addr);
                if d != UNREADABLE && open.contains(&vpn) {
                    self.settle(view.proc, vpn, full.clone(), d);
                }
            }
        }
    }

    /// Narrows a page with alternatives to those that agree with an observed digest of bytes
    /// `range`. Returns whether the observation is one of the allowed values (a page without
    /// alternatives: whether it equals the page).
    fn settle(&mut self, proc: ProcId, vpn: u64, range: std::ops::Range<usize>, seen: u64) -> bool {
        let Some(pte) = self.space(proc).get(vpn).copied() else {
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
        self.space_mut(proc).get_mut(vpn).expect("present").alts = keep;
        if primary_ok {
            return true;
        }
        if let Some(a) = promoted {
            self.space_mut(proc).get_mut(vpn).expect("present").backing = PageBacking::Private(a);
            self.frames.release(old_primary);
            return true;
        }
        if zero_ok {
            // Dropped by the kernel: zero from now on, until written (one-way, F2).
            let p = self.space_mut(proc).get_mut(vpn).expect("present");
            p.backing = PageBacking::Private(FrameId::ZERO);
            p.flags &= !(flag::LAZY | flag::EXCLUSIVE);
            let alts = std::mem::take(&mut p.alts);
            for a in alts.iter() {
                self.frames.release(a);
            }
            self.frames.release(old_primary);
            return true;
        }
        false
    }
}

//! What can be seen of the model from outside: snapshots (each live process's regions as
//! /proc/PID/maps would list them, and a digest of each readable page), the bytes of a page,
//! aliases, which handle an address lies in, process lives and page states (for coverage).
//! Reads only, but for the digests it caches: never changes what any process sees.

use super::frame::FrameId;
use super::space::{ObjId, PageBacking, Pte, flag};
use super::{Model, UNREADABLE};
use crate::program::outcome::{Backing, Death, PROT_R, ProcView, Region, Snapshot, push_region};
use crate::program::{MapId, MapKind, ProcId};

/// A process's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    Unborn,
    Alive,
    Exited,
    Killed(Death),
}

/// How /proc/PID/maps names a mapping of this kind (A2, C1, C2, O4).
fn backing_name(kind: MapKind) -> Backing {
    match kind {
        MapKind::Private => Backing::Anon,
        MapKind::PrivateZero => Backing::DevZero,
        MapKind::Shared | MapKind::SharedZero => Backing::Shmem,
    }
}

impl Model {
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
            let entries: Vec<(u64, Pte)> = self
                .space(proc)
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
                        // `/anon_hugepage (deleted)`, private or shared (L6).
                        backing: if pte.tlb != 0 {
                            Backing::Hugetlb
                        } else {
                            backing_name(pte.kind)
                        },
                    },
                );
                // Snapshots read the pages /proc/self/maps lists as readable.
                if pte.prot & PROT_R != 0 {
                    let gone = pte.tlb & super::space::tlb::GONE != 0;
                    let d = if pte.flags & flag::GUARD != 0 || self.past_end(&pte) || gone {
                        UNREADABLE
                    } else {
                        let f = self.frame_of(&pte).expect("mapped");
                        self.frames.digest(f)
                    };
                    pages.push((start, d));
                }
            }
            procs.push(ProcView {
                proc,
                regions,
                pages,
                phys: Vec::new(),
            });
        }
        self.racing_views(&mut procs);
        Snapshot { procs }
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
        let space = self.space(proc);
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

    /// The state of the page at `addr` in `proc`, and the kind of mapping it belongs to.
    pub fn page_state(&self, proc: ProcId, addr: u64) -> (PageState, Option<MapKind>) {
        self.page_state_counted(proc, addr, &mut ObjectPages::default())
    }

    /// `page_state`, with `counts` holding how many pages of each shared object `proc` maps,
    /// counted at the first shared page asked about and kept for the next ones: coverage asks
    /// about every page an op touches (hundreds), and counting them anew for each page made
    /// that quadratic. `counts` must be fresh for each `proc` and each state of the model.
    pub fn page_state_counted(
        &self,
        proc: ProcId,
        addr: u64,
        counts: &mut ObjectPages,
    ) -> (PageState, Option<MapKind>) {
        let Some(pte) = self.space(proc).get(self.vpn(addr)) else {
            return (PageState::Unmapped, None);
        };
        let state = match pte.backing {
            PageBacking::Private(f) if f == FrameId::ZERO => PageState::PrivateUntouched,
            PageBacking::Private(f) if self.frames.refs(f) > 1 => PageState::PrivateCowShared,
            PageBacking::Private(_) => PageState::PrivateExclusive,
            PageBacking::Object { obj, .. } => {
                let mine = counts.of(obj, || {
                    let mut per_object: Vec<(ObjId, u32)> = Vec::new();
                    for p in self.space(proc).ptes.values() {
                        if let PageBacking::Object { obj: o, .. } = p.backing {
                            match per_object.iter_mut().find(|(x, _)| *x == o) {
                                Some((_, n)) => *n += 1,
                                None => per_object.push((o, 1)),
                            }
                        }
                    }
                    per_object
                });
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

    /// Whether `proc` maps the page at `addr` (`page_state` is not `Unmapped`).
    pub fn maps_page(&self, proc: ProcId, addr: u64) -> bool {
        self.space(proc).get(self.vpn(addr)).is_some()
    }
}

/// How many pages of each shared object one process maps, counted once (`page_state_counted`).
#[derive(Debug, Default)]
pub struct ObjectPages(Option<Vec<(ObjId, u32)>>);

impl ObjectPages {
    fn of(&mut self, obj: ObjId, count: impl FnOnce() -> Vec<(ObjId, u32)>) -> u32 {
        let counts = self.0.get_or_insert_with(count);
        counts
            .iter()
            .find(|(o, _)| *o == obj)
            .map_or(0, |(_, n)| *n)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::generate::{GenConfig, random_program};
    use crate::program::{MapId, caps};

    /// The counts kept across pages (`page_state_counted`) give each page the state that
    /// `page_state` gives it alone, at every step of random programs of every family.
    #[test]
    fn counted_page_states_are_page_states() {
        let mut shared = 0;
        for index in 0..80 {
            let program = random_program(7, index, GenConfig::default());
            let mut model = Model::new(4096);
            for op in &program.ops {
                for p in (0..caps::MAX_PROCS as u8).map(ProcId) {
                    if model.life(p) != Life::Alive {
                        continue;
                    }
                    let mut counts = ObjectPages::default();
                    for h in (0..caps::MAX_MAPS as u8).filter_map(|m| model.handle(MapId(m))) {
                        for page in 0..h.pages as u64 {
                            let addr = h.base + page * 4096;
                            let alone = model.page_state(p, addr);
                            assert_eq!(model.page_state_counted(p, addr, &mut counts), alone);
                            assert_eq!(model.maps_page(p, addr), alone.0 != PageState::Unmapped);
                            shared += matches!(alone.0, PageState::SharedWithOthers) as u32;
                        }
                    }
                }
                if model.apply(op, None).is_err() {
                    break;
                }
            }
        }
        assert!(
            shared > 0,
            "no page shared with others: the test saw nothing"
        );
    }
}

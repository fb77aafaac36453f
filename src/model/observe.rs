//! What can be seen of the model from outside: snapshots (each live process's regions as
//! /proc/PID/maps would list them, and a digest of each readable page), the bytes of a page,
//! aliases, which handle an address lies in, process lives and page states (for coverage).
//! Reads only, but for the digests it caches: never changes what any process sees.

use super::frame::FrameId;
use super::space::{PageBacking, Pte, flag};
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
        let Some(pte) = self.space(proc).get(self.vpn(addr)) else {
            return (PageState::Unmapped, None);
        };
        let state = match pte.backing {
            PageBacking::Private(f) if f == FrameId::ZERO => PageState::PrivateUntouched,
            PageBacking::Private(f) if self.frames.refs(f) > 1 => PageState::PrivateCowShared,
            PageBacking::Private(_) => PageState::PrivateExclusive,
            PageBacking::Object { obj, .. } => {
                let mine = self
                    .space(proc)
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

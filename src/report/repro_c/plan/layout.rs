//! What the kernel's own placement leaves open in a reproducer's state checks: the handles it
//! placed by its own choice (a map without an address, a hint, a remap that may move) are
//! known only in the processes that placed or inherited them, and a remap's source range or a
//! hint's target may or may not be mapped; the state checks leave those pages out.

use crate::model::{Life, UNREADABLE};
use crate::program::{MapId, Op, PlaceHow, ProcId, caps};

use super::{Row, StateCheck, Walk, phys_bits};

/// A handle placed where the kernel chose, by process `by` at op `at`.
pub(super) struct Placed {
    map: u8,
    by: ProcId,
    at: usize,
}

impl Walk {
    /// Records what op `i` leaves to the kernel's placement (`mapped`: it returned an address),
    /// and each fork's op.
    pub(super) fn note_placement(&mut self, i: usize, op: &Op, mapped: bool) {
        match *op {
            Op::Remap {
                map,
                old,
                flags,
                result,
                proc,
                ..
            } if mapped && flags.fixed.is_none() && (flags.maymove || flags.dontunmap) => {
                if !flags.dontunmap {
                    self.uncertain
                        .push((map.0, old.start..old.end.max(old.start + 1)));
                }
                self.placed.push(Placed {
                    map: result.0,
                    by: proc,
                    at: i,
                });
            }
            Op::MapAt {
                how: PlaceHow::Hint,
                at,
                pages,
                map,
                proc,
                ..
            } => {
                self.uncertain
                    .push((at.map.0, at.page..at.page.saturating_add(pages)));
                self.placed.push(Placed {
                    map: map.0,
                    by: proc,
                    at: i,
                });
            }
            Op::Map { map, proc, .. } => self.placed.push(Placed {
                map: map.0,
                by: proc,
                at: i,
            }),
            Op::Fork { child, .. } | Op::CloneVm { child, .. } => self.birth[child.0 as usize] = i,
            _ => {}
        }
    }

    /// Whether process `q` holds handle `m`'s range because it placed it or inherited it (then
    /// the placement does not matter: the range is where the handle says).
    fn holds(&self, q: ProcId, m: u8) -> bool {
        let Some(p) = self.placed.iter().rev().find(|p| p.map == m) else {
            return true;
        };
        let mut cur = q;
        loop {
            if cur == p.by {
                return true;
            }
            if cur == ProcId::ROOT || self.birth[cur.0 as usize] < p.at {
                return false;
            }
            match self.model.parent(cur) {
                Some(parent) => cur = parent,
                None => return false,
            }
        }
    }

    /// What every live process must look like now, per mapping handle and page, leaving out
    /// what the kernel's placement decides.
    pub(super) fn state_checks(&mut self, after_op: usize) -> Vec<StateCheck> {
        let snap = self.model.snapshot();
        let physical = self.model.physical();
        let ps = self.page_size as u64;
        let mut out = Vec::new();
        for view in &snap.procs {
            if self.model.life(view.proc) != Life::Alive {
                continue;
            }
            let mut rows = Vec::new();
            for m in 0..caps::MAX_MAPS as u8 {
                let Some(h) = self.model.handle(MapId(m)) else {
                    continue;
                };
                // Only where the process placed or inherited the handle is its range known here.
                if !self.holds(view.proc, m) {
                    continue;
                }
                for page in 0..h.pages {
                    if self
                        .uncertain
                        .iter()
                        .any(|(um, r)| *um == m && r.contains(&page))
                    {
                        continue;
                    }
                    let addr = h.base + page as u64 * ps;
                    if super::super::race::unmapped_or_not(&self.model, view.proc, addr) {
                        continue;
                    }
                    let mapped = view.regions.iter().any(|r| r.start <= addr && addr < r.end);
                    let digest = view
                        .pages
                        .iter()
                        .find(|(a, _)| *a == addr)
                        .map(|(_, d)| *d)
                        .filter(|d| *d != UNREADABLE);
                    let phys = physical
                        .iter()
                        .find(|(p, _)| *p == view.proc)
                        .and_then(|(_, preds)| preds.iter().find(|p| p.addr == addr))
                        .map_or(0, phys_bits);
                    let race = if mapped && digest.is_some() {
                        self.races
                            .check(&self.model, view.proc, addr, 0, self.page_size)
                            .unwrap_or(None)
                    } else {
                        None
                    };
                    rows.push(Row {
                        map: m,
                        page,
                        mapped,
                        readable: mapped && digest.is_some(),
                        digest: digest.unwrap_or(0),
                        phys,
                        race,
                    });
                }
            }
            out.push(StateCheck {
                after_op,
                proc: view.proc,
                rows,
            });
        }
        out
    }
}

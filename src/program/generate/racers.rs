//! The threads family's newer race kinds (docs/SEMANTICS.md T10...): which kind a new race
//! is, and a reader joining a storing thread, on its page most often, in its process or in
//! another live one (a relative whose page is a copy, or a shared object's other mapper).
//! Called from `threads.rs`; everything the validator refuses is dropped.

use super::{Builder, RawOp};
use crate::program::{MapId, Op, ProcId, RaceKind};

impl Builder {
    /// The kind of a new race: `write` most often, then `dontneed`, `poke`, `read` and
    /// `protect` (T1, T7, T8, T10, T11).
    pub(super) fn race_kind(&self, r: &RawOp) -> RaceKind {
        match r.d % 8 {
            0..=2 => RaceKind::Write,
            3 | 7 => RaceKind::DontNeed,
            4 => RaceKind::Poke,
            5 => RaceKind::Read,
            _ => RaceKind::Protect,
        }
    }

    /// Beside a storing thread of `p` on `page` of `map`: a reader joins it (T10), in `p` or
    /// in another live process, on that page most often. False if it was not done (the raw
    /// op said otherwise, or the validator refused).
    pub(super) fn add_racers(&mut self, r: &RawOp, p: ProcId, map: MapId, page: u16) -> bool {
        if !r.d.is_multiple_of(3) {
            return false;
        }
        let Some(thread) = self.v.threads().fresh() else {
            return false;
        };
        let who = if r.c.is_multiple_of(2) {
            p
        } else {
            self.live[r.who as usize % self.live.len()]
        };
        let (map, page) = match self.pick_map(who, r.what) {
            Some(m) if r.b % 4 == 3 => (m, r.a % self.sizes[m.0 as usize]),
            _ => (map, page),
        };
        self.push(Op::Race {
            proc: who,
            thread,
            kind: RaceKind::Read,
            map,
            page,
        })
    }
}

//! The threads family's newer race kinds (docs/SEMANTICS.md T10...): which kind a new race
//! is, and a reader joining a storing thread, on its page most often, in its process or in
//! another live one (a relative whose page is a copy, or a shared object's other mapper).
//! Called from `threads.rs`; everything the validator refuses is dropped.

use super::{Builder, RawOp};
use crate::program::{MapId, Op, ProcId, RaceKind};

impl Builder {
    /// The kind of a new race: `write` most often, then `dontneed`, `poke`, `read`, `protect`,
    /// `unmap`, `remap` and `vmsplice` (T1, T7, T8, T10-T14). In dialect 3, `remap` takes half
    /// of `unmap`'s share and `vmsplice` half of `read`'s, by a bit of `d` no kind looked at
    /// before (every byte value was already a valid kind, so dialect 2 keeps its kinds).
    ///
    /// In dialect 4, a bit of `d` no kind looked at before (16) draws the kinds after those
    /// (T15-T17): `fault` in place of `write` for one of its three values, `free` in place of
    /// `dontneed`, `pageout` in place of `protect` (where the kernel has MADV_PAGEOUT).
    pub(super) fn race_kind(&self, r: &RawOp) -> RaceKind {
        let later = self.dialect >= 3 && r.d & 8 != 0;
        let newest = self.dialect >= 4 && r.d & 16 != 0;
        let pageout = newest && self.config.features.cold_pageout;
        match r.d % 8 {
            0 if newest => RaceKind::Fault,
            3 if newest => RaceKind::Free,
            6 if pageout => RaceKind::PageOut,
            0..=2 => RaceKind::Write,
            3 => RaceKind::DontNeed,
            4 => RaceKind::Poke,
            5 if later => RaceKind::Vmsplice,
            5 => RaceKind::Read,
            6 => RaceKind::Protect,
            _ if later => RaceKind::Remap,
            _ => RaceKind::Unmap,
        }
    }

    /// The advice thread that joins a storing one in its process: `dontneed` (T9), or in
    /// dialect 4, when a bit of `d` no pair looked at before (16) says so, `free` or `pageout`
    /// by the next bit (32) (T15, T16).
    pub(super) fn pair_advice(&self, r: &RawOp) -> RaceKind {
        if self.dialect < 4 || r.d & 16 == 0 {
            RaceKind::DontNeed
        } else if r.d & 32 != 0 {
            RaceKind::Free
        } else if self.config.features.cold_pageout {
            RaceKind::PageOut
        } else {
            RaceKind::DontNeed
        }
    }

    /// Beside a storing thread of `p` on `page` of `map`: a reader joins it (T10), or a
    /// vmsplice thread (T14, dialect 3) one time in two, in `p` or in another live process, on that page
    /// most often. False if it was not done (the raw
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
        let kind = if self.dialect >= 3 && r.c & 2 != 0 {
            RaceKind::Vmsplice
        } else {
            RaceKind::Read
        };
        self.push(Op::Race {
            proc: who,
            thread,
            kind,
            map,
            page,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::program::ThreadRules;
    use crate::program::{MapId, Op, Pattern, ProcId, RaceKind, Span, ThreadId};

    fn race(proc: u8, thread: u8, kind: RaceKind) -> Op {
        Op::Race {
            proc: ProcId(proc),
            thread: ThreadId(thread),
            kind,
            map: MapId(0),
            page: 0,
        }
    }

    fn read(proc: u8) -> Op {
        Op::Read {
            proc: ProcId(proc),
            map: MapId(0),
            span: Span::Pages(crate::program::PageRange { start: 1, end: 2 }),
        }
    }

    /// T14: a vmsplice thread joins a storing thread as a reader does, and its process stores
    /// nothing meanwhile; a child's stores go on.
    #[test]
    fn a_splicer_joins_a_storer() {
        let mut r = ThreadRules::default();
        r.admit(&race(0, 0, RaceKind::Write)).expect("the writer");
        r.admit(&race(0, 1, RaceKind::Vmsplice)).expect("beside it");
        assert!(r.admit(&race(0, 2, RaceKind::Read)).is_err(), "a third");
        let mut r = ThreadRules::default();
        r.admit(&race(0, 0, RaceKind::Vmsplice)).expect("alone");
        assert!(r.admit(&race(0, 1, RaceKind::Write)).is_err());
        let write = |proc: u8| Op::Write {
            proc: ProcId(proc),
            map: MapId(0),
            span: Span::Bytes {
                page: 0,
                start: 0,
                end: 100,
            },
            pattern: Pattern::Fill(1),
        };
        assert!(r.admit(&write(0)).is_err(), "the splicing process");
        r.admit(&write(1)).expect("a child writes its copy");
        r.admit(&read(0)).expect("a load");
    }

    /// T10: a reader joins a storing thread, in its process or another; never the other way
    /// round, and never beside a dontneed or layout thread.
    #[test]
    fn a_reader_joins_a_storer() {
        let mut r = ThreadRules::default();
        r.admit(&race(0, 0, RaceKind::Write)).expect("the writer");
        r.admit(&race(1, 1, RaceKind::Read))
            .expect("a reader in another process");
        let mut r = ThreadRules::default();
        r.admit(&race(0, 0, RaceKind::Read)).expect("a lone reader");
        assert!(r.admit(&race(0, 1, RaceKind::Write)).is_err());
        for first in [
            RaceKind::DontNeed,
            RaceKind::Protect,
            RaceKind::Unmap,
            RaceKind::Remap,
        ] {
            let mut r = ThreadRules::default();
            r.admit(&race(0, 0, first)).expect("alone");
            assert!(r.admit(&race(0, 1, RaceKind::Read)).is_err(), "{first:?}");
            assert!(r.admit(&race(0, 1, RaceKind::Write)).is_err() || first == RaceKind::DontNeed);
        }
    }

    /// T11, T12: a protect thread's process stores nothing; an unmap thread's loads and maps
    /// nothing either; other processes go on.
    #[test]
    fn layout_threads_hold_their_process_back() {
        let write = |proc: u8| Op::Write {
            proc: ProcId(proc),
            map: MapId(0),
            span: Span::Bytes {
                page: 1,
                start: 0,
                end: 8,
            },
            pattern: Pattern::Fill(1),
        };
        let mut r = ThreadRules::default();
        r.admit(&race(0, 0, RaceKind::Protect)).expect("protect");
        assert!(r.admit(&write(0)).is_err());
        r.admit(&read(0)).expect("a load under a protect thread");
        let free = Op::Free {
            proc: ProcId(0),
            map: MapId(1),
        };
        assert!(r.admit(&free).is_err(), "the allocator reads the layout");
        r.admit(&write(1)).expect("another process");
        let mut r = ThreadRules::default();
        r.admit(&race(0, 0, RaceKind::Unmap)).expect("unmap");
        assert!(r.admit(&write(0)).is_err());
        assert!(r.admit(&read(0)).is_err());
        r.admit(&read(1)).expect("another process loads");
        r.admit(&Op::Stop {
            proc: ProcId(0),
            thread: ThreadId(0),
        })
        .expect("stop");
        r.admit(&read(0)).expect("after the stop");
        // T13: a remap thread's process loads nothing either (its page and the spare come and
        // go).
        let mut r = ThreadRules::default();
        r.admit(&race(0, 0, RaceKind::Remap)).expect("remap");
        assert!(r.admit(&write(0)).is_err());
        assert!(r.admit(&read(0)).is_err());
        r.admit(&read(1)).expect("another process loads");
    }
}

//! The threads family's decoder (docs/SEMANTICS.md part 13): racing threads, and forks put
//! inside their racing windows. A raw op either starts a race in its process (on a page of a
//! mapping it holds), or, where a thread already races, forks the racing process (most
//! often: that is the window the T rules are about), reads the raced page, stops a thread, or
//! starts the other half of a pair beside it (a `dontneed` thread beside a storing one, on the
//! same page most often: Dirty COW's pair, T7; or a `pageout` one, T16), or a reader joining a
//! storing one (T10). A race's kind is `write` most often, else `dontneed`, `poke`, `read`,
//! `protect`, `unmap`, `remap`, `vmsplice`, `free`, `pageout` or `fault` (`racers.rs`).
//! Some raw ops vfork a child that writes to a mapping of its parent and exits (T5).
//! Everything the validator refuses (`ThreadRules`) is dropped, as for every other op.

use super::{Builder, RawOp};
use crate::program::{MapId, Op, Pattern, ProcId, RaceKind, Span, caps};

impl Builder {
    pub(super) fn add_threads(&mut self, r: &RawOp) {
        // Op threads (`thread_ops.rs`, T20).
        if self.add_thread_ops(r) {
            return;
        }
        let racing: Vec<ProcId> = self
            .live
            .iter()
            .copied()
            .filter(|p| self.v.threads().running_in(*p).is_some())
            .collect();
        if let Some(&p) = racing.get(r.who as usize % racing.len().max(1)) {
            let races = self.v.threads().races_in(p);
            let (thread, kind, map, page) = races[r.a as usize % races.len()];
            match r.verb % 8 {
                // Fork inside the racing window.
                0..=3 => {
                    self.fork_of(p);
                    return;
                }
                4 => {
                    // The racing process (or its newest child) reads what it can see.
                    if let Some(m) = self.pick_map(p, r.what) {
                        let span = self.span(m, r);
                        self.push(Op::Read {
                            proc: p,
                            map: m,
                            span,
                        });
                    }
                    return;
                }
                5 | 6 => {
                    self.push(Op::Stop { proc: p, thread });
                    return;
                }
                // The other half of a pair (T7), on the same page most often; else another race
                // elsewhere, below.
                _ => {
                    // A reader joining a storing thread (`racers.rs`, T10).
                    if kind.stores() && self.add_racers(r, p, map, page) {
                        return;
                    }
                    let other = if kind.stores() {
                        // In dialect 4, a pageout thread one time in two (T16).
                        self.pair_advice(r)
                    } else if r.d.is_multiple_of(2) {
                        RaceKind::Poke
                    } else {
                        RaceKind::Write
                    };
                    let (map, page) = match self.pick_map(p, r.what) {
                        Some(m) if r.b % 4 == 3 => (m, r.a % self.sizes[m.0 as usize]),
                        _ => (map, page),
                    };
                    if self.race_of(p, other, map, page) {
                        return;
                    }
                }
            }
        }
        // One raw op in four starts a race; of the others, one in four vforks a child that
        // writes (T5), and the rest are classic ops (a race holds back much of what they may
        // do while it runs).
        if !r.c.is_multiple_of(4) {
            if r.verb % 4 == 3 && self.vfork_of(r) {
                return;
            }
            if r.verb % 16 == 2 && self.add_clone_vm(r) {
                return;
            }
            self.add(r);
            return;
        }
        let p = self.pick_proc(r.who);
        let Some(m) = self.pick_map(p, r.what) else {
            self.add(r);
            return;
        };
        let Some(thread) = self.v.threads().fresh() else {
            self.add(r);
            return;
        };
        let kind = self.race_kind(r);
        // A remap race's spare page, the next one, lies in the handle too (T13).
        let pages = self.sizes[m.0 as usize];
        let page = r.a % pages.saturating_sub(kind.pages() - 1).max(1);
        if !self.push(Op::Race {
            proc: p,
            thread,
            kind,
            map: m,
            page,
        }) {
            // Refused (a race already runs there, or the mapping is raced): a read instead.
            let span = Span::Pages(self.range(m, r.a, r.b));
            self.push(Op::Read {
                proc: p,
                map: m,
                span,
            });
        }
    }

    /// `p` starts a `kind` race on `page` of `map` with a fresh thread; false if refused.
    fn race_of(&mut self, p: ProcId, kind: RaceKind, map: MapId, page: u16) -> bool {
        let Some(thread) = self.v.threads().fresh() else {
            return false;
        };
        self.push(Op::Race {
            proc: p,
            thread,
            kind,
            map,
            page,
        })
    }

    /// A process vforks a child that writes to one of its mappings (docs/SEMANTICS.md T5);
    /// false if there is none, or the validator refuses it.
    fn vfork_of(&mut self, r: &RawOp) -> bool {
        let p = self.pick_proc(r.who);
        let Some(m) = self.pick_map(p, r.what) else {
            return false;
        };
        let span = self.span(m, r);
        let pattern = if r.d.is_multiple_of(2) {
            Pattern::Fill(r.c | 1)
        } else {
            Pattern::Ramp(r.c)
        };
        self.push(Op::Vfork {
            proc: p,
            map: m,
            span,
            pattern,
        })
    }

    /// `p` forks, if the caps allow.
    fn fork_of(&mut self, p: ProcId) {
        if self.live.len() >= caps::MAX_LIVE || self.next_proc as usize >= caps::MAX_PROCS {
            return;
        }
        let child = ProcId(self.next_proc);
        if self.push(Op::Fork { proc: p, child }) {
            self.next_proc += 1;
            self.live.push(child);
            self.holds[child.0 as usize] = self.holds[p.0 as usize];
        }
    }
}

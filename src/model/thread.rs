//! Racing threads (docs/SEMANTICS.md part T): a thread stores an increasing counter into the
//! last 8 bytes of one page while its process goes on. The model cannot know the interleaving,
//! so it predicts what must hold whatever it was, and learns the rest from the observation:
//! - while the thread runs, the page it writes (and, for a shared object, every mapper's view of
//!   that page) holds some counter: snapshots and reads of it are taken as observed (T1);
//! - a `fork` of the racing process reports the thread's counter just before (`before`) and
//!   just after (`after`) fork returned; the child's copy of a private raced page holds one
//!   value in `before..=after + 1` (the thread publishes each value after storing it, so it may
//!   be one store ahead of what the parent read), learnt from the child's first view, and from
//!   then on is an ordinary page: it never changes unless the child writes it, and nothing the
//!   child writes reaches the parent (T2); a shared raced page is the same object on both sides
//!   (B5) and stays racing for both (T3);
//! - `stop` reports the thread's rounds, at least every `after` reported before; the page then
//!   holds that value in its last word and everything else as before the race, in every process
//!   that sees that frame (T1, T3);
//! - a process that exits or dies ends its thread (T4): a private raced page dies with it; a
//!   shared one keeps the last value stored, which no observation can bound, so it is learnt
//!   from what is seen (as while racing) from then on.
//! - a `dontneed` thread (T7) zaps its page again and again: the page reads as after one
//!   MADV_DONTNEED (zero if private, the object's if shared), which is what the model holds,
//!   so alone it races nothing. A `poke` thread (T8) stores as a `write` one does, through
//!   /proc/self/mem: a forced write breaks copy-on-write for its own process only, and a shared
//!   page it may not write refuses it (EIO, the race's outcome). The pair on one private page
//!   (Dirty COW's, T9): the page holds zeros with the counter or without it; a fork's child
//!   copy may be all zero too, learnt like a counter; once the storing thread has stopped, the
//!   page holds its last value or zeros, learnt from each view until the zapping one stops,
//!   whose last round (it starts after `stop` was asked) leaves zeros.
//! - `read` threads (T10) live in `racers.rs`, `protect`, `unmap` and `remap` threads (T11-T13) in
//!   `race_layout.rs`; this file calls them from `race`, `stop`, `fork_racing`,
//!   `settle_racing` and `racers_end`.

use super::Model;
use super::frame::FrameId;
use crate::program::outcome::{Outcome, PROT_W, ProcView, Snapshot, UNREADABLE, last_word_digests};
use crate::program::{Advice, PageRange, ProcId, RACE_WORD, RaceKind, Span, ThreadId, Via};

/// Who decides the last word of a page, for a reader that cannot learn as the model does (the
/// C reproducer): a running thread (any value, T1, T9), or a fork's copy whose counter is not
/// seen yet (one in the fork's `before..=after + 1`, or 0 where `zero`, T2, T9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaceWord {
    Free,
    Pending { zero: bool },
}

#[derive(Clone, Debug)]
pub(super) struct Racer {
    pub(super) proc: ProcId,
    thread: ThreadId,
    pub(super) kind: RaceKind,
    pub(super) vpn: u64,
    /// The least value the counter can hold now (1 once started; each fork's `after`).
    pub(super) floor: u64,
    /// A storing thread whose page a dontneed thread zapped: until it stops, the page may be
    /// all zero (its next store not done yet), however long ago the zapping stopped (T9).
    pub(super) zapped: bool,
    /// A storing thread whose page a free thread freed: its other bytes may be zero from then
    /// on (reclaimed, T15).
    pub(super) freed: bool,
}

/// A child's copy of a raced private page whose counter is not learnt yet.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pending {
    pub(super) proc: ProcId,
    pub(super) vpn: u64,
    /// The child's own copy: if the page shows another frame by the time it is seen (it was
    /// written, unmapped or replaced), nothing is pending any more.
    pub(super) frame: FrameId,
    pub(super) lo: u64,
    pub(super) hi: u64,
    /// A dontneed thread zapped the parent's page too (T9): the copy may be all zero.
    pub(super) zero: bool,
    /// A free thread freed the parent's page (T15): the copy's other bytes may be zero.
    pub(super) freed: bool,
}

/// The model's racing threads and what it learns of their pages.
#[derive(Clone, Debug, Default)]
pub(super) struct Racers {
    pub(super) running: Vec<Racer>,
    pub(super) pending: Vec<Pending>,
    /// Shared frames whose writer died racing: their last word is learnt, never predicted.
    pub(super) wild: Vec<FrameId>,
    /// Pages of racing frames seen in the last observed snapshot: (proc, vpn, digest).
    seen: Vec<(ProcId, u64, u64)>,
    /// Both frames of every private raced page that a fork split in the model: the kernel
    /// splits it only at the thread's next store after the fork, which may come after the
    /// next view or never, so which physical page backs either side is open (I9).
    forked: Vec<FrameId>,
    /// The running `read` and `protect` threads (`racers.rs`, `race_layout.rs`; T10, T11).
    pub(super) readers: Vec<super::racers::Reader>,
    /// Pages a fork's child copied from a page a `protect` or `unmap` thread was changing:
    /// one of its two states, learnt from the child's first view (T11, T12).
    pub(super) open_prots: Vec<(ProcId, u64, RaceKind)>,
    /// The running `vmsplice` threads, and whether their page's other bytes may change
    /// (`race_splice.rs`, T14).
    pub(super) spliced: Vec<(ProcId, ThreadId, bool)>,
}

impl Model {
    /// Who decides the last word of `proc`'s page at `addr`, if a racing thread does (T1, T2,
    /// T9); `None`: the model predicts the page exactly.
    pub fn race_word(&self, proc: ProcId, addr: u64) -> Option<RaceWord> {
        let vpn = self.vpn(addr);
        if let Some(p) =
            self.threads.pending.iter().find(|p| {
                p.proc == proc && p.vpn == vpn && self.frame_at(proc, vpn) == Some(p.frame)
            })
        {
            return Some(RaceWord::Pending { zero: p.zero });
        }
        let frames = self.racing_frames();
        (self.racing_page(proc, vpn, &frames) || self.zapped(proc, vpn)).then_some(RaceWord::Free)
    }

    /// Whether processes `a` and `b` see one frame at `addr` (a shared page, T3).
    pub fn same_frame(&self, a: ProcId, b: ProcId, addr: u64) -> bool {
        let vpn = self.vpn(addr);
        self.frame_at(a, vpn)
            .is_some_and(|f| f != FrameId::ZERO && self.frame_at(b, vpn) == Some(f))
    }

    /// The running threads that store a counter: process, thread and page address.
    pub fn storers(&self) -> Vec<(ProcId, ThreadId, u64)> {
        self.threads
            .running
            .iter()
            .filter(|r| r.kind.stores())
            .map(|r| (r.proc, r.thread, r.vpn * self.page_size))
            .collect()
    }

    /// The frames whose last word a running (or dead) thread decides.
    pub(super) fn racing_frames(&self) -> Vec<FrameId> {
        let mut v: Vec<FrameId> = self
            .threads
            .running
            .iter()
            .filter(|r| r.kind.stores())
            .filter_map(|r| self.frame_at(r.proc, r.vpn))
            .collect();
        v.extend(self.threads.wild.iter().copied());
        v
    }

    /// The frames whose physical page the interleaving decides (I9): the running and dead
    /// racers' frames, the pending copies, and both sides of every raced page a fork split.
    pub(super) fn racing_open_frames(&self) -> Vec<FrameId> {
        let mut v = self.racing_frames();
        v.extend(self.zapped_frames());
        v.extend(self.threads.pending.iter().map(|p| p.frame));
        v.extend(self.threads.forked.iter().copied());
        v
    }

    /// The frames a dontneed thread zaps, or zapped while their storing thread still runs:
    /// present or not, and so mapped by one page table more or less, as the interleaving goes
    /// (T7). After the dontneed thread stops, the page stays unmapped until the storer's next
    /// store faults it in again, which a view may come before (found by `run --cases 20000
    /// --seed 1`: a child's entry of a shared page read exclusive while its parent's storer had
    /// not yet refaulted the page the stopped dontneed thread zapped last).
    pub(super) fn zapped_frames(&self) -> Vec<FrameId> {
        (self.threads.running.iter())
            .filter(|r| !r.kind.stores() || r.zapped)
            .filter_map(|r| self.frame_at(r.proc, r.vpn))
            .filter(|&f| f != FrameId::ZERO)
            .collect()
    }

    /// Whether a dontneed thread of `proc` zaps its page `vpn`, or zapped it while a storing
    /// thread of `proc` still runs there (T7).
    pub(super) fn zapping(&self, proc: ProcId, vpn: u64) -> bool {
        (self.threads.running.iter())
            .any(|r| r.proc == proc && r.vpn == vpn && (!r.kind.stores() || r.zapped))
    }

    /// Whether page `vpn` of `proc` shows a racing frame.
    pub(super) fn racing_page(&self, proc: ProcId, vpn: u64, frames: &[FrameId]) -> bool {
        self.frame_at(proc, vpn)
            .is_some_and(|f| f != FrameId::ZERO && frames.contains(&f))
    }

    /// Stores `value` into the last word of page `vpn` of `proc` (already checked writable),
    /// breaking copy-on-write first as any store does.
    fn store_word(&mut self, proc: ProcId, vpn: u64, page: u16, value: u64) {
        let ps = self.page_size as usize;
        let word = Span::Bytes {
            page,
            start: (ps - RACE_WORD) as u16,
            end: ps as u16,
        };
        // The ordinary store path (copy-on-write, lazily freed pages), then the word itself.
        self.store(proc, vpn, page, word, crate::program::Pattern::Fill(0));
        let f = self.frame_at(proc, vpn).expect("just stored");
        self.frames.bytes_mut(f)[ps - RACE_WORD..].copy_from_slice(&value.to_le_bytes());
    }

    /// `race`: the thread's first round is the op's: a store faults as a store would (T1), a
    /// forced write fails as a `poke` would (T8), advice fails as `madvise` would (T7); a
    /// thread whose first round failed has ended.
    pub(super) fn race(
        &mut self,
        proc: ProcId,
        thread: ThreadId,
        kind: RaceKind,
        base: u64,
        page: u16,
    ) -> Outcome {
        let vpn = self.vpn(base) + page as u64;
        match kind {
            RaceKind::Read => return self.race_read(proc, thread, vpn),
            RaceKind::Vmsplice => return self.race_vmsplice(proc, thread, vpn),
            RaceKind::Protect | RaceKind::Unmap | RaceKind::Remap => {
                return self.race_layout(proc, thread, kind, vpn);
            }
            RaceKind::Write => {
                if let Some(death) = self.fault(proc, vpn, PROT_W) {
                    return Outcome::Killed {
                        death,
                        digests: Vec::new(),
                    };
                }
                self.store_word(proc, vpn, page, 1);
            }
            RaceKind::Poke => {
                // [T8] the `poke` op's forced write, of the word.
                let ps = self.page_size as usize;
                let word = Span::Bytes {
                    page,
                    start: (ps - RACE_WORD) as u16,
                    end: ps as u16,
                };
                let page_base = self.vpn(base) * self.page_size;
                let done = self.poke(
                    proc,
                    page_base,
                    word,
                    crate::program::Pattern::Fill(0),
                    Via::Mem,
                );
                if done != Outcome::Done {
                    return done;
                }
                self.store_word(proc, vpn, page, 1);
            }
            RaceKind::DontNeed => {
                // [T7] one MADV_DONTNEED of the page; a storing thread there stores on (T9).
                let done = self.zap(proc, vpn);
                if done != Outcome::Done {
                    return done;
                }
            }
            RaceKind::Free | RaceKind::PageOut => {
                // [T15] [T16] one MADV_FREE or MADV_PAGEOUT of the page (`race_advice.rs`); a
                // storing thread there stores on, on old bytes or zeros (T15).
                let done = self.advise_raced(proc, vpn, kind);
                if done != Outcome::Done {
                    return done;
                }
                if kind == RaceKind::Free {
                    self.free_beside_storer(proc, vpn);
                }
            }
            RaceKind::Fault => {
                // [T17] load, store 1, zap: zeros with the counter, or zeros alone (`zapped`).
                if let Some(death) = self.fault_round(proc, vpn) {
                    return death;
                }
                self.store_word(proc, vpn, page, 1);
            }
        }
        if kind.stores() && self.freeing(proc, vpn) {
            self.store_beside_free(proc, vpn);
        }
        self.threads.running.push(Racer {
            proc,
            thread,
            kind,
            vpn,
            floor: 1,
            zapped: self.zapped(proc, vpn) || kind.zaps_itself() || self.freeing(proc, vpn),
            freed: kind.stores() && self.freeing(proc, vpn),
        });
        Outcome::Done
    }

    /// One MADV_DONTNEED of page `vpn` of `proc`; a thread of `proc` storing to that page
    /// stores on, so the page then holds its least counter on zeros (T9).
    fn zap(&mut self, proc: ProcId, vpn: u64) -> Outcome {
        let one = PageRange { start: 0, end: 1 };
        let done = self.madvise(proc, vpn * self.page_size, one, Advice::DontNeed, None);
        if done == Outcome::Done
            && let Some(r) = self.storer_at(proc, vpn)
        {
            self.store_word_at(proc, vpn, r.floor);
            for s in self.threads.running.iter_mut() {
                if s.proc == proc && s.vpn == vpn && s.kind.stores() {
                    s.zapped = true;
                }
            }
        }
        done
    }

    /// The running storing thread of `proc` on page `vpn`, if any.
    fn storer_at(&self, proc: ProcId, vpn: u64) -> Option<Racer> {
        self.threads
            .running
            .iter()
            .find(|r| r.proc == proc && r.vpn == vpn && r.kind.stores())
            .cloned()
    }

    /// Whether a dontneed thread of `proc` zaps page `vpn`, a private one.
    fn zapped(&self, proc: ProcId, vpn: u64) -> bool {
        self.threads
            .running
            .iter()
            .any(|r| r.proc == proc && r.vpn == vpn && r.kind == RaceKind::DontNeed)
            && matches!(
                self.space(proc).get(vpn).map(|p| p.backing),
                Some(super::space::PageBacking::Private(_))
            )
    }

    /// A zapped private page that no thread stores to any more but that held a counter when
    /// its storing thread stopped (T9): seen all zero, it is zero from then on; seen as the
    /// model holds it, nothing changes; seen otherwise, the prediction stands (and differs).
    fn learn_zapped(&mut self, proc: ProcId, vpn: u64, seen: u64) -> bool {
        if !self.zapped(proc, vpn) || self.storer_at(proc, vpn).is_some() {
            return false;
        }
        let zero = self.frames.digest(FrameId::ZERO);
        if seen == zero && self.frame_at(proc, vpn) != Some(FrameId::ZERO) {
            self.madvise(
                proc,
                vpn * self.page_size,
                PageRange { start: 0, end: 1 },
                Advice::DontNeed,
                None,
            );
            return true;
        }
        false
    }

    /// `stop`: at least every counter seen before (T1); the page then holds the last one.
    pub(super) fn stop(
        &mut self,
        proc: ProcId,
        thread: ThreadId,
        observed: Option<&Outcome>,
    ) -> Outcome {
        if let Some(watched) = self.stop_read(proc, thread, observed) {
            return self.stop_spliced(proc, thread, watched, observed);
        }
        let Some(i) = self
            .threads
            .running
            .iter()
            .position(|r| r.proc == proc && r.thread == thread)
        else {
            return Outcome::Stopped { rounds: 0 };
        };
        let r = self.threads.running.remove(i);
        let rounds = match observed {
            Some(Outcome::Stopped { rounds }) if *rounds >= r.floor => *rounds,
            _ => r.floor,
        };
        if r.kind.stores() {
            self.store_word_at(proc, r.vpn, rounds);
            if r.freed {
                // [T15] its last store on old bytes or zeros, freed again if the free thread runs.
                self.stored_on_freed(proc, r.vpn, rounds);
            }
        } else if r.kind == RaceKind::DontNeed {
            // [T7] the last round starts after the stop was asked: the page is zapped once more.
            self.zap(proc, r.vpn);
        } else {
            // [T15] [T16] and freed or paged out once more.
            self.advise_raced(proc, r.vpn, r.kind);
        }
        Outcome::Stopped { rounds }
    }

    /// As `store_word`, for a page named by its vpn alone (a span's page number only says
    /// where a pattern's offsets count from, and a fill has none).
    fn store_word_at(&mut self, proc: ProcId, vpn: u64, value: u64) {
        if self.space(proc).get(vpn).is_some() {
            self.store_word(proc, vpn, 0, value);
        }
    }

    /// After the model's own fork of `proc` into `child`: the child's copy of a private raced
    /// page becomes its own frame, its counter pending until the child's first view (T2).
    pub(super) fn fork_racing(
        &mut self,
        proc: ProcId,
        child: ProcId,
        forked: Outcome,
        observed: Option<&Outcome>,
    ) -> Outcome {
        if forked != Outcome::Done {
            return forked;
        }
        // A copy still pending in the parent is the same frame in the child, pending there too.
        let inherited: Vec<Pending> = self
            .threads
            .pending
            .iter()
            .filter(|p| p.proc == proc && self.pending_at(proc, p.vpn))
            .filter(|p| self.frame_at(child, p.vpn) == Some(p.frame))
            .map(|p| Pending { proc: child, ..*p })
            .collect();
        self.threads.pending.extend(inherited);
        self.inherit_open_prots(proc, child);
        // [T9] a zapped page whose storing thread stopped holds its last value or zeros, and so
        // does the child's copy of it: learnt like a counter, its own frame from now on.
        let settling: Vec<u64> = (self.threads.running.iter())
            .filter(|r| r.proc == proc && !r.kind.stores())
            .map(|r| r.vpn)
            .filter(|&vpn| self.zapped(proc, vpn) && self.storer_at(proc, vpn).is_none())
            .collect();
        for vpn in settling {
            self.split_for_child(proc, child, vpn, None);
        }
        // The storing thread's counter, else the dontneed one's (as the worker reports).
        let mine = |r: &Racer| r.proc == proc;
        let Some(i) = (self.threads.running.iter())
            .position(|r| mine(r) && r.kind.stores())
            .or_else(|| self.threads.running.iter().position(mine))
        else {
            // A reader alone: its rounds bound nothing (T10).
            return self.fork_reading(proc, child, forked, observed);
        };
        let floor = self.threads.running[i].floor;
        let vpn = self.threads.running[i].vpn;
        let (before, after) = match observed {
            Some(&Outcome::Forked { before, after }) if floor <= before && before <= after => {
                (before, after)
            }
            // Not even ordered: predict the least, which differs.
            _ => (floor, floor),
        };
        self.threads.running[i].floor = after;
        if !self.threads.running[i].kind.stores() {
            // A zapped page is as after MADV_DONTNEED on both sides (T7).
            return Outcome::Forked { before, after };
        }
        self.split_for_child(proc, child, vpn, Some((before, after.saturating_add(1))));
        Outcome::Forked { before, after }
    }

    /// The child's copy of page `vpn`, a private frame it shares with `proc` in the model,
    /// becomes its own frame, pending: its word one of `range` (T2), or (None) the word the
    /// frame holds; or zeros if a dontneed thread of `proc` zaps the page (T9).
    fn split_for_child(
        &mut self,
        proc: ProcId,
        child: ProcId,
        vpn: u64,
        range: Option<(u64, u64)>,
    ) {
        let zero = self.zapped(proc, vpn) || self.storer_at(proc, vpn).is_some_and(|r| r.zapped);
        let freed = self.storer_at(proc, vpn).is_some_and(|r| r.freed);
        let parent = self.frame_at(proc, vpn);
        let shares = matches!(
            self.space(child).get(vpn).map(|p| p.backing),
            Some(super::space::PageBacking::Private(f)) if Some(f) == parent
        );
        let Some(f) = parent.filter(|&f| shares && f != FrameId::ZERO) else {
            return;
        };
        let ps = self.page_size as usize;
        let (lo, hi) = range.unwrap_or_else(|| {
            let mut w = [0u8; RACE_WORD];
            w.copy_from_slice(&self.frames.bytes(f)[ps - RACE_WORD..]);
            let w = u64::from_le_bytes(w);
            (w, w)
        });
        let copy = self.frames.copy_of(f);
        self.frames.release(f);
        self.threads.forked.extend([f, copy]);
        let pte = self.space_mut(child).get_mut(vpn).expect("present");
        pte.backing = super::space::PageBacking::Private(copy);
        if freed {
            // [T15] the copy is lazily freed as the parent's page was: zero, one way, later.
            pte.flags |= super::space::flag::LAZY;
        }
        self.threads.pending.push(Pending {
            proc: child,
            vpn,
            frame: copy,
            lo,
            hi,
            zero,
            freed,
        });
    }

    /// A `read`'s predicted outcome with the digests of racing pages as observed: their bytes
    /// are the interleaving's (T1). A child's pending copy (T2) that no view could read (a
    /// write-only page) is learnt by a whole-page read, and taken as seen by a part-page one.
    /// Everything else (which page faults, the other digests) stays predicted.
    pub(super) fn racy_read(
        &mut self,
        proc: ProcId,
        base: u64,
        span: Span,
        mut predicted: Outcome,
        observed: Option<&Outcome>,
    ) -> Outcome {
        let frames = self.racing_frames();
        let zapping = self.threads.running.iter().any(|r| !r.kind.stores());
        if frames.is_empty() && self.threads.pending.is_empty() && !zapping {
            return predicted;
        }
        let seen = match observed {
            Some(Outcome::Read { digests }) | Some(Outcome::Killed { digests, .. }) => digests,
            _ => return predicted,
        };
        let vpn = self.vpn(base);
        let first = span.page_range().start;
        let whole = matches!(span, Span::Pages(_));
        if let Outcome::Read { digests } | Outcome::Killed { digests, .. } = &mut predicted {
            for (i, d) in digests.iter_mut().enumerate() {
                let page = vpn + first as u64 + i as u64;
                let Some(&o) = seen.get(i) else {
                    continue;
                };
                let pending = self.pending_at(proc, page);
                if whole && self.learn_zapped(proc, page, o) {
                    *d = o;
                } else if pending && whole {
                    self.learn_pending(proc, page, o);
                    *d = self
                        .frame_at(proc, page)
                        .map_or(*d, |f| self.frames.digest(f));
                } else if pending
                    || self.racing_page(proc, page, &frames)
                    || (!whole && self.zapped(proc, page) && self.storer_at(proc, page).is_none())
                {
                    // A part-page read of a zapped page (T9) is taken as seen too.
                    *d = o;
                }
            }
        }
        predicted
    }

    /// Whether page `vpn` of `proc` is a child's copy whose counter is still to learn.
    pub(super) fn pending_at(&self, proc: ProcId, vpn: u64) -> bool {
        self.threads
            .pending
            .iter()
            .any(|p| p.proc == proc && p.vpn == vpn && self.frame_at(proc, vpn) == Some(p.frame))
    }

    /// Learns a pending child's counter from the digest `seen` of its whole page: one in its
    /// range (T2), else the model holds the range's least, which differs (`hi + 1`, held before,
    /// let a copy showing exactly `after + 2` pass).
    fn learn_pending(&mut self, proc: ProcId, vpn: u64, seen: u64) {
        let Some(i) = self
            .threads
            .pending
            .iter()
            .position(|p| p.proc == proc && p.vpn == vpn)
        else {
            return;
        };
        let p = self.threads.pending.remove(i);
        let f = p.frame;
        if self.frame_at(p.proc, p.vpn) != Some(f) || f == FrameId::ZERO {
            return;
        }
        let ps = self.page_size as usize;
        let of = last_word_digests(self.frames.bytes(f));
        // [T9] a zapped page's copy may be all zero: word 0 on the zeros the copy holds.
        let value = (p.lo..=p.hi)
            .chain((p.zero && !p.freed).then_some(0))
            .find(|&c| of(c) == seen);
        // [T15] a freed page's copy may hold its counter on zeros (reclaimed before the store),
        // or zeros alone (reclaimed after it): its body is the old bytes, never under word 0.
        let on_zeros = (value.is_none() && p.freed)
            .then(|| {
                let of = last_word_digests(self.frames.bytes(FrameId::ZERO));
                (p.lo..=p.hi).chain([0]).find(|&c| of(c) == seen)
            })
            .flatten();
        if on_zeros.is_some() {
            self.frames.bytes_mut(f).fill(0);
        }
        let value = value.or(on_zeros).unwrap_or(p.lo);
        self.frames.bytes_mut(f)[ps - RACE_WORD..].copy_from_slice(&value.to_le_bytes());
    }

    /// `proc` ends (exit or death): its thread ends too (T4).
    pub(super) fn racers_end(&mut self, proc: ProcId) {
        let ended: Vec<Racer> = self
            .threads
            .running
            .iter()
            .filter(|r| r.proc == proc)
            .cloned()
            .collect();
        for r in ended.iter().filter(|r| r.kind.stores()) {
            if let Some(pte) = self.space(proc).get(r.vpn)
                && let super::space::PageBacking::Object { .. } = pte.backing
                && let Some(f) = self.frame_at(proc, r.vpn)
            {
                self.threads.wild.push(f);
            }
        }
        self.threads.running.retain(|r| r.proc != proc);
        self.threads.pending.retain(|p| p.proc != proc);
        self.threads.readers.retain(|r| r.proc != proc);
        self.threads.open_prots.retain(|p| p.0 != proc);
        self.spliced_end(proc);
    }

    /// Learns from an observed snapshot: a pending child's counter (one in its range, T2), and
    /// what racing frames showed (T1).
    pub(super) fn settle_racing(&mut self, observed: &Snapshot) {
        self.settle_flips(observed);
        self.threads.seen.clear();
        if self.threads.running.is_empty()
            && self.threads.pending.is_empty()
            && self.threads.wild.is_empty()
        {
            return;
        }
        let frames = self.racing_frames();
        for view in &observed.procs {
            for &(addr, d) in &view.pages {
                let vpn = self.vpn(addr);
                if d == UNREADABLE {
                    continue;
                }
                if self.pending_at(view.proc, vpn) {
                    self.learn_pending(view.proc, vpn, d);
                    continue;
                }
                self.learn_zapped(view.proc, vpn, d);
                if self.racing_page(view.proc, vpn, &frames) {
                    self.threads.seen.push((view.proc, vpn, d));
                }
            }
        }
    }

    /// A predicted view with racing pages as they were seen (T1).
    pub(super) fn racing_views(&self, views: &mut [ProcView]) {
        for &(proc, vpn, d) in &self.threads.seen {
            if let Some(v) = views.iter_mut().find(|v| v.proc == proc)
                && let Some(page) = v.pages.iter_mut().find(|(a, _)| *a == vpn * self.page_size)
            {
                page.1 = d;
            }
        }
    }
}

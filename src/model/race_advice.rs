//! Racing advice and faults (docs/SEMANTICS.md T15-T17): a `free` thread `madvise(MADV_FREE)`s
//! its page again and again, a `pageout` thread `madvise(MADV_PAGEOUT)`s it, and a `fault`
//! thread loads the page's last word, stores its round's number there and zaps the page with
//! MADV_DONTNEED, so that its next round faults a fresh page in. The model holds what one round
//! leaves, whatever the interleaving:
//! - a `free` round is one MADV_FREE (F2): a private page is lazily freed, its old bytes or
//!   zero until written (learnt, one way, as for the `advise free` op); a shared page refuses it
//!   (EINVAL, the race's outcome, and the thread has ended). Its process stores nothing
//!   meanwhile (`ThreadRules`): a store would be kept or freed again as the rounds go. A fork's
//!   child copies the lazily freed page as it is: old bytes or zero, learnt from its first view,
//!   zero from then on once seen zero (F2), its stores its own (B2). Beside a storing thread on
//!   its page (the pair of T9, MADV_FREE for MADV_DONTNEED) the page is the storer's, `freed`:
//!   its counter on old bytes or zeros, or zeros alone, and so a fork's copy (with a counter of
//!   the fork's range); at the storer's stop its last value on old bytes or zeros.
//! - a `pageout` round is one MADV_PAGEOUT (F7): no byte changes; whether the page stays mapped
//!   is the kernel's (a shared page's entry goes, measured), which the physical channel leaves
//!   open (I9, `zapped_frames`). It may race beside a storing thread (T16): the page is the
//!   storer's (T1, T2).
//! - a `fault` round is a store of the counter (a `write` thread's, T1) on a page zapped since
//!   the round before: a private page holds zeros with the counter, or zeros alone between a
//!   round's zap and the next store, which is the `zapped` storer of T9; a shared page keeps
//!   the object's bytes and the counter. A fork's child copies zeros with a counter of the
//!   fork's range, or zeros alone (T2, T9). Its last round stores and zaps no more: after
//!   `stop` the page holds the last counter on zeros (private) or on the object's bytes.
//!
//! Called from `thread.rs` (`race`, `stop`).

use super::Model;
use super::frame::FrameId;
use super::space::{Alts, PageBacking, flag};
use crate::program::outcome::{Death, Outcome, PROT_R, PROT_W};
use crate::program::{Advice, PageRange, ProcId, RACE_WORD, RaceKind};

impl Model {
    /// One round of a `free` or `pageout` thread on page `vpn` of `proc`: one madvise of the
    /// page, its outcome the round's (T15, T16).
    pub(super) fn advise_raced(&mut self, proc: ProcId, vpn: u64, kind: RaceKind) -> Outcome {
        let advice = match kind {
            RaceKind::Free => Advice::Free,
            RaceKind::PageOut => Advice::PageOut,
            _ => return Outcome::Done,
        };
        let one = PageRange { start: 0, end: 1 };
        self.madvise(proc, vpn * self.page_size, one, advice, None)
    }

    /// The first round of a `fault` thread (T17): its load and its store fault as a load and
    /// a store would (the process dies there); then the page is zapped (MADV_DONTNEED, F1),
    /// which the caller's store of the counter follows in the model. `Some` is the death.
    pub(super) fn fault_round(&mut self, proc: ProcId, vpn: u64) -> Option<Outcome> {
        let death: Option<Death> = self
            .fault(proc, vpn, PROT_R)
            .or_else(|| self.fault(proc, vpn, PROT_W));
        if let Some(death) = death {
            return Some(Outcome::Killed {
                death,
                digests: Vec::new(),
            });
        }
        let one = PageRange { start: 0, end: 1 };
        self.madvise(proc, vpn * self.page_size, one, Advice::DontNeed, None);
        None
    }
}

impl Model {
    /// Whether a free thread of `proc` frees its page `vpn` (T15).
    pub(super) fn freeing(&self, proc: ProcId, vpn: u64) -> bool {
        (self.threads.running.iter())
            .any(|r| r.proc == proc && r.vpn == vpn && r.kind == RaceKind::Free)
    }

    /// A free thread's first round on page `vpn` of `proc`, where a thread of `proc` stores
    /// (T15): the page is the storer's (T1), its other bytes old or zero from now on and the
    /// whole page zero between a reclaim and the next store, as T9's zapped storer's; so the
    /// page is not held lazily freed while the storer runs (a view of it all zero would make it
    /// the zero page, which the storer's next store is not), but the storer `freed`.
    pub(super) fn free_beside_storer(&mut self, proc: ProcId, vpn: u64) {
        let storing = (self.threads.running.iter())
            .any(|r| r.proc == proc && r.vpn == vpn && r.kind.stores());
        if !storing {
            return;
        }
        if let Some(p) = self.space_mut(proc).get_mut(vpn) {
            p.flags &= !flag::LAZY;
        }
        for r in self.threads.running.iter_mut() {
            if r.proc == proc && r.vpn == vpn && r.kind.stores() {
                r.zapped = true;
                r.freed = true;
            }
        }
    }

    /// A storing thread's first store on a page a free thread frees (T15): the page is the
    /// storer's, `freed`, and holds no alternative of its own (F2's, which the store made).
    pub(super) fn store_beside_free(&mut self, proc: ProcId, vpn: u64) {
        let Some(p) = self.space_mut(proc).get_mut(vpn) else {
            return;
        };
        let alts = std::mem::take(&mut p.alts);
        p.flags &= !flag::LAZY;
        for a in alts.iter() {
            self.frames.release(a);
        }
    }

    /// The `stop` of a storing thread whose page a free thread freed (T15): the page holds
    /// `rounds` on its old bytes (the model's frame) or on zeros, an alternative learnt from
    /// the next observation (F2's), and is lazily freed again while the free thread runs.
    pub(super) fn stored_on_freed(&mut self, proc: ProcId, vpn: u64, rounds: u64) {
        let Some(pte) = self.space(proc).get(vpn).copied() else {
            return;
        };
        if !matches!(pte.backing, PageBacking::Private(f) if f != FrameId::ZERO) {
            return;
        }
        for a in pte.alts.iter() {
            self.frames.release(a);
        }
        let ps = self.page_size as usize;
        let z = self.frames.copy_of(FrameId::ZERO);
        self.frames.bytes_mut(z)[ps - RACE_WORD..].copy_from_slice(&rounds.to_le_bytes());
        let mut alts = Alts::default();
        if !alts.push(z) {
            self.frames.release(z);
        }
        let freeing = self.freeing(proc, vpn);
        let p = self.space_mut(proc).get_mut(vpn).expect("present");
        p.alts = alts;
        if freeing {
            p.flags |= flag::LAZY;
        }
    }
}

#[cfg(test)]
#[path = "race_advice_tests.rs"]
mod tests;

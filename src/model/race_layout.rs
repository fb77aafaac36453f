//! Racing threads that change the layout of their process (docs/SEMANTICS.md T11): a
//! `protect` thread `mprotect`s one page read-only, then read-write, again and again, and its
//! last round (it starts after `stop` was asked) leaves the page read-write. The model holds
//! the race as the serial program `protect P read` (the `race` op's own first round) ... then
//! `protect P read-write` (the `stop`), and learns in between:
//! - while the thread runs, its process's page is read-only or read-write, learnt from each
//!   view of the process (/proc/self/maps lists the page's protection);
//! - a fork's child copies the page's VMA as it was at the fork: one of the two, learnt from
//!   its first view (a snapshot follows every fork), and fixed from then on (the child has no
//!   thread);
//! - the contents are never touched: the process stores nothing while the thread runs
//!   (`ThreadRules`), and mprotect keeps every page's bytes.
//!
//! A view that shows another protection (or none) for the page, or another process's layout
//! changed by the flips, differs.

use super::Model;
use super::racers::{Class, Reader};
use crate::program::outcome::{Outcome, PROT_R, PROT_W, Snapshot};
use crate::program::{PageRange, ProcId, Prot, ThreadId};

impl Model {
    /// `race tK protect`: the first round is the op's, `mprotect(P, PROT_READ)`: it fails as
    /// mprotect would (ENOMEM on a hole), and a thread whose first round failed has ended.
    pub(super) fn race_protect(&mut self, proc: ProcId, thread: ThreadId, vpn: u64) -> Outcome {
        let one = PageRange { start: 0, end: 1 };
        let done = self.mprotect(proc, vpn * self.page_size, one, Prot::Read);
        if done != Outcome::Done {
            return done;
        }
        self.threads.readers.push(Reader {
            proc,
            thread,
            vpn,
            class: Class::Flip,
        });
        Outcome::Done
    }

    /// `stop` of the `protect` thread at `i` in the list: its last round leaves the page
    /// read-write (T11); its rounds as observed (at least 1).
    pub(super) fn stop_flip(&mut self, i: usize, observed: Option<&Outcome>) -> Outcome {
        let r = self.threads.readers.remove(i);
        let one = PageRange { start: 0, end: 1 };
        self.mprotect(r.proc, r.vpn * self.page_size, one, Prot::ReadWrite);
        let rounds = match observed {
            Some(&Outcome::Stopped { rounds }) => rounds.max(1),
            _ => 1,
        };
        Outcome::Stopped { rounds }
    }

    /// A fork's child of a process with a page whose protection is still open has it open too
    /// (T11).
    pub(super) fn inherit_open_prots(&mut self, proc: ProcId, child: ProcId) {
        let open: Vec<(ProcId, u64)> = (self.threads.open_prots.iter())
            .filter(|p| p.0 == proc)
            .map(|p| (child, p.1))
            .collect();
        self.threads.open_prots.extend(open);
    }

    /// Whether `proc`'s page at `addr` has a protection the model has not learnt yet: a
    /// fork's copy of a page a `protect` thread was flipping, not viewed since (T11). A
    /// reproducer, which does not learn, cannot say whether a store there faults.
    pub fn open_prot(&self, proc: ProcId, addr: u64) -> bool {
        let vpn = self.vpn(addr);
        self.threads.open_prots.contains(&(proc, vpn))
    }

    /// Learns from an observed snapshot the protection of every page a `protect` thread flips,
    /// and of every fork child's copy of one not seen yet: read-only or read-write as the view
    /// lists it; anything else stays predicted (and differs).
    pub(super) fn settle_flips(&mut self, observed: &Snapshot) {
        let mut pages: Vec<(ProcId, u64)> = (self.threads.readers.iter())
            .filter(|r| r.class == Class::Flip)
            .map(|r| (r.proc, r.vpn))
            .collect();
        pages.extend(self.threads.open_prots.iter().copied());
        for (proc, vpn) in pages {
            let Some(view) = observed.procs.iter().find(|v| v.proc == proc) else {
                continue;
            };
            let addr = vpn * self.page_size;
            let Some(region) = (view.regions.iter()).find(|r| r.start <= addr && addr < r.end)
            else {
                continue;
            };
            let prot = match region.prot {
                PROT_R => Prot::Read,
                p if p == PROT_R | PROT_W => Prot::ReadWrite,
                _ => continue,
            };
            self.threads.open_prots.retain(|&p| p != (proc, vpn));
            let now = self.space(proc).get(vpn).map(|p| p.prot);
            if now.is_some() && now != Some(region.prot) {
                let one = PageRange { start: 0, end: 1 };
                self.mprotect(proc, addr, one, prot);
            }
        }
    }
}

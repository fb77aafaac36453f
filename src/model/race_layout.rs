//! Racing threads that change the layout of their process (docs/SEMANTICS.md T11, T12). The
//! model holds each race as a serial program, the `race` op being the first round and the
//! `stop` the last, and learns the state in between from the views:
//! - a `protect` thread `mprotect`s one page read-only, then read-write, again and again, the
//!   last round read-write: `protect P read` ... `protect P read-write` (T11);
//! - an `unmap` thread `munmap`s one page, then maps a fresh private anonymous read-write page
//!   there (`MAP_FIXED`), again and again, the last round mapping it: `unmap P` ... a fresh
//!   zero page at P (T12);
//! - a `remap` thread moves one page to the next page's address (its spare, in the same
//!   handle) and back (`mremap(MREMAP_MAYMOVE | MREMAP_FIXED)`), again and again, the last
//!   round leaving it at home: `remap P to P+1` ... `remap P+1 to P` (T13). The page keeps
//!   its frame (its contents) wherever it is; the other address is a hole.
//!
//! While the thread runs, its process's page is in one of the kind's two states, learnt from
//! each view of the process (/proc/self/maps lists the page's protection, or no page); a
//! fork's child copies the page as the fork found it, one of the two, learnt from its first
//! view (a snapshot follows every fork) and fixed from then on (the child has no thread). The
//! bytes never change but as the state says: the process stores nothing while the thread runs
//! (`ThreadRules`), mprotect keeps every page's bytes, and a page mapped again is a fresh zero
//! page that no one touches. A view that shows another state, or another process's layout
//! changed, differs.

use super::Model;
use super::frame::FrameId;
use super::racers::{Class, Reader};
use super::space::{Alts, PageBacking, Pte};
use crate::program::outcome::{Outcome, PROT_R, PROT_W, Snapshot};
use crate::program::{MapKind, PageRange, ProcId, Prot, RaceKind, ThreadId};

impl Model {
    /// `race tK protect` or `race tK unmap`: the first round is the op's, `mprotect(P,
    /// PROT_READ)` (which fails as mprotect would: ENOMEM on a hole; the thread has then
    /// ended) or `munmap(P)` (which never fails on an aligned page).
    pub(super) fn race_layout(
        &mut self,
        proc: ProcId,
        thread: ThreadId,
        kind: RaceKind,
        vpn: u64,
    ) -> Outcome {
        if kind == RaceKind::Protect {
            let one = PageRange { start: 0, end: 1 };
            let done = self.mprotect(proc, vpn * self.page_size, one, Prot::Read);
            if done != Outcome::Done {
                return done;
            }
        } else if kind == RaceKind::Remap {
            // T13: the first round moves the page to its spare (EFAULT on a hole).
            if let Err(errno) = self.move_page(proc, vpn, vpn + 1) {
                return Outcome::Failed { errno };
            }
        } else {
            self.do_munmap(proc, vpn, 1);
        }
        self.threads.readers.push(Reader {
            proc,
            thread,
            vpn,
            class: Class::Layout(kind),
        });
        Outcome::Done
    }

    /// `stop` of the layout thread at `i` in the list: its last round leaves the page
    /// read-write (T11) or mapped afresh (T12); its rounds as observed (at least 1).
    pub(super) fn stop_flip(&mut self, i: usize, observed: Option<&Outcome>) -> Outcome {
        let r = self.threads.readers.remove(i);
        match r.class {
            Class::Layout(RaceKind::Unmap) => self.fresh_page(r.proc, r.vpn),
            Class::Layout(RaceKind::Remap) => self.home(r.proc, r.vpn, true),
            _ => {
                let one = PageRange { start: 0, end: 1 };
                self.mprotect(r.proc, r.vpn * self.page_size, one, Prot::ReadWrite);
            }
        }
        let rounds = match observed {
            Some(&Outcome::Stopped { rounds }) => rounds.max(1),
            _ => 1,
        };
        Outcome::Stopped { rounds }
    }

    /// Page `vpn` of `proc` becomes a fresh private anonymous read-write zero page, a VMA of
    /// its own (as after `mmap(MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS)` of one page, A1).
    fn fresh_page(&mut self, proc: ProcId, vpn: u64) {
        self.do_munmap(proc, vpn, 1);
        let vma = self.new_vma();
        self.space_mut(proc).ptes.insert(
            vpn,
            Pte {
                kind: MapKind::Private,
                prot: PROT_R | PROT_W,
                backing: PageBacking::Private(FrameId::ZERO),
                flags: 0,
                alts: Alts::default(),
                vma,
                pgoff: Some(vpn),
                tlb: 0,
            },
        );
    }

    /// A `remap` thread's page of `proc` moved to its home `vpn` (`home`) or to its spare, the
    /// next page, if it is at the other one and its destination a hole (T13).
    fn home(&mut self, proc: ProcId, vpn: u64, home: bool) {
        let (from, to) = if home { (vpn + 1, vpn) } else { (vpn, vpn + 1) };
        let space = self.space(proc);
        if space.get(from).is_some() && space.get(to).is_none() {
            // Cannot fail: the source is mapped and one page long.
            let _ = self.move_page(proc, from, to);
        }
    }

    /// A fork's child of a process with a page whose state is still open has it open too
    /// (T11, T12).
    pub(super) fn inherit_open_prots(&mut self, proc: ProcId, child: ProcId) {
        let open: Vec<(ProcId, u64, RaceKind)> = (self.threads.open_prots.iter())
            .filter(|p| p.0 == proc)
            .map(|p| (child, p.1, p.2))
            .collect();
        self.threads.open_prots.extend(open);
    }

    /// Whether `proc`'s page at `addr` is in a state the model has not learnt yet, and of
    /// which kind: a fork's copy of a page a `protect` or `unmap` thread was changing, not
    /// viewed since; or, for `unmap`, the racing process's own page while its thread runs
    /// (T11, T12); for `remap`, the page and its spare, the racing process's or a fork's copy
    /// (T13). A reproducer, which does not learn, cannot say whether a store (protect) or any
    /// access (unmap, remap) there faults, nor whether the page is mapped (unmap, remap).
    pub fn open_layout(&self, proc: ProcId, addr: u64) -> Option<RaceKind> {
        let vpn = self.vpn(addr);
        let open = self
            .threads
            .open_prots
            .iter()
            .find(|p| (p.0, p.1) == (proc, vpn));
        let racing = (self.threads.readers.iter())
            .find(|r| (r.proc, r.vpn, &r.class) == (proc, vpn, &Class::Layout(RaceKind::Unmap)));
        // A remap thread's page and its spare, the next page (T13).
        let remap = |p: ProcId, v: u64| p == proc && (v == vpn || v + 1 == vpn);
        let moving = (self.threads.open_prots.iter())
            .any(|o| o.2 == RaceKind::Remap && remap(o.0, o.1))
            || (self.threads.readers.iter())
                .any(|r| r.class == Class::Layout(RaceKind::Remap) && remap(r.proc, r.vpn));
        if moving {
            return Some(RaceKind::Remap);
        }
        open.map(|p| p.2).or(racing.map(|_| RaceKind::Unmap))
    }

    /// Learns from an observed snapshot the state of every page a layout thread changes, and
    /// of every fork child's copy of one not seen yet: read-only or read-write (protect),
    /// mapped or not (unmap), as the view lists it; anything else stays predicted (and
    /// differs).
    pub(super) fn settle_flips(&mut self, observed: &Snapshot) {
        let mut pages: Vec<(ProcId, u64, RaceKind)> = (self.threads.readers.iter())
            .filter_map(|r| match r.class {
                Class::Layout(kind) => Some((r.proc, r.vpn, kind)),
                _ => None,
            })
            .collect();
        pages.extend(self.threads.open_prots.iter().copied());
        for (proc, vpn, kind) in pages {
            let Some(view) = observed.procs.iter().find(|v| v.proc == proc) else {
                continue;
            };
            let addr = vpn * self.page_size;
            let region = (view.regions.iter()).find(|r| r.start <= addr && addr < r.end);
            let now = self.space(proc).get(vpn).map(|p| p.prot);
            if kind == RaceKind::Remap {
                // T13: at home or at the spare, as the view lists them.
                self.threads
                    .open_prots
                    .retain(|p| (p.0, p.1) != (proc, vpn));
                let listed = |a: u64| (view.regions.iter()).any(|r| r.start <= a && a < r.end);
                match (listed(addr), listed(addr + self.page_size)) {
                    (true, false) => self.home(proc, vpn, true),
                    (false, true) => self.home(proc, vpn, false),
                    _ => {}
                }
                continue;
            }
            if kind == RaceKind::Unmap {
                self.threads
                    .open_prots
                    .retain(|p| (p.0, p.1) != (proc, vpn));
                match (region, now) {
                    (Some(r), None) if r.prot == PROT_R | PROT_W && !r.shared => {
                        self.fresh_page(proc, vpn)
                    }
                    (None, Some(_)) => self.do_munmap(proc, vpn, 1),
                    _ => {}
                }
                continue;
            }
            let Some(region) = region else {
                continue;
            };
            let prot = match region.prot {
                PROT_R => Prot::Read,
                p if p == PROT_R | PROT_W => Prot::ReadWrite,
                _ => continue,
            };
            self.threads
                .open_prots
                .retain(|p| (p.0, p.1) != (proc, vpn));
            if now.is_some() && now != Some(region.prot) {
                let one = PageRange { start: 0, end: 1 };
                self.mprotect(proc, addr, one, prot);
            }
        }
    }
}

#[cfg(test)]
#[path = "race_remap_tests.rs"]
mod remap_tests;

//! Racing readers (docs/SEMANTICS.md T10): a `read` thread loads the last word of one page
//! again and again until its process stops it, and the `stop` reports its rounds, the first
//! and the last value it loaded, and how many loads were smaller than the one before. What
//! the model predicts, whatever the interleaving:
//! - a page no thread stores to (nothing else may store to a raced word, `ThreadRules`): every
//!   load is the page's word, so first == last == the model's word and no load drops; a child's
//!   copy of a page its parent's thread was writing at the fork (T2) is such a page too, its
//!   word one of the fork's `before..=after + 1`, learnt from the first load;
//! - a page whose frame a racing `write` or `poke` thread stores to (in the reader's process,
//!   or another process's thread on a shared object): the loads never go down, the first is at
//!   least the counter the storer had published when the reader started (0 if a dontneed thread
//!   had zapped the page), and the last at most the storer's last value if it stopped first;
//! - a page whose contents the kernel chose among alternatives (mremap's, MADV_FREE's lazily
//!   freed page, `settle`): the first load is one of them, and the last is the first, or zero
//!   where a lazily freed page may be reclaimed meanwhile (one drop).
//!
//! A reader that sees a value its page may not hold (a relative's store leaking through a
//! private page, the Go/FreeBSD fork corruption and the 6.4 per-VMA-lock race show so) or a
//! counter going back differs.

use super::Model;
use super::frame::FrameId;
use super::space::flag;
use crate::program::outcome::{Outcome, PROT_R};
use crate::program::{ProcId, RACE_WORD, RaceKind, ThreadId};

/// What decides the word a reader loads, or what another kind of thread does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Class {
    /// Nothing stores to it: the model's word (or a pending copy's, learnt).
    Constant,
    /// A racing thread stores its counter there: at least `lo`, never going down.
    Counter { lo: u64 },
    /// One of these words (the page's alternatives), and 0 too where `lazy`.
    Open { words: Vec<u64>, lazy: bool },
    /// Not a reader: a thread that changes the page's layout, `protect` or `unmap`
    /// (`race_layout.rs`).
    Layout(RaceKind),
}

/// A running `read` thread, or a `protect` one (`Class::Flip`).
#[derive(Clone, Debug)]
pub(super) struct Reader {
    pub(super) proc: ProcId,
    pub(super) thread: ThreadId,
    pub(super) vpn: u64,
    pub(super) class: Class,
}

/// The last word of a frame's bytes.
fn word_of(bytes: &[u8]) -> u64 {
    let mut w = [0u8; RACE_WORD];
    w.copy_from_slice(&bytes[bytes.len() - RACE_WORD..]);
    u64::from_le_bytes(w)
}

impl Model {
    /// The last word of `proc`'s page `vpn`, as the model holds it.
    fn word_at(&self, proc: ProcId, vpn: u64) -> Option<u64> {
        let f = self.frame_at(proc, vpn)?;
        Some(word_of(self.frames.bytes(f)))
    }

    /// Whether `proc`'s page `vpn` shows a frame whose writer died racing (its word unknown).
    fn wild_at(&self, proc: ProcId, vpn: u64) -> bool {
        (self.threads.wild.iter()).any(|&f| self.frame_at(proc, vpn) == Some(f))
    }

    /// `race tK read`: the first load is the op's: a page that may not be read kills the
    /// process as a load would (T10). The thread then goes on loading.
    pub(super) fn race_read(&mut self, proc: ProcId, thread: ThreadId, vpn: u64) -> Outcome {
        if let Some(death) = self.fault(proc, vpn, PROT_R) {
            return Outcome::Killed {
                death,
                digests: Vec::new(),
            };
        }
        let frame = self.frame_at(proc, vpn);
        let storer = (self.threads.running.iter())
            .filter(|r| r.kind.stores())
            .find(|r| {
                frame.is_some_and(|f| f != FrameId::ZERO && self.frame_at(r.proc, r.vpn) == Some(f))
            })
            .map(|r| if r.zapped { 0 } else { r.floor });
        let pte = self.space(proc).get(vpn).cloned();
        let class = match (storer, pte) {
            (Some(lo), _) => Class::Counter { lo },
            (None, Some(pte)) if !pte.alts.is_empty() || pte.flags & flag::LAZY != 0 => {
                let mut words: Vec<u64> = pte
                    .alts
                    .iter()
                    .map(|a| word_of(self.frames.bytes(a)))
                    .collect();
                words.extend(self.word_at(proc, vpn));
                Class::Open {
                    words,
                    lazy: pte.flags & flag::LAZY != 0,
                }
            }
            _ => Class::Constant,
        };
        self.threads.readers.push(Reader {
            proc,
            thread,
            vpn,
            class,
        });
        Outcome::Done
    }

    /// `stop` of a `read` thread: what it must have seen (T10), learnt where the model leaves
    /// a choice; `None` if `thread` is no reader of `proc`.
    pub(super) fn stop_read(
        &mut self,
        proc: ProcId,
        thread: ThreadId,
        observed: Option<&Outcome>,
    ) -> Option<Outcome> {
        let i = (self.threads.readers.iter()).position(|r| r.proc == proc && r.thread == thread)?;
        if let Class::Layout(_) = self.threads.readers[i].class {
            return Some(self.stop_flip(i, observed));
        }
        let r = self.threads.readers.remove(i);
        let (rounds, first, last) = match observed {
            Some(&Outcome::Watched {
                rounds,
                first,
                last,
                ..
            }) => (rounds.max(1), first, last),
            _ => (1, 0, 0),
        };
        let word = self.word_at(proc, r.vpn).unwrap_or(0);
        let mut drops = 0;
        let seen = matches!(observed, Some(Outcome::Watched { .. }));
        let (first, last) = if self.pending_at(proc, r.vpn) {
            // A fork's copy of a page a thread was writing (T2): one value, learnt (a walk
            // without observations, the C reproducer's, leaves it pending).
            let w = if seen {
                self.learn_pending_word(proc, r.vpn, first)
            } else {
                word
            };
            (w, w)
        } else {
            match r.class {
                Class::Counter { lo } => {
                    // The storer still runs (or died): no upper bound; else its last value.
                    let frames = self.racing_frames();
                    let hi = if self.racing_page(proc, r.vpn, &frames) {
                        u64::MAX
                    } else {
                        word
                    };
                    if lo <= first && first <= last && last <= hi {
                        (first, last)
                    } else {
                        (lo, hi.min(lo.max(word)))
                    }
                }
                Class::Open { words, lazy } => {
                    let from = words.contains(&first) || (lazy && first == 0);
                    let to = last == first || (lazy && last == 0);
                    if from && to {
                        drops = u64::from(last < first);
                        (first, last)
                    } else {
                        (word, word)
                    }
                }
                Class::Constant if self.wild_at(proc, r.vpn) => (first, first),
                Class::Constant | Class::Layout(_) => (word, word),
            }
        };
        Some(Outcome::Watched {
            rounds,
            first,
            last,
            drops,
        })
    }

    /// A pending copy's word learnt from a reader's first load: one in the fork's range (T2),
    /// or 0 where the copy may be all zero (T9: then the page stays pending, its other bytes
    /// unseen); else the model holds the range's least, which differs.
    /// Returns the word the reader must have seen.
    fn learn_pending_word(&mut self, proc: ProcId, vpn: u64, seen: u64) -> u64 {
        let Some(i) = (self.threads.pending.iter()).position(|p| p.proc == proc && p.vpn == vpn)
        else {
            return self.word_at(proc, vpn).unwrap_or(0);
        };
        let p = self.threads.pending[i];
        if p.zero && seen == 0 && !(p.lo..=p.hi).contains(&0) {
            return 0;
        }
        self.threads.pending.remove(i);
        let f = p.frame;
        if self.frame_at(proc, vpn) != Some(f) || f == FrameId::ZERO {
            return self.word_at(proc, vpn).unwrap_or(0);
        }
        // Outside the range: the least of it, which differs from what was seen.
        let value = if (p.lo..=p.hi).contains(&seen) {
            seen
        } else {
            p.lo
        };
        let ps = self.page_size as usize;
        self.frames.bytes_mut(f)[ps - RACE_WORD..].copy_from_slice(&value.to_le_bytes());
        value
    }

    /// A fork of a process whose only racing thread reads or flips a protection: the thread's
    /// rounds before and after the fork, as observed if ordered (they bound nothing: the thread
    /// stores nothing, T10); the child's copy of a flipped page has one of the two
    /// protections (or it and a hole), learnt from its first view (T11, T12).
    pub(super) fn fork_reading(
        &mut self,
        proc: ProcId,
        child: ProcId,
        forked: Outcome,
        observed: Option<&Outcome>,
    ) -> Outcome {
        if forked != Outcome::Done || !self.threads.readers.iter().any(|r| r.proc == proc) {
            return forked;
        }
        let changed: Vec<(u64, RaceKind)> = (self.threads.readers.iter())
            .filter(|r| r.proc == proc)
            .filter_map(|r| match r.class {
                Class::Layout(kind) => Some((r.vpn, kind)),
                _ => None,
            })
            .collect();
        for (vpn, kind) in changed {
            self.threads.open_prots.push((child, vpn, kind));
        }
        match observed {
            Some(&Outcome::Forked { before, after }) if 1 <= before && before <= after => {
                Outcome::Forked { before, after }
            }
            _ => Outcome::Forked {
                before: 1,
                after: 1,
            },
        }
    }
}

/// How a C reproducer, which does not learn, checks what a reader saw (T10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// Every load is this word.
    Exact(u64),
    /// Every load is one word, which the model learns (a fork's copy, a dead writer's page).
    Constant,
    /// The loads never go down (a racing storer's counter).
    Counter,
    /// One of the page's alternatives; a lazily freed page may drop to zero once.
    Open,
    /// A `vmsplice` thread's page whose other bytes may change (a shared object's, T14): its
    /// drops are learnt, so nothing is checked.
    Unchecked,
}

impl Model {
    /// How `thread` of `proc`, a reader, is checked at its stop; `None` if it is no reader.
    pub fn watch_of(&self, proc: ProcId, thread: ThreadId) -> Option<Watch> {
        let r = (self.threads.readers.iter()).find(|r| r.proc == proc && r.thread == thread)?;
        if (self.threads.spliced.iter()).any(|s| (s.0, s.1, s.2) == (proc, thread, true)) {
            return Some(Watch::Unchecked);
        }
        if self.pending_at(proc, r.vpn) {
            return Some(Watch::Constant);
        }
        Some(match &r.class {
            Class::Counter { .. } => Watch::Counter,
            Class::Open { .. } => Watch::Open,
            Class::Layout(_) => return None,
            Class::Constant => match self.word_at(proc, r.vpn) {
                Some(w) if !self.wild_at(proc, r.vpn) => Watch::Exact(w),
                _ => Watch::Constant,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Model;
    use crate::program::outcome::Outcome;
    use crate::program::trace::parse_str;

    /// Steps `trace` with `watched` as the observation of its last op (a reader's stop), every
    /// other op as the model predicts it; the model's prediction for the stop.
    fn stop_seen(trace: &str, watched: Outcome) -> Outcome {
        let program = parse_str(trace).expect("parses");
        let mut model = Model::new(4096);
        let (last, head) = program.ops.split_last().expect("ops");
        for op in head {
            let seen = match op {
                crate::program::Op::Fork { .. } => {
                    let o = model.clone().step(op, None).expect("steps");
                    if let Outcome::Forked { .. } = o {
                        Outcome::Forked {
                            before: 10,
                            after: 20,
                        }
                    } else {
                        o
                    }
                }
                _ => model.clone().step(op, None).expect("steps"),
            };
            model.step(op, Some(&seen)).expect("steps");
        }
        model.step(last, Some(&watched)).expect("steps")
    }

    fn watched(first: u64, last: u64, drops: u64) -> Outcome {
        Outcome::Watched {
            rounds: 5,
            first,
            last,
            drops,
        }
    }

    const ALONE: &str = "cowcheck-trace 1\np0 map m0 private 1\np0 write m0 0 fill 0x01\n\
        p0 race t0 read m0 0\np0 stop t0\n";
    const CHILD: &str = "cowcheck-trace 1\np0 map m0 private 1\np0 race t0 write m0 0\n\
        p0 fork p1\np1 race t1 read m0 0\np1 stop t1\n";
    const BESIDE: &str = "cowcheck-trace 1\np0 map m0 private 1\np0 race t0 write m0 0\n\
        p0 race t1 read m0 0\np0 stop t1\n";

    /// T10: a page no one writes: every load is its word; anything else differs.
    #[test]
    fn a_lone_reader_sees_the_word() {
        let w = 0x0101_0101_0101_0101;
        assert_eq!(stop_seen(ALONE, watched(w, w, 0)), watched(w, w, 0));
        for bad in [watched(w, w + 1, 0), watched(0, 0, 0), watched(w, w, 1)] {
            assert_ne!(stop_seen(ALONE, bad.clone()), bad);
        }
    }

    /// T10 with T2: a child's copy holds one value of the fork's range, the same at every load.
    #[test]
    fn a_childs_reader_sees_one_value_of_the_fork() {
        assert_eq!(stop_seen(CHILD, watched(15, 15, 0)), watched(15, 15, 0));
        for bad in [watched(15, 16, 0), watched(22, 22, 0), watched(9, 9, 0)] {
            assert_ne!(stop_seen(CHILD, bad.clone()), bad);
        }
    }

    /// T10: beside a writer, loads never go down and start at the writer's published counter.
    #[test]
    fn a_reader_beside_a_writer_sees_a_rising_counter() {
        assert_eq!(stop_seen(BESIDE, watched(3, 900, 0)), watched(3, 900, 0));
        for bad in [watched(900, 3, 0), watched(3, 900, 1), watched(0, 900, 0)] {
            assert_ne!(stop_seen(BESIDE, bad.clone()), bad);
        }
    }
}

//! The program's pipe as the plan follows it: each spliced page, every content ever visible at
//! its address from the splice until it is read, and the views a `pipe-read` may therefore see
//! (docs/SEMANTICS.md K3 and the pipe rules of `model/pipe.rs`).

use crate::model::{Life, Model};
use crate::program::outcome::{Outcome, digest};
use crate::program::{Op, ProcId, caps};

use super::Walk;

/// A page in the program's pipe, as the plan follows it alongside the model: where it was
/// spliced from, and every page content that was ever visible at that address in any live
/// process from the splice until it is read (a superset of the model's allowed views, which the
/// model then filters, see `pipe_read_digests`).
pub(super) struct PipePage {
    addr: u64,
    seen: Vec<(u64, Vec<u8>)>,
}

impl PipePage {
    pub(super) fn note(&mut self, bytes: Vec<u8>) {
        let d = digest(&bytes);
        if !self.seen.iter().any(|(x, _)| *x == d) {
            self.seen.push((d, bytes));
        }
    }
}

impl Walk {
    /// Follows the program's pipe past `op`: a successful vmsplice adds a page, a pipe-read that
    /// read takes the oldest, and every content now visible at a spliced address is noted.
    pub(super) fn follow_pipe(&mut self, op: &Op, outcome: &Outcome) {
        let model = &self.model;
        match (op, outcome) {
            (Op::Vmsplice { proc, map, page }, Outcome::Done) => {
                let addr = model
                    .handle(*map)
                    .map_or(0, |h| h.base + *page as u64 * self.page_size as u64);
                let mut p = PipePage {
                    addr,
                    seen: Vec::new(),
                };
                if let Some(b) = model.page_bytes(*proc, addr) {
                    p.note(b);
                }
                // A page not faulted in yet may be spliced as the zero page.
                p.note(vec![0u8; self.page_size]);
                self.pipe.push_back(p);
            }
            (Op::PipeRead { .. }, Outcome::Read { .. }) => {
                self.pipe.pop_front();
            }
            _ => {}
        }
        if (0..caps::MAX_PROCS).all(|q| model.life(ProcId(q as u8)) != Life::Alive) {
            self.pipe.clear();
        }
        // Every content visible at a spliced address after this op, in any live process: the
        // splicer's own later write may go in place (and show through the pipe), a shared page
        // is one page for every mapper.
        for p in self.pipe.iter_mut() {
            for q in 0..caps::MAX_PROCS as u8 {
                if model.life(ProcId(q)) == Life::Alive
                    && let Some(b) = model.page_bytes(ProcId(q), p.addr)
                {
                    p.note(b);
                }
            }
        }
    }
}

/// The digests (with the bytes) a `pipe-read` of `page` may see, by the model: the model
/// keeps its pipe to itself and `apply(op, None)` names one allowed view only, so every content
/// the plan saw at the spliced address since the splice (the spliced bytes, zero, and each
/// later content of that page in any live process, the splicer's own in-place writes among
/// them) is offered to a copy of the model as the observation; the model returns an observed
/// digest unchanged exactly when it allows it. Its own default view is always kept. Where
/// a view cannot be named this way (a page the splicer moved with mremap and then wrote in
/// place), the reproducer accepts the views it can name, which always include the spliced
/// bytes and the splicer's bytes at the spliced address.
pub(super) fn pipe_read_digests(model: &Model, op: &Op, page: &PipePage) -> Vec<(u64, Vec<u8>)> {
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    let default = match model.clone().apply(op, None) {
        Ok(Outcome::Read { digests }) => digests.first().copied(),
        _ => None,
    };
    for (d, bytes) in &page.seen {
        let seen = Outcome::Read { digests: vec![*d] };
        let allowed = matches!(
            model.clone().step(op, Some(&seen)),
            Ok(Outcome::Read { digests }) if digests.first() == Some(d)
        );
        if allowed && !out.iter().any(|(x, _)| x == d) {
            out.push((*d, bytes.clone()));
        }
    }
    if let Some(d) = default
        && !out.iter().any(|(x, _)| *x == d)
    {
        // Not among the contents the plan saw: keep it, bytes unknown.
        out.insert(0, (d, Vec::new()));
    }
    out
}

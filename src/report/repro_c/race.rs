//! Racing threads in a C reproducer (docs/SEMANTICS.md part T): which pages' last word a
//! thread decides, and how the reproducer checks it without learning as the model does. The
//! model is walked with no observation, so where it would learn a value from the run (a
//! running thread's counter, a fork's copy of it, the rounds a stop reports) the plan names a
//! check instead: the page with its last word zeroed must match the model's, and the word
//! must be any value (a running thread, T1, T9), one in the fork's `before..=after + 1` that
//! never changes afterwards (or 0 where a zapping thread raced too; T2, T9), or the rounds
//! the stop reported (T1). Pure data, like `plan`.

use crate::model::{Model, RaceWord, Watch};
use crate::program::outcome::{Outcome, digest};
use crate::program::{Op, ProcId, RACE_WORD, RaceKind};

/// How one page's last word is checked (`runtime.c`'s `struct race`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaceCheck {
    pub kind: Kind,
    /// R_FORK: the fork's op index; R_ROUNDS: the stop's.
    pub slot: usize,
    /// R_FORK: the thread handle whose counter bounds the word.
    pub thread: u8,
    /// R_FORK: 0 is allowed too (a zapped page's copy, T9).
    pub zero: bool,
    /// The digest of the bytes with the last word zeroed.
    pub base: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Free,
    Fork,
    Rounds,
}

impl Kind {
    pub fn c_name(self) -> &'static str {
        match self {
            Kind::Free => "R_FREE",
            Kind::Fork => "R_FORK",
            Kind::Rounds => "R_ROUNDS",
        }
    }
}

/// A read's checks, one per page (`None`: by its digest), and what it reads in words.
pub type ReadChecks = (Vec<Option<RaceCheck>>, String);

/// What the plan remembers of the program's threads.
#[derive(Default)]
pub struct Races {
    /// (child, page address, fork op, thread): a child's copy of a page a thread stored to.
    forks: Vec<(ProcId, u64, usize, u8)>,
    /// (process, page address, stop op, the word the model holds): a stopped thread's page
    /// (and every process that sees the same frame there: a shared page, T3).
    stops: Vec<(ProcId, u64, usize, u64)>,
    /// Whether the program races at all.
    pub any: bool,
}

/// The last word of `bytes` (a whole page), as stored.
fn word(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    u64::from_le_bytes(bytes[n - RACE_WORD..].try_into().unwrap_or([0; 8]))
}

impl Races {
    /// Before op `i` runs in the model.
    pub fn before(&mut self, model: &Model, i: usize, op: &Op) -> Option<(ProcId, u64)> {
        match *op {
            Op::Race { .. } => {
                self.any = true;
                None
            }
            Op::Fork { proc, child } => {
                for (p, t, addr) in model.storers() {
                    if p == proc {
                        self.forks.push((child, addr, i, t.0));
                    }
                }
                let inherited: Vec<_> = self
                    .stops
                    .iter()
                    .filter(|s| s.0 == proc)
                    .map(|s| (child, s.1, s.2, s.3))
                    .collect();
                self.stops.extend(inherited);
                None
            }
            Op::Stop { proc, thread } => model
                .storers()
                .into_iter()
                .find(|s| s.0 == proc && s.1 == thread)
                .map(|s| (proc, s.2)),
            _ => None,
        }
    }

    /// After stop op `i` of a storing thread at `at`, in the model.
    pub fn stopped(&mut self, model: &Model, i: usize, at: (ProcId, u64)) {
        if let Some(b) = model.page_bytes(at.0, at.1) {
            self.stops.retain(|s| (s.0, s.1) != at);
            self.stops.push((at.0, at.1, i, word(&b)));
        }
    }

    /// How each page of a read (`op`, which the model says reads as `outcome`) is checked, with
    /// what it reads in words, if any page's word is a racing thread's. Err: a read covers part
    /// of such a word only.
    pub fn read_checks(
        &self,
        model: &Model,
        op: &Op,
        outcome: &Outcome,
    ) -> Result<Option<ReadChecks>, ()> {
        let (Op::Read { proc, map, span }, Outcome::Read { digests }) = (op, outcome) else {
            return Ok(None);
        };
        let Some(h) = model.handle(*map).filter(|_| self.any) else {
            return Ok(None);
        };
        let ps = model.page_size();
        let bytes = span.bytes_in_page(ps);
        let pages: Vec<u16> = span.page_range().pages().take(digests.len()).collect();
        let addr = |page: u16| h.base + page as u64 * ps as u64;
        let mut per_page = Vec::new();
        for &page in &pages {
            per_page.push(self.check(model, *proc, addr(page), bytes.start, bytes.end)?);
        }
        if per_page.iter().all(Option::is_none) {
            return Ok(None);
        }
        let mut parts = Vec::new();
        for (check, &page) in per_page.iter().zip(&pages).take(3) {
            let text = match check {
                Some(c) => words(model, *proc, addr(page), bytes.start, bytes.end, c),
                None => model
                    .page_bytes(*proc, addr(page))
                    .and_then(|b| b.get(bytes.clone()).map(crate::report::describe_bytes))
                    .unwrap_or_default(),
            };
            parts.push(match pages.len() {
                1 => text,
                _ => format!("page {page}: {text}"),
            });
        }
        if pages.len() > 3 {
            parts.push("…".into());
        }
        Ok(Some((per_page, parts.join("; "))))
    }

    /// How `proc`'s page at `addr` is checked where bytes `lo..hi` of it are read (`None`: by
    /// its digest). Err: the read covers part of the word only.
    pub fn check(
        &self,
        model: &Model,
        proc: ProcId,
        addr: u64,
        lo: usize,
        hi: usize,
    ) -> Result<Option<RaceCheck>, ()> {
        if !self.any {
            return Ok(None);
        }
        let Some(bytes) = model.page_bytes(proc, addr) else {
            return Ok(None);
        };
        let ps = bytes.len();
        let decided = model.race_word(proc, addr);
        let stop = self.stops.iter().rev().find(|s| {
            s.1 == addr && s.3 == word(&bytes) && (s.0 == proc || model.same_frame(s.0, proc, addr))
        });
        let (kind, slot, thread, zero) = match decided {
            Some(RaceWord::Pending { zero }) => {
                match self.forks.iter().rev().find(|f| f.0 == proc && f.1 == addr) {
                    Some(f) => (Kind::Fork, f.2, f.3, zero),
                    None => (Kind::Free, 0, 0, false),
                }
            }
            Some(RaceWord::Free) => (Kind::Free, 0, 0, false),
            None => match stop {
                Some(s) => (Kind::Rounds, s.2, 0, false),
                None => return Ok(None),
            },
        };
        if hi <= ps - RACE_WORD {
            return Ok(None);
        }
        if hi != ps || lo > ps - RACE_WORD {
            return Err(());
        }
        let mut b = bytes[lo..hi].to_vec();
        let n = b.len();
        b[n - RACE_WORD..].fill(0);
        Ok(Some(RaceCheck {
            kind,
            slot,
            thread,
            zero,
            base: digest(&b),
        }))
    }
}

/// What a read of bytes `lo..hi` of `proc`'s page at `addr` sees, in words, where `check`
/// decides its last word (the model's own word there is only a stand-in).
pub fn words(
    model: &Model,
    proc: ProcId,
    addr: u64,
    lo: usize,
    hi: usize,
    check: &RaceCheck,
) -> String {
    let bytes = model.page_bytes(proc, addr).unwrap_or_default();
    let head = bytes
        .get(lo..hi.saturating_sub(RACE_WORD))
        .map_or_else(String::new, |b| {
            if b.is_empty() {
                String::new()
            } else {
                format!("{}, then ", crate::report::describe_bytes(b))
            }
        });
    let word = match check.kind {
        Kind::Free => "any counter of the racing thread (or what it left)".to_string(),
        Kind::Fork => format!(
            "a counter of t{} in before..=after + 1 of the fork (op {}){}, the same at every look",
            check.thread,
            check.slot + 1,
            if check.zero { ", or 0" } else { "" }
        ),
        Kind::Rounds => format!("the rounds that op {}'s stop reported", check.slot + 1),
    };
    format!("{head}in the last 8 bytes {word}")
}

/// What a reader's stop must report, in words (T10).
pub fn watch_words(watch: Option<Watch>) -> String {
    match watch {
        Some(Watch::Exact(w)) => {
            format!(
                "stops; every load saw {w} (first and last {w}, none smaller than the one before)"
            )
        }
        Some(Watch::Constant) => {
            "stops; every load saw one value (first == last, none smaller than the one before)"
                .into()
        }
        Some(Watch::Open) => {
            "stops; the loads saw one value, or it and then 0 (a lazily freed page reclaimed)"
                .into()
        }
        Some(Watch::Unchecked) => {
            "stops (a vmsplice thread's page that others may write: what it drained is not checked)"
                .into()
        }
        Some(Watch::Counter) | None => {
            "stops; the loads never went down (first <= last, none smaller than the one before)"
                .into()
        }
    }
}

/// The `.watch`, `.word` fields of a reader's stop row (`runtime.c`'s `enum watch`).
pub fn watch_fields(watch: Watch) -> String {
    match watch {
        Watch::Exact(w) => format!(", .watch = W_EXACT, .word = 0x{w:016x}ull"),
        Watch::Constant => ", .watch = W_CONST".into(),
        Watch::Counter => ", .watch = W_MONO".into(),
        Watch::Open => ", .watch = W_OPEN".into(),
        Watch::Unchecked => ", .watch = W_NONE".into(),
    }
}

/// Why op `i` cannot be reproduced, if it stores to a fork's copy of a page a `protect` thread
/// was flipping (read-only or read-write as the fork found it, T11), or accesses one an
/// `unmap` thread was unmapping and mapping (T12): only a view tells what the fork found, and
/// a reproducer does not learn from views.
pub fn open_layout_refusal(
    model: &Model,
    i: usize,
    op: &Op,
    page_size: usize,
) -> Option<super::error::ReproError> {
    let store = matches!(op, Op::Write { .. } | Op::Poke { .. });
    let (Op::Write {
        proc, map, span, ..
    }
    | Op::Poke {
        proc, map, span, ..
    }
    | Op::Read { proc, map, span }) = *op
    else {
        return None;
    };
    let h = model.handle(map)?;
    let open = span.page_range().pages().any(|p| {
        let open = model.open_layout(proc, h.base + p as u64 * page_size as u64);
        matches!(open, Some(RaceKind::Unmap | RaceKind::Remap))
            || (store && open == Some(RaceKind::Protect))
    });
    open.then(|| super::error::ReproError::Unsupported {
        index: i + 1,
        op: op.to_string(),
        kind: "an access to a fork's copy of a page whose layout a thread was changing",
        known: "accesses to every other page: the child's protection or mapping there is learnt from its first view, which a reproducer does not do".into(),
    })
}

/// How a reader's `stop` op (if `op` is one) will be checked, asked before it runs (T10).
pub fn watch_before(model: &Model, op: &Op) -> Option<Watch> {
    match *op {
        Op::Stop { proc, thread } => model.watch_of(proc, thread),
        _ => None,
    }
}

/// A reader's stop's check and its words (T10).
pub fn watched(watch: Option<Watch>) -> (Watch, String) {
    (watch.unwrap_or(Watch::Counter), watch_words(watch))
}

/// Whether `proc`'s page at `addr` is one an unmap or remap thread changes (a remap thread's
/// spare too), or a fork's copy of one: mapped or not as the interleaving went (T12, T13),
/// which a state check cannot say.
pub fn unmapped_or_not(model: &Model, proc: ProcId, addr: u64) -> bool {
    matches!(
        model.open_layout(proc, addr),
        Some(RaceKind::Unmap | RaceKind::Remap)
    )
}

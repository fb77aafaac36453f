//! Worker -> coordinator: what a request did, as a typed `Reply` (the head of a reply) and as
//! the `REPLY_HEAD` u64 words that travel, followed by the reply's payload. A message carries
//! one or more replies one after another (a worker answers a batch's requests at once), so
//! every head says how many payload words follow it, in the same word (`PAYLOAD_WORD`) for every
//! kind of reply: the coordinator, and `worker::SlotsView::unsent` after a worker was killed,
//! find the next reply without knowing the kinds.
//!
//! Layout: `[status, a, b, c, d, payload words]`, then the payload:
//!
//! | status    | a, b, c, d               | payload                                       |
//! |-----------|--------------------------|-----------------------------------------------|
//! | `DONE`    | value                    |                                               |
//! | `FAILED`  | errno                    |                                               |
//! | `DIGESTS` |                          | a digest per page (read, pipe read)           |
//! | `PAGE`    |                          | the page's words (dump)                       |
//! | `VIEW`    | regions, pages, phys     | (start, end, flags) per region, a pagemap     |
//! |           |                          | word per page of the regions (or none), then  |
//! |           |                          | (address, digest) per readable page           |
//! | `FAULT`   | signal, si_code, address | what the op had produced (digests, words)     |
//! | `REFUSED` |                          |                                               |
//! | `SKIPPED` |                          |                                               |
//!
//! Unused words are 0, and `decode` refuses anything else. An i32 (errno, signal, si_code)
//! travels as its 32 bits, zero-extended.
//!
//! This module never makes a syscall; `Reply::encode` is async-signal-safe (the fault handler
//! builds its report with it).

/// Words of a reply's head.
pub const REPLY_HEAD: usize = 6;
/// Payload words a reply may carry (a snapshot of ~8000 pages, or a 64 KiB page dump).
pub const REPLY_PAYLOAD: usize = 16 * 1024;
/// The head word that holds the payload's length, in every reply.
pub const PAYLOAD_WORD: usize = 5;

/// A reply's head: what happened, and (by its kind) how many payload words follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Done. `value`: the address a map, map at or remap returned, the pid a fork or a
    /// spawned root got; else 0.
    Done { value: u64 },
    /// The call returned -1 with this errno.
    Failed { errno: i32 },
    /// Done; `count` digests follow, one per page (read; pipe read: one).
    Digests { count: usize },
    /// Done; the page's `words` words follow (dump).
    Page { words: usize },
    /// The process's view of itself (snapshot; a new child's first view). `phys`: pagemap
    /// words, one per page of the regions, or 0 where the physical channel did not run.
    View {
        regions: usize,
        pages: usize,
        phys: usize,
    },
    /// The worker took a fatal signal (and dies of it): the signal, its si_code and the
    /// faulting address, and the `partial` payload words the op had produced.
    Fault {
        signal: i32,
        code: i32,
        addr: u64,
        partial: usize,
    },
    /// The worker could not do what was asked (a cap, a bad request): a harness error.
    Refused,
    /// The op names a mapping that was never made (its map failed or never ran): not run.
    Skipped,
}

/// A head that is not a reply: which word is wrong, and what it held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply: word {word} is {value:#x}")]
pub struct BadReply {
    pub word: usize,
    pub value: u64,
}

/// The statuses (word 0).
mod status {
    pub const DONE: u64 = 1;
    pub const FAILED: u64 = 2;
    pub const FAULT: u64 = 3;
    pub const REFUSED: u64 = 4;
    pub const SKIPPED: u64 = 5;
    pub const DIGESTS: u64 = 6;
    pub const PAGE: u64 = 7;
    pub const VIEW: u64 = 8;
}

#[inline]
fn i32_word(v: i32) -> u64 {
    v as u32 as u64
}

#[inline]
fn i32_of(w: u64) -> Option<i32> {
    u32::try_from(w).ok().map(|v| v as i32)
}

#[inline]
fn count_of(w: u64) -> Option<usize> {
    (w <= REPLY_PAYLOAD as u64).then_some(w as usize)
}

impl Reply {
    /// Payload words after the head.
    #[inline]
    pub fn payload_words(&self) -> usize {
        match *self {
            Reply::Done { .. } | Reply::Failed { .. } | Reply::Refused | Reply::Skipped => 0,
            Reply::Digests { count } => count,
            Reply::Page { words } => words,
            Reply::View {
                regions,
                pages,
                phys,
            } => regions * 3 + pages * 2 + phys,
            Reply::Fault { partial, .. } => partial,
        }
    }

    /// The head's words (layout in the module's header).
    #[inline]
    pub fn encode(&self) -> [u64; REPLY_HEAD] {
        let (st, a, b, c) = match *self {
            Reply::Done { value } => (status::DONE, value, 0, 0),
            Reply::Failed { errno } => (status::FAILED, i32_word(errno), 0, 0),
            Reply::Digests { .. } => (status::DIGESTS, 0, 0, 0),
            Reply::Page { .. } => (status::PAGE, 0, 0, 0),
            Reply::View {
                regions,
                pages,
                phys,
            } => (status::VIEW, regions as u64, pages as u64, phys as u64),
            Reply::Fault {
                signal, code, addr, ..
            } => (status::FAULT, i32_word(signal), i32_word(code), addr),
            Reply::Refused => (status::REFUSED, 0, 0, 0),
            Reply::Skipped => (status::SKIPPED, 0, 0, 0),
        };
        [st, a, b, c, 0, self.payload_words() as u64]
    }

    /// The reply these head words carry; an error for anything `encode` never makes.
    #[inline]
    pub fn decode(w: &[u64; REPLY_HEAD]) -> Result<Reply, BadReply> {
        let bad = |word: usize| BadReply {
            word,
            value: w[word],
        };
        let take = |word: usize, f: fn(u64) -> Option<usize>| f(w[word]).ok_or(bad(word));
        let take_i32 = |word: usize| i32_of(w[word]).ok_or(bad(word));
        let payload = take(PAYLOAD_WORD, count_of)?;
        let reply = match w[0] {
            status::DONE => Reply::Done { value: w[1] },
            status::FAILED => Reply::Failed {
                errno: take_i32(1)?,
            },
            status::DIGESTS => Reply::Digests { count: payload },
            status::PAGE => Reply::Page { words: payload },
            status::VIEW => Reply::View {
                regions: take(1, count_of)?,
                pages: take(2, count_of)?,
                phys: take(3, count_of)?,
            },
            status::FAULT => Reply::Fault {
                signal: take_i32(1)?,
                code: take_i32(2)?,
                addr: w[3],
                partial: payload,
            },
            status::REFUSED => Reply::Refused,
            status::SKIPPED => Reply::Skipped,
            _ => return Err(bad(0)),
        };
        // Whatever the kind leaves unused must be 0, and the length must be the kind's.
        let canonical = reply.encode();
        match (0..REPLY_HEAD).find(|&i| canonical[i] != w[i]) {
            None => Ok(reply),
            Some(i) => Err(bad(i)),
        }
    }
}

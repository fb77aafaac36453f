//! Coordinator -> worker: what one op (or one turn to wait for or to pass) asks of a worker, as a
//! typed `Request` and as the `REQ_WORDS` u64 words that travel. `encode` is here and `decode`
//! in `decode.rs`, each a `match` on the verbs below; every enum value travels as a wire code given by name below (a `match` each
//! way), never as its position in a list, so reordering a list in `program` changes nothing
//! here.
//!
//! Mappings are named by handle (and page), never by address: the coordinator sends a
//! program's requests before the maps they name have run, and the worker resolves handles
//! through the tree's board (`worker::Board`) when it runs the op.
//!
//! Layout: word 0 is the verb, then the verb's arguments in this order (the words after them
//! are 0; `decode` refuses anything else, so that a decoded request encodes to the same words):
//!
//! | verb         | words 1..                                                        |
//! |--------------|------------------------------------------------------------------|
//! | `MAP`        | kind, length, creates, fd, offset                                |
//! | `MAP_AT`     | kind, length, creates, at, how, fd, offset                       |
//! | `WRITE`      | map, first page, pages, first byte, end byte, pattern            |
//! | `READ`       | map, first page, pages, first byte, end byte                     |
//! | `POKE`       | map, first page, pages, first byte, end byte, pattern, via       |
//! | `UNMAP`      | map, first page, length                                          |
//! | `PROTECT`    | map, first page, length, prot                                    |
//! | `ADVISE`     | map, first page, length, advice                                  |
//! | `REMAP`      | map, first page, old length, new length, creates, flags, fixed at |
//! | `INVALID`    | map, call, bad argument                                          |
//! | `VMSPLICE`   | at                                                               |
//! | `PIPE_READ`  |                                                                  |
//! | `RACE`       | at, kind, thread (docs/SEMANTICS.md T1, T7, T8)                   |
//! | `STOP`       | thread                                                           |
//! | `FORK`       | child, direct reads, serial, mask, next, late                    |
//! | `CLONE_VM`   | child, direct reads, serial, mask, next, late (T30)              |
//! | `PREPARE_CLONES` | (no reply)                                                   |
//! | `EXIT`       | turn                                                             |
//! | `SNAPSHOT`   | direct reads, serial, mask, next, late, smaps                    |
//! | `DUMP`       | at                                                               |
//! | `SPAWN_ROOT` |                                                                  |
//! | `AWAIT`      | turn                                                             |
//! | `PASS`       | turn                                                             |
//! | `ALLOC`, `FREE`, `TUNE` | the allocator ops: `protocol/alloc.rs`                |
//!
//! A map, creates or child is a handle number; an `at` is `handle << 32 | byte << 16 | page`;
//! a page range is two words, its first page and its length in pages; a length is
//! `tail << 32 | pages`, where `tail` is the bytes of its last page that it covers (0: all of
//! them); an offset is `bytes << 32 | pages`; a flag (`fd` too) is 0 or 1; the rest are wire
//! codes (`kind`, `how`, `pattern`, `via`, `call`, `bad`) or Linux's own numbers (`prot`:
//! PROT_*, `advice`: MADV_*, `flags`: MREMAP_*).
//!
//! This module never makes a syscall.

use super::alloc::{call_words, tune_words};
use super::codes::*;
use crate::program::{
    Advice, AllocCall, At, BadArg, MapArgs, MapId, MapKind, PageRange, Pattern, PlaceHow, ProcId,
    Prot, RemapFlags, Syscall, Tune, Via,
};

/// Words of one request.
pub const REQ_WORDS: usize = 8;

/// Where a view stands in its snapshot (`worker::Board::barrier`): every viewer waits for the
/// turn `serial`, notes on the board that it has looked at itself, and the last of the
/// viewers in `mask` (a bit per process handle) passes the turn `next`. `serial` 0: no
/// barrier. The viewers in `late` (a subset of `mask`) look at themselves only after every
/// other viewer has (`worker::Board::await_earlier_views`): the first user of an address space
/// that others use too, whose view alone is checked against the physical channel (T31).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Barrier {
    pub serial: u32,
    pub mask: u32,
    pub next: u32,
    pub late: u32,
}

/// Bytes `start..end` of each page a write, read or poke touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u32,
    pub end: u32,
}

impl ByteRange {
    #[inline]
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    #[inline]
    pub fn is_empty(self) -> bool {
        self.end <= self.start
    }
}

/// What a worker is asked to do: one op of the program (on handles, resolved by the worker),
/// a view or a page dump for the coordinator, or a turn to wait for or to pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// mmap `pages` pages of `kind` (the last one cut after `tail` bytes, 0: whole), with
    /// `args`; the address is entered as handle `creates`.
    Map {
        kind: MapKind,
        pages: u16,
        tail: u16,
        creates: MapId,
        args: MapArgs,
    },
    /// mmap with placement `how` at `at`.
    MapAt {
        kind: MapKind,
        pages: u16,
        tail: u16,
        creates: MapId,
        at: At,
        how: PlaceHow,
        args: MapArgs,
    },
    /// Stores `pattern` into `bytes` of each of `pages` of `map` (its ramp counts from the
    /// mapping's first byte).
    Write {
        map: MapId,
        pages: PageRange,
        bytes: ByteRange,
        pattern: Pattern,
    },
    /// Loads `bytes` of each of `pages` of `map`; the reply carries a digest per page.
    Read {
        map: MapId,
        pages: PageRange,
        bytes: ByteRange,
    },
    /// Writes as `Write` does, through the kernel (`via`).
    Poke {
        map: MapId,
        pages: PageRange,
        bytes: ByteRange,
        pattern: Pattern,
        via: Via,
    },
    /// munmap, mprotect, madvise of `pages` of `map`, the last one cut after `tail` bytes.
    Unmap {
        map: MapId,
        pages: PageRange,
        tail: u16,
    },
    Protect {
        map: MapId,
        pages: PageRange,
        tail: u16,
        prot: Prot,
    },
    Advise {
        map: MapId,
        pages: PageRange,
        tail: u16,
        advice: Advice,
    },
    /// mremap of `old` pages of `map` (empty: old size 0; the last cut after `old_tail` bytes)
    /// to `new_pages` (the last cut after `new_tail` bytes); the result is entered as handle
    /// `creates`.
    Remap {
        map: MapId,
        old: PageRange,
        old_tail: u16,
        new_pages: u16,
        new_tail: u16,
        creates: MapId,
        flags: RemapFlags,
    },
    /// `call` on `map` with one bad argument.
    Invalid {
        map: MapId,
        call: Syscall,
        bad: BadArg,
    },
    /// vmsplice of the page at `at` into the program's pipe.
    Vmsplice { at: At },
    /// Reads one page out of the program's pipe; the reply carries its digest.
    PipeRead,
    /// Starts the process's racing thread on the page at `at` (`worker::thread`); replies
    /// once the thread has stored once.
    Race {
        at: At,
        kind: crate::program::RaceKind,
        thread: u8,
    },
    /// Stops and joins the process's racing thread `thread`; the reply carries its rounds.
    Stop { thread: u8 },
    /// Starts op thread `thread` (`worker::op_thread`), which waits for ops.
    Thread { thread: u8 },
    /// The next op request of this message (or the next message) is run by op thread `thread`.
    By { thread: u8 },
    /// Ends op thread `thread` and joins it.
    End { thread: u8 },
    /// vforks a child that stores as `Write` does, then `_exit`s (`worker::vfork`); the reply
    /// is `Done` (the child exited) or three words: the signal, si_code and address the child
    /// died of.
    Vfork {
        map: MapId,
        pages: PageRange,
        bytes: ByteRange,
        pattern: Pattern,
    },
    /// Forks; the child takes the slot of handle `child` and the socket passed with this
    /// message, and sends its first view unasked (`barrier`: the snapshot after the fork).
    /// `direct_reads`: views may read pages by plain loads (`worker::Scratch`).
    Fork {
        child: ProcId,
        direct_reads: bool,
        barrier: Barrier,
    },
    /// Starts a process in this one's address space (libc's `clone`, CLONE_VM | SIGCHLD,
    /// docs/SEMANTICS.md T30): as FORK, the child takes the slot of handle `child` and the
    /// socket passed with this message, and sends its first view unasked.
    CloneVm {
        child: ProcId,
        direct_reads: bool,
        barrier: Barrier,
    },
    /// The root of a program with a `clone`, before its first op: makes the clone children's
    /// kits and takes them into its baseline (`worker::clone_vm`). No reply.
    PrepareClones,
    /// Replies, passes the turn `pass` (0: none) and exits.
    Exit { pass: u32 },
    /// Looks at itself and replies with the view; `smaps`: with its smaps sums (I11), which
    /// the coordinator asks for at the views of a program's end.
    Snapshot {
        direct_reads: bool,
        smaps: bool,
        barrier: Barrier,
    },
    /// Replies with the words of the page at `at`.
    Dump { at: At },
    /// To the zygote: fork a program's root; the reply carries its pid and passes the
    /// coordinator's end of its socket.
    SpawnRoot,
    /// A malloc-family `call` of `size` bytes; the block is entered as handle `creates`.
    Alloc {
        call: AllocCall,
        size: u32,
        creates: MapId,
    },
    /// free of block `map`.
    Free { map: MapId },
    /// mallopt or malloc_trim.
    Tune { tune: Tune },
    /// Waits until the tree's turn reaches `turn` (`worker::Turn`); no reply.
    Await { turn: u32 },
    /// Makes the turn `turn` and wakes whoever waits for it; no reply.
    Pass { turn: u32 },
}

/// Words that are not a request: which word is wrong, and what it held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed request: word {word} is {value:#x}")]
pub struct BadRequest {
    pub word: usize,
    pub value: u64,
}

/// The verbs (word 0).
pub(super) mod verb {
    pub const MAP: u64 = 1;
    pub const WRITE: u64 = 2;
    pub const READ: u64 = 3;
    pub const FORK: u64 = 4;
    pub const EXIT: u64 = 5;
    pub const UNMAP: u64 = 6;
    pub const SNAPSHOT: u64 = 7;
    pub const DUMP: u64 = 8;
    pub const MAP_AT: u64 = 9;
    pub const PROTECT: u64 = 10;
    pub const ADVISE: u64 = 11;
    pub const REMAP: u64 = 12;
    pub const INVALID: u64 = 13;
    pub const POKE: u64 = 14;
    pub const VMSPLICE: u64 = 15;
    pub const PIPE_READ: u64 = 16;
    pub const SPAWN_ROOT: u64 = 17;
    pub const AWAIT: u64 = 18;
    pub const PASS: u64 = 19;
    pub const ALLOC: u64 = 20;
    pub const FREE: u64 = 21;
    pub const TUNE: u64 = 22;
    pub const RACE: u64 = 23;
    pub const STOP: u64 = 24;
    pub const VFORK: u64 = 31;
    pub const CLONE_VM: u64 = 52;
    pub const PREPARE_CLONES: u64 = 53;
    pub const THREAD: u64 = 48;
    pub const BY: u64 = 49;
    pub const END: u64 = 50;
}

/// A verb and its argument words.
#[inline]
fn words<const N: usize>(verb: u64, args: [u64; N]) -> [u64; REQ_WORDS] {
    let mut w = [0u64; REQ_WORDS];
    w[0] = verb;
    w[1..1 + N].copy_from_slice(&args);
    w
}

impl Request {
    /// The words that carry this request (layout in the module's header).
    #[inline]
    pub fn encode(&self) -> [u64; REQ_WORDS] {
        let range = |p: PageRange| [p.start as u64, p.len() as u64];
        let extent = |p: PageRange, tail: u16| len_word(p.len(), tail);
        let map = |m: MapId| m.0 as u64;
        match *self {
            Request::Map {
                kind,
                pages,
                tail,
                creates,
                args,
            } => {
                let [fd, offset] = args_words(args);
                words(
                    verb::MAP,
                    [
                        kind_word(kind),
                        len_word(pages, tail),
                        map(creates),
                        fd,
                        offset,
                    ],
                )
            }
            Request::MapAt {
                kind,
                pages,
                tail,
                creates,
                at,
                how,
                args,
            } => {
                let [fd, offset] = args_words(args);
                words(
                    verb::MAP_AT,
                    [
                        kind_word(kind),
                        len_word(pages, tail),
                        map(creates),
                        at_word(at),
                        how_word(how),
                        fd,
                        offset,
                    ],
                )
            }
            Request::Write {
                map: m,
                pages,
                bytes,
                pattern,
            } => {
                let [first, n] = range(pages);
                words(
                    verb::WRITE,
                    [
                        map(m),
                        first,
                        n,
                        bytes.start as u64,
                        bytes.end as u64,
                        pattern_word(pattern),
                    ],
                )
            }
            Request::Read {
                map: m,
                pages,
                bytes,
            } => {
                let [first, n] = range(pages);
                words(
                    verb::READ,
                    [map(m), first, n, bytes.start as u64, bytes.end as u64],
                )
            }
            Request::Poke {
                map: m,
                pages,
                bytes,
                pattern,
                via,
            } => {
                let [first, n] = range(pages);
                words(
                    verb::POKE,
                    [
                        map(m),
                        first,
                        n,
                        bytes.start as u64,
                        bytes.end as u64,
                        pattern_word(pattern),
                        via_word(via),
                    ],
                )
            }
            Request::Unmap {
                map: m,
                pages,
                tail,
            } => words(
                verb::UNMAP,
                [map(m), pages.start as u64, extent(pages, tail)],
            ),
            Request::Protect {
                map: m,
                pages,
                tail,
                prot,
            } => words(
                verb::PROTECT,
                [
                    map(m),
                    pages.start as u64,
                    extent(pages, tail),
                    prot_word(prot),
                ],
            ),
            Request::Advise {
                map: m,
                pages,
                tail,
                advice,
            } => words(
                verb::ADVISE,
                [
                    map(m),
                    pages.start as u64,
                    extent(pages, tail),
                    advice_word(advice),
                ],
            ),
            Request::Remap {
                map: m,
                old,
                old_tail,
                new_pages,
                new_tail,
                creates,
                flags,
            } => words(
                verb::REMAP,
                [
                    map(m),
                    old.start as u64,
                    extent(old, old_tail),
                    len_word(new_pages, new_tail),
                    map(creates),
                    remap_flags_word(flags),
                    flags.fixed.map_or(0, at_word),
                ],
            ),
            Request::Invalid { map: m, call, bad } => {
                words(verb::INVALID, [map(m), call_word(call), bad_word(bad)])
            }
            Request::Vmsplice { at } => words(verb::VMSPLICE, [at_word(at)]),
            Request::PipeRead => words(verb::PIPE_READ, []),
            Request::Race { at, kind, thread } => {
                words(verb::RACE, [at_word(at), kind.code(), thread as u64])
            }
            Request::Stop { thread } => words(verb::STOP, [thread as u64]),
            Request::Thread { thread } => words(verb::THREAD, [thread as u64]),
            Request::By { thread } => words(verb::BY, [thread as u64]),
            Request::End { thread } => words(verb::END, [thread as u64]),
            Request::Vfork {
                map: m,
                pages,
                bytes,
                pattern,
            } => {
                let [first, n] = range(pages);
                words(
                    verb::VFORK,
                    [
                        map(m),
                        first,
                        n,
                        bytes.start as u64,
                        bytes.end as u64,
                        pattern_word(pattern),
                    ],
                )
            }
            Request::Fork {
                child,
                direct_reads,
                barrier: b,
            } => words(
                verb::FORK,
                [
                    child.0 as u64,
                    direct_reads as u64,
                    b.serial as u64,
                    b.mask as u64,
                    b.next as u64,
                    b.late as u64,
                ],
            ),
            Request::CloneVm {
                child,
                direct_reads,
                barrier: b,
            } => words(
                verb::CLONE_VM,
                [
                    child.0 as u64,
                    direct_reads as u64,
                    b.serial as u64,
                    b.mask as u64,
                    b.next as u64,
                    b.late as u64,
                ],
            ),
            Request::PrepareClones => words(verb::PREPARE_CLONES, []),
            Request::Exit { pass } => words(verb::EXIT, [pass as u64]),
            Request::Snapshot {
                direct_reads,
                smaps,
                barrier: b,
            } => words(
                verb::SNAPSHOT,
                [
                    direct_reads as u64,
                    b.serial as u64,
                    b.mask as u64,
                    b.next as u64,
                    b.late as u64,
                    smaps as u64,
                ],
            ),
            Request::Dump { at } => words(verb::DUMP, [at_word(at)]),
            Request::SpawnRoot => words(verb::SPAWN_ROOT, []),
            Request::Await { turn } => words(verb::AWAIT, [turn as u64]),
            Request::Pass { turn } => words(verb::PASS, [turn as u64]),
            Request::Alloc {
                call,
                size,
                creates,
            } => {
                let [c, from, align] = call_words(call);
                words(verb::ALLOC, [c, size as u64, map(creates), from, align])
            }
            Request::Free { map: m } => words(verb::FREE, [map(m)]),
            Request::Tune { tune } => words(verb::TUNE, tune_words(tune)),
        }
    }

    /// The turn this request passes (PASS, or EXIT on the way out; perhaps 0), if any.
    #[inline]
    pub fn passes(&self) -> Option<u32> {
        match *self {
            Request::Pass { turn } => Some(turn),
            Request::Exit { pass } => Some(pass),
            _ => None,
        }
    }

    /// The most payload words the reply to this request can have, for a page size.
    #[inline]
    pub fn max_payload(&self, page_size: usize) -> usize {
        match *self {
            Request::Read { pages, .. } => pages.len() as usize,
            Request::Dump { .. } => page_size / 8,
            Request::PipeRead | Request::Stop { .. } => 1,
            // The child's pid and, in a process that races, the counter before and after.
            Request::Fork { .. } => 3,
            _ => 0,
        }
    }
}

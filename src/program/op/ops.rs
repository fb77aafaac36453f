//! The [`Op`] enum (one operation, performed by one process) and its verbs ([`OpKind`]), with
//! what every layer asks of an op: who performs it, which handles it names or creates, how its
//! handles are renamed. Pure data: how an op is written down is [`trace`](crate::program::trace)'s,
//! what it does is the model's and the executor's.

use super::alloc::{AllocCall, Tune};
use super::args::{
    Advice, BadArg, MapArgs, MapKind, PlaceHow, Prot, RaceKind, RemapFlags, Syscall, Via,
};
use super::handle::{At, MapId, ProcId, ThreadId};
use super::span::{PageRange, Pattern, Span};

/// One operation, performed by one process.
///
/// A length may end inside its last page: `tail` is how many bytes of the last page it covers
/// (1 to 4096), or 0 for the whole page. The page counts and ranges are always the whole pages
/// the length rounds up to, on every page size (`span::tail_len`, docs/SEMANTICS.md A9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `proc` maps `pages` pages of `kind` (the last one cut after `tail` bytes) and names the
    /// range `map`.
    Map {
        proc: ProcId,
        map: MapId,
        kind: MapKind,
        pages: u16,
        tail: u16,
        args: MapArgs,
    },
    /// `proc` stores `pattern` into `span` of `map`, page by page in ascending order.
    Write {
        proc: ProcId,
        map: MapId,
        span: Span,
        pattern: Pattern,
    },
    /// `proc` loads `span` of `map`; the bytes are observed.
    Read {
        proc: ProcId,
        map: MapId,
        span: Span,
    },
    /// `proc` forks; the child is `child`.
    Fork { proc: ProcId, child: ProcId },
    /// `proc` exits (status 0); its children live on.
    Exit { proc: ProcId },
    /// `proc` unmaps `pages` of `map` (the last one cut after `tail` bytes).
    Unmap {
        proc: ProcId,
        map: MapId,
        pages: PageRange,
        tail: u16,
    },
    /// A `map` with placement: MAP_FIXED, MAP_FIXED_NOREPLACE (or both) or a hint at `at`.
    MapAt {
        proc: ProcId,
        map: MapId,
        kind: MapKind,
        pages: u16,
        tail: u16,
        args: MapArgs,
        how: PlaceHow,
        at: At,
    },
    /// `proc` changes the protection of `pages` of `map` (mprotect; the last page cut after
    /// `tail` bytes).
    Protect {
        proc: ProcId,
        map: MapId,
        pages: PageRange,
        tail: u16,
        prot: Prot,
    },
    /// `proc` gives advice on `pages` of `map` (madvise; the last page cut after `tail` bytes;
    /// an empty range is a length of 0).
    Advise {
        proc: ProcId,
        map: MapId,
        pages: PageRange,
        tail: u16,
        advice: Advice,
    },
    /// `proc` remaps `old` pages of `map` (empty: old_size 0; the last one cut after `old_tail`
    /// bytes) to `new_pages` pages (the last one cut after `new_tail` bytes); the result range is
    /// named `result`.
    Remap {
        proc: ProcId,
        map: MapId,
        old: PageRange,
        old_tail: u16,
        new_pages: u16,
        new_tail: u16,
        flags: RemapFlags,
        result: MapId,
    },
    /// `proc` calls `call` on `map` with a bad argument.
    Invalid {
        proc: ProcId,
        map: MapId,
        call: Syscall,
        bad: BadArg,
    },
    /// `proc` writes `pattern` into `span` of `map` through the kernel rather than with
    /// stores: /proc/self/mem (`mem`, FOLL_FORCE, the Dirty COW path) or process_vm_writev
    /// on itself (`vm`), one page at a time in ascending order.
    Poke {
        proc: ProcId,
        map: MapId,
        span: Span,
        pattern: Pattern,
        via: Via,
    },
    /// `proc` vmsplices page `page` of `map` into the program's pipe (one pipe, created by the
    /// root and inherited by every process): the pipe holds a reference to the page.
    Vmsplice { proc: ProcId, map: MapId, page: u16 },
    /// `proc` reads the oldest page out of the program's pipe; the bytes are observed.
    PipeRead { proc: ProcId },
    /// `proc` makes block `map` of `size` bytes with a malloc-family `call` (docs/SEMANTICS.md
    /// part 14; `op/alloc.rs`).
    Alloc {
        proc: ProcId,
        map: MapId,
        call: AllocCall,
        size: u32,
    },
    /// `proc` frees block `map`.
    Free { proc: ProcId, map: MapId },
    /// `proc` changes the allocator's settings (mallopt) or trims (malloc_trim).
    Tune { proc: ProcId, tune: Tune },
    /// `proc` starts thread `thread` (pthread_create), which does `kind` to page `page` of
    /// `map` again and again until stopped (docs/SEMANTICS.md T1); the op returns once the
    /// thread has done it once.
    Race {
        proc: ProcId,
        thread: ThreadId,
        kind: RaceKind,
        map: MapId,
        page: u16,
    },
    /// `proc` stops its thread `thread` and joins it; how many rounds it ran is observed.
    Stop { proc: ProcId, thread: ThreadId },
    /// `proc` vforks (libc's `vfork`): the child, which shares `proc`'s memory, stores
    /// `pattern` into `span` of `map` and `_exit`s, while `proc` is suspended
    /// (docs/SEMANTICS.md T5). The child has no handle: it lives only in this op. If it dies of a
    /// signal, the op's outcome is its death (`proc` lives on).
    Vfork {
        proc: ProcId,
        map: MapId,
        span: Span,
        pattern: Pattern,
    },
    /// `proc` starts process `child` through libc's `clone(CLONE_VM | SIGCHLD)`: its own pid
    /// and its own exit, in `proc`'s address space, not a copy (docs/SEMANTICS.md T30).
    CloneVm { proc: ProcId, child: ProcId },
    /// `proc` starts op thread `thread` (pthread_create), which waits for ops (`pN thread tK`,
    /// docs/SEMANTICS.md T20; `op/thread_ops.rs`).
    Thread { proc: ProcId, thread: ThreadId },
    /// The next op, which is `proc`'s, is run by `proc`'s op thread `thread` while `proc`'s
    /// other threads wait: a trace writes the pair on one line, `tK OP ...` (T21).
    By { proc: ProcId, thread: ThreadId },
    /// Op thread `thread` of `proc` ends (`tK end`: it returns, the worker joins it; T22).
    End { proc: ProcId, thread: ThreadId },
}

/// The op kinds, for statistics and divergence signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    Map,
    Write,
    Read,
    Fork,
    Exit,
    Unmap,
    Protect,
    Advise,
    Remap,
    Invalid,
    Poke,
    Vmsplice,
    PipeRead,
    Alloc,
    Free,
    Tune,
    Race,
    Stop,
    Vfork,
    CloneVm,
    Thread,
    By,
    End,
}

impl OpKind {
    pub const ALL: [OpKind; 23] = [
        OpKind::Map,
        OpKind::Write,
        OpKind::Read,
        OpKind::Fork,
        OpKind::Exit,
        OpKind::Unmap,
        OpKind::Protect,
        OpKind::Advise,
        OpKind::Remap,
        OpKind::Invalid,
        OpKind::Poke,
        OpKind::Vmsplice,
        OpKind::PipeRead,
        OpKind::Alloc,
        OpKind::Free,
        OpKind::Tune,
        OpKind::Race,
        OpKind::Stop,
        OpKind::Vfork,
        OpKind::CloneVm,
        OpKind::Thread,
        OpKind::By,
        OpKind::End,
    ];
    /// Whether the kind is an allocator op's (whose trace verbs are the calls' names).
    pub fn is_alloc(self) -> bool {
        matches!(self, OpKind::Alloc | OpKind::Free | OpKind::Tune)
    }

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Map => "map",
            OpKind::Write => "write",
            OpKind::Read => "read",
            OpKind::Fork => "fork",
            OpKind::Exit => "exit",
            OpKind::Unmap => "unmap",
            OpKind::Protect => "protect",
            OpKind::Advise => "advise",
            OpKind::Remap => "remap",
            OpKind::Invalid => "invalid",
            OpKind::Poke => "poke",
            OpKind::Vmsplice => "vmsplice",
            OpKind::PipeRead => "pipe-read",
            OpKind::Alloc => "alloc",
            OpKind::Free => "free",
            OpKind::Tune => "mallopt",
            OpKind::Race => "race",
            OpKind::Stop => "stop",
            OpKind::Vfork => "vfork",
            OpKind::CloneVm => "clone",
            OpKind::Thread => "thread",
            OpKind::By => "by",
            OpKind::End => "end",
        }
    }
}

impl Op {
    /// The process that performs the op.
    pub fn proc(&self) -> ProcId {
        let mut op = *self;
        *op.proc_mut()
    }

    /// The same op performed by another process.
    pub fn with_proc(self, p: ProcId) -> Op {
        let mut op = self;
        *op.proc_mut() = p;
        op
    }

    fn proc_mut(&mut self) -> &mut ProcId {
        match self {
            Op::Map { proc, .. }
            | Op::Write { proc, .. }
            | Op::Read { proc, .. }
            | Op::Fork { proc, .. }
            | Op::Exit { proc }
            | Op::Unmap { proc, .. }
            | Op::MapAt { proc, .. }
            | Op::Protect { proc, .. }
            | Op::Advise { proc, .. }
            | Op::Remap { proc, .. }
            | Op::Invalid { proc, .. }
            | Op::Poke { proc, .. }
            | Op::Vmsplice { proc, .. }
            | Op::PipeRead { proc }
            | Op::Alloc { proc, .. }
            | Op::Free { proc, .. }
            | Op::Tune { proc, .. } => proc,
            Op::Race { proc, .. } | Op::Stop { proc, .. } | Op::Vfork { proc, .. } => proc,
            Op::CloneVm { proc, .. } => proc,
            Op::Thread { proc, .. } | Op::By { proc, .. } | Op::End { proc, .. } => proc,
        }
    }

    /// The mapping the op names, if any.
    pub fn map(&self) -> Option<MapId> {
        match *self {
            Op::Map { map, .. }
            | Op::Write { map, .. }
            | Op::Read { map, .. }
            | Op::Unmap { map, .. }
            | Op::MapAt { map, .. }
            | Op::Protect { map, .. }
            | Op::Advise { map, .. }
            | Op::Remap { map, .. }
            | Op::Invalid { map, .. }
            | Op::Poke { map, .. }
            | Op::Vmsplice { map, .. }
            | Op::Alloc { map, .. }
            | Op::Free { map, .. }
            | Op::Race { map, .. }
            | Op::Vfork { map, .. } => Some(map),
            Op::Fork { .. }
            | Op::Exit { .. }
            | Op::PipeRead { .. }
            | Op::Tune { .. }
            | Op::Stop { .. } => None,
            Op::CloneVm { .. } => None,
            Op::Thread { .. } | Op::By { .. } | Op::End { .. } => None,
        }
    }

    pub fn kind(&self) -> OpKind {
        match self {
            Op::Map { .. } => OpKind::Map,
            Op::Write { .. } => OpKind::Write,
            Op::Read { .. } => OpKind::Read,
            Op::Fork { .. } => OpKind::Fork,
            Op::Exit { .. } => OpKind::Exit,
            Op::Unmap { .. } => OpKind::Unmap,
            Op::MapAt { .. } => OpKind::Map,
            Op::Protect { .. } => OpKind::Protect,
            Op::Advise { .. } => OpKind::Advise,
            Op::Remap { .. } => OpKind::Remap,
            Op::Invalid { .. } => OpKind::Invalid,
            Op::Poke { .. } => OpKind::Poke,
            Op::Vmsplice { .. } => OpKind::Vmsplice,
            Op::PipeRead { .. } => OpKind::PipeRead,
            Op::Alloc { .. } => OpKind::Alloc,
            Op::Free { .. } => OpKind::Free,
            Op::Tune { .. } => OpKind::Tune,
            Op::Race { .. } => OpKind::Race,
            Op::Stop { .. } => OpKind::Stop,
            Op::Vfork { .. } => OpKind::Vfork,
            Op::CloneVm { .. } => OpKind::CloneVm,
            Op::Thread { .. } => OpKind::Thread,
            Op::By { .. } => OpKind::By,
            Op::End { .. } => OpKind::End,
        }
    }

    /// The op with every handle renamed.
    pub fn rename(self, p: impl Fn(ProcId) -> ProcId, m: impl Fn(MapId) -> MapId) -> Op {
        let mut op = self.with_proc(p(self.proc()));
        let at = |a: At| At { map: m(a.map), ..a };
        match &mut op {
            Op::Map { map, .. }
            | Op::Write { map, .. }
            | Op::Read { map, .. }
            | Op::Unmap { map, .. }
            | Op::Protect { map, .. }
            | Op::Advise { map, .. }
            | Op::Invalid { map, .. }
            | Op::Poke { map, .. }
            | Op::Vmsplice { map, .. }
            | Op::Free { map, .. }
            | Op::Race { map, .. }
            | Op::Vfork { map, .. } => *map = m(*map),
            Op::Alloc { map, call, .. } => {
                *map = m(*map);
                if let AllocCall::Realloc { from } = call {
                    *from = m(*from);
                }
            }
            Op::MapAt { map, at: a, .. } => {
                *map = m(*map);
                *a = at(*a);
            }
            Op::Remap {
                map, flags, result, ..
            } => {
                *map = m(*map);
                *result = m(*result);
                flags.fixed = flags.fixed.map(at);
            }
            Op::Fork { child, .. } => *child = p(*child),
            Op::CloneVm { child, .. } => *child = p(*child),
            Op::Exit { .. } | Op::PipeRead { .. } | Op::Tune { .. } | Op::Stop { .. } => {}
            Op::Thread { .. } | Op::By { .. } | Op::End { .. } => {}
        }
        op
    }

    /// The handle an op creates (a map's, or a remap's result), if any.
    pub fn creates(&self) -> Option<MapId> {
        match *self {
            Op::Map { map, .. } | Op::MapAt { map, .. } => Some(map),
            Op::Remap { result, .. } => Some(result),
            Op::Alloc { map, .. } => Some(map),
            _ => None,
        }
    }

    /// Every mapping handle the op names (the one it acts on, a placement target, a result).
    pub fn maps(&self) -> Vec<MapId> {
        match *self {
            Op::MapAt { map, at, .. } => vec![map, at.map],
            Op::Remap {
                map, flags, result, ..
            } => {
                let mut v = vec![map, result];
                if let Some(at) = flags.fixed {
                    v.push(at.map);
                }
                v
            }
            Op::Alloc {
                map,
                call: AllocCall::Realloc { from },
                ..
            } => vec![from, map],
            _ => self.map().into_iter().collect(),
        }
    }

    /// Whether the whole observable state is compared after this op (the minimum: after
    /// every fork and exit; the end of the program is always compared too).
    pub fn snapshot_after(&self) -> bool {
        matches!(self, Op::Fork { .. } | Op::Exit { .. })
            || self.born().is_some()
            // The view that tells which pages a collapse copied (docs/SEMANTICS.md I25).
            || matches!(
                self,
                Op::Advise {
                    advice: Advice::Collapse,
                    ..
                }
            )
    }

    /// The process an op brings into the program (a `fork`'s or a `clone`'s child), if any.
    pub fn born(&self) -> Option<ProcId> {
        match *self {
            Op::Fork { child, .. } | Op::CloneVm { child, .. } => Some(child),
            _ => None,
        }
    }

    /// The thread handle the op starts (a racing thread or an op thread), if it starts one.
    pub fn starts_thread(&self) -> Option<ThreadId> {
        match *self {
            Op::Race { thread, .. } | Op::Thread { thread, .. } => Some(thread),
            _ => None,
        }
    }

    /// The same op with its thread handle renamed by `t` (ops that name no thread are
    /// unchanged).
    pub fn rename_thread(mut self, t: impl Fn(ThreadId) -> ThreadId) -> Op {
        match &mut self {
            Op::Race { thread, .. }
            | Op::Stop { thread, .. }
            | Op::Thread { thread, .. }
            | Op::By { thread, .. }
            | Op::End { thread, .. } => *thread = t(*thread),
            _ => {}
        }
        self
    }
}

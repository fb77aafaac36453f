//! One request, from its decoded form to its reply: the handles it names resolved through the
//! board (an op on a mapping that has no address is skipped), the op's work done (`calls`, or
//! a syscall here), the reply's head (and payload) built at `Scratch::at`; and the FORK itself
//! (`fork`), whose child takes its slot and socket here. Nothing here allocates.

use std::ffi::c_void;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use nix::errno::Errno;

use super::calls::{invalid_call, map, poke, read, write};
use super::fault::{FAULT_AT, FAULT_FD, PARTIAL, PENDING_PASS};
use super::snapshot::view_and_send;
use super::turn::Turn;
use super::{Scratch, inject, injected};
use crate::kernel::protocol::{BadRequest, REPLY_HEAD, Reply, Request, prot_bits, remap_bits};
use crate::program::outcome::digest;
use crate::program::{At, MapId, tail_len};

/// Writes a reply's head at the start of `area`.
#[inline]
fn put(area: &mut [u64], reply: Reply) {
    area[..REPLY_HEAD].copy_from_slice(&reply.encode());
}

/// The reply to a call that returns nothing.
#[inline]
fn status(r: Result<(), Errno>) -> Reply {
    match r {
        Ok(()) => Reply::Done { value: 0 },
        Err(e) => Reply::Failed { errno: e as i32 },
    }
}

/// The reply to a call that returns an address.
#[inline]
fn address(r: Result<u64, Errno>) -> Reply {
    match r {
        Ok(value) => Reply::Done { value },
        Err(e) => Reply::Failed { errno: e as i32 },
    }
}

#[inline]
fn call_result(ret: libc::c_int) -> Result<(), Errno> {
    if ret == 0 { Ok(()) } else { Err(Errno::last()) }
}

/// Page `page` of mapping `map`.
#[inline]
fn at(map: MapId, page: u16) -> At {
    At::page(map, page)
}

/// How an op's reply went.
pub(super) enum Done {
    /// Built at `Scratch::at` (its head and this many payload words).
    Reply(usize),
    /// Already sent on its own.
    Sent,
    /// No reply (AWAIT, PASS).
    Silent,
    /// This process is the child of the FORK just performed (its first view is sent).
    Child,
    /// The reply is built (no payload); the process passes this turn (0: none) and ends once
    /// it is sent.
    Exit(u32),
}

/// Performs one request (a request that did not decode is refused); its reply is built at
/// `s.at` unless it says otherwise.
pub(super) fn perform(fd: &mut RawFd, s: &mut Scratch, req: Result<Request, BadRequest>) -> Done {
    let ps = s.page_size;
    let board = s.copy.view().board();
    let here = s.at;
    let Ok(req) = req else {
        put(&mut s.reply[here..], Reply::Refused);
        return Done::Reply(0);
    };
    // Where a handle's page is in this process; `None`: the op names a mapping that has no
    // address, and is skipped (before anything is done).
    let resolve = |a: At| board.address(a, ps);
    let skipped = |s: &mut Scratch| {
        put(&mut s.reply[here..], Reply::Skipped);
        Done::Reply(0)
    };
    let reply = match req {
        // The allocator ops, and writes and reads of a block (`alloc.rs`).
        Request::Alloc {
            call,
            size,
            creates,
        } => match super::alloc::alloc(s, call, size, creates, here) {
            Some(Ok(n)) => return Done::Reply(n),
            Some(Err(r)) => r,
            None => return skipped(s),
        },
        Request::Free { map } => match super::alloc::free(s, map, here) {
            Some(n) => return Done::Reply(n),
            None => return skipped(s),
        },
        Request::Tune { tune } => super::alloc::tune(s, tune),
        Request::Write {
            map,
            pages,
            bytes,
            pattern,
        } if s.heap.block(map).is_some() => {
            match super::alloc::write(s, map, pages, bytes, pattern) {
                Some(r) => r,
                None => return skipped(s),
            }
        }
        Request::Read { map, pages, bytes } if s.heap.block(map).is_some() => {
            return match super::alloc::read(s, map, pages, bytes, here) {
                Some(n) => Done::Reply(n),
                None => skipped(s),
            };
        }
        Request::Await { turn } => {
            Turn(s.copy.turn).wait(turn, *fd);
            return Done::Silent;
        }
        Request::Pass { turn } => {
            PENDING_PASS.store(0, Ordering::Relaxed);
            Turn(s.copy.turn).pass(turn);
            return Done::Silent;
        }
        Request::Map {
            kind,
            pages,
            tail,
            creates,
            args,
        } => {
            let len = tail_len(pages, tail, ps);
            // Never where a relative's allocator sits (`alloc.rs`).
            super::alloc::hold_allocator_ranges(s);
            let r = map(kind, len, None, args, s.zero_fd, ps);
            super::alloc::release_allocator_ranges(s);
            board.enter(creates, &r);
            address(r)
        }
        Request::MapAt {
            kind,
            pages,
            tail,
            creates,
            at: target,
            how,
            args,
        } => {
            let Some(target) = resolve(target) else {
                return skipped(s);
            };
            let len = tail_len(pages, tail, ps);
            // A hint leaves the place to the kernel; a fixed address lies in a handle's
            // window, where the allocator never is.
            if how == crate::program::PlaceHow::Hint {
                super::alloc::hold_allocator_ranges(s);
            }
            let r = map(kind, len, Some((target, how)), args, s.zero_fd, ps);
            super::alloc::release_allocator_ranges(s);
            board.enter(creates, &r);
            address(r)
        }
        Request::Protect {
            map,
            pages,
            tail,
            prot,
        } => {
            let Some(first) = resolve(at(map, pages.start)) else {
                return skipped(s);
            };
            let len = tail_len(pages.len(), tail, ps);
            // SAFETY: mprotect on the program's own mappings; Rust code holds no references
            // into them across ops.
            status(call_result(unsafe {
                libc::mprotect(first as *mut c_void, len, prot_bits(prot))
            }))
        }
        Request::Advise {
            map,
            pages,
            tail,
            advice,
        } => {
            let Some(first) = resolve(at(map, pages.start)) else {
                return skipped(s);
            };
            // An empty range is a length of 0 (docs/SEMANTICS.md F14).
            let len = tail_len(pages.len(), tail, ps);
            // SAFETY: madvise on the program's own mappings (the harness's are never named:
            // ranges lie inside program handles).
            status(call_result(unsafe {
                libc::madvise(first as *mut c_void, len, advice.number())
            }))
        }
        Request::Remap {
            map,
            old,
            old_tail,
            new_pages,
            new_tail,
            creates,
            flags,
        } => {
            let Some(first) = resolve(at(map, old.start)) else {
                return skipped(s);
            };
            let target = match flags.fixed {
                None => 0,
                Some(t) => match resolve(t) {
                    Some(a) => a,
                    None => return skipped(s),
                },
            };
            // Through libc's variadic wrapper, always with the fifth argument (0 when unused):
            // without it the kernel may read a stale register (docs/SEMANTICS.md K12, G6).
            // A move to where the kernel chooses; growing in place is not hindered.
            if flags.maymove && flags.fixed.is_none() {
                let grown =
                    tail_len(old.len(), old_tail, ps).max(tail_len(new_pages, new_tail, ps));
                super::alloc::hold_allocator_ranges_except(
                    s,
                    (first, first.saturating_add(grown as u64)),
                );
            }
            // SAFETY: mremap of the program's own mappings; a FIXED target lies inside a
            // program handle's range.
            let r = unsafe {
                libc::mremap(
                    first as *mut c_void,
                    tail_len(old.len(), old_tail, ps),
                    tail_len(new_pages, new_tail, ps),
                    remap_bits(flags),
                    target as *mut c_void,
                )
            };
            let r = if r == libc::MAP_FAILED {
                Err(Errno::last())
            } else {
                Ok(r as u64)
            };
            super::alloc::release_allocator_ranges(s);
            board.enter(creates, &r);
            address(r)
        }
        Request::Vmsplice { at: page } => {
            let Some(first) = resolve(page) else {
                return skipped(s);
            };
            let iov = libc::iovec {
                iov_base: first as *mut c_void,
                iov_len: ps,
            };
            // SAFETY: vmsplice reads the page through get_user_pages; the kernel checks it.
            let n = unsafe { libc::vmsplice(s.pipe[1], &iov, 1, 0) };
            status(if n == ps as isize {
                Ok(())
            } else if n < 0 {
                Err(Errno::last())
            } else {
                Err(Errno::EIO)
            })
        }
        Request::PipeRead => {
            while injected(inject::HANG_PIPE_READ) {
                // SAFETY: pause only waits for a signal.
                unsafe { libc::pause() };
            }
            // SAFETY: reading into our own buffer of at least a page.
            let n = unsafe { libc::read(s.pipe[0], s.copy.buf().as_mut_ptr() as *mut c_void, ps) };
            if n == ps as isize {
                let d = digest(&s.copy.buf()[..ps]);
                let reply = &mut s.reply[here..];
                reply[REPLY_HEAD] = d;
                put(reply, Reply::Digests { count: 1 });
                return Done::Reply(1);
            }
            status(Err(if n < 0 { Errno::last() } else { Errno::EIO }))
        }
        Request::Race {
            at: page,
            kind,
            thread,
        } => {
            let Some(first) = resolve(page) else {
                return skipped(s);
            };
            let addr = if kind.on_word() {
                first + ps as u64 - crate::program::RACE_WORD as u64
            } else {
                first
            };
            match s.racer.start(addr, kind, thread) {
                Ok(()) => Reply::Done { value: 0 },
                Err(errno) => Reply::Failed { errno },
            }
        }
        // A vfork child that stores and exits (docs/SEMANTICS.md T5, `vfork.rs`).
        Request::Vfork {
            map,
            pages,
            bytes,
            pattern,
        } => {
            let Some(base) = resolve(at(map, 0)) else {
                return skipped(s);
            };
            let job = super::vfork::Job {
                addr: base.wrapping_add(pages.start as u64 * ps as u64),
                pages: pages.len() as usize,
                bytes,
                pattern,
                origin: base,
                page_size: ps,
            };
            match super::vfork::vfork(&job) {
                super::vfork::Ended::Exited => Reply::Done { value: 0 },
                super::vfork::Ended::Failed(errno) => Reply::Failed { errno },
                super::vfork::Ended::Killed { signal, code, addr } => {
                    let reply = &mut s.reply[here..];
                    reply[REPLY_HEAD..REPLY_HEAD + 3].copy_from_slice(&[
                        signal as u64,
                        code as u32 as u64,
                        addr,
                    ]);
                    put(reply, Reply::Digests { count: 3 });
                    return Done::Reply(3);
                }
            }
        }
        // Op threads (`op_thread.rs`, docs/SEMANTICS.md T20).
        // Op threads' own requests: `op_thread::perform_routed` performs them before this.
        Request::Thread { .. } | Request::By { .. } | Request::End { .. } => Reply::Refused,
        Request::Stop { thread } => {
            let (rounds, seen) = s.racer.stop(thread);
            let reply = &mut s.reply[here..];
            reply[REPLY_HEAD] = rounds;
            // A reader's stop says what it saw too (T10).
            let n = match seen {
                Some(seen) => {
                    reply[REPLY_HEAD + 1..REPLY_HEAD + 4].copy_from_slice(&seen);
                    4
                }
                None => 1,
            };
            put(reply, Reply::Digests { count: n });
            return Done::Reply(n);
        }
        Request::Poke {
            map,
            pages,
            bytes,
            pattern,
            via,
        } => {
            let Some(base) = resolve(at(map, 0)) else {
                return skipped(s);
            };
            let first = base.wrapping_add(pages.start as u64 * ps as u64);
            let n = pages.len() as usize;
            status(poke(s.copy.buf(), first, n, bytes, pattern, base, via, ps))
        }
        Request::Invalid { map, call, bad } => {
            let Some(base) = resolve(at(map, 0)) else {
                return skipped(s);
            };
            status(invalid_call(call, bad, base, ps))
        }
        Request::Write {
            map,
            pages,
            bytes,
            pattern,
        } => {
            let Some(base) = resolve(at(map, 0)) else {
                return skipped(s);
            };
            if s.is_root || !injected(inject::DROP_CHILD_WRITE) {
                let first = base.wrapping_add(pages.start as u64 * ps as u64);
                write(first, pages.len() as usize, bytes, pattern, base, ps);
            }
            Reply::Done { value: 0 }
        }
        Request::Read { map, pages, bytes } => {
            let Some(first) = resolve(at(map, pages.start)) else {
                return skipped(s);
            };
            let reply = &mut s.reply[here..];
            let n = read(reply, first, pages.len() as usize, bytes, ps);
            put(reply, Reply::Digests { count: n });
            return Done::Reply(n);
        }
        Request::Fork {
            child,
            direct_reads,
            barrier,
        } => {
            // The child's first view takes part in the snapshot after the fork
            // (`Board::barrier`).
            s.direct_reads = direct_reads;
            let racing = s.racer.running();
            // Only a racing process reads the thread's counter (a single-threaded fork touches
            // nothing more than it did).
            let before = if racing { s.racer.counter() } else { 0 };
            let reply = match fork(fd, s, child.0 as usize) {
                Forked::Child => {
                    // Every fork is followed by a snapshot of every live process, the child's
                    // first: it sends its view unasked, before it reads its first request.
                    view_and_send(*fd, s, barrier);
                    return Done::Child;
                }
                Forked::Parent(pid) if racing => {
                    // The counter just after fork returned, then the pid and both counters
                    // (docs/SEMANTICS.md T2).
                    let after = s.racer.counter();
                    let reply = &mut s.reply[here..];
                    reply[REPLY_HEAD..REPLY_HEAD + 3].copy_from_slice(&[pid as u64, before, after]);
                    put(reply, Reply::Digests { count: 3 });
                    return Done::Reply(3);
                }
                Forked::Parent(pid) => Reply::Done { value: pid as u64 },
                Forked::Failed(e) => Reply::Failed { errno: e as i32 },
                Forked::NoSocket => Reply::Refused,
            };
            put(&mut s.reply[here..], reply);
            return Done::Reply(0);
        }
        Request::PrepareClones => {
            super::clone_vm::prepare(s);
            return Done::Silent;
        }
        // A process in this one's address space (docs/SEMANTICS.md T30, `clone_vm.rs`).
        Request::CloneVm {
            child,
            direct_reads,
            barrier,
        } => {
            s.direct_reads = direct_reads;
            match super::clone_vm::clone_vm(*fd, s, child.0 as usize, barrier) {
                super::clone_vm::Cloned::Parent(pid) => Reply::Done { value: pid as u64 },
                super::clone_vm::Cloned::Failed(errno) => Reply::Failed { errno },
                super::clone_vm::Cloned::Refused => Reply::Refused,
            }
        }
        Request::Exit { pass } => {
            put(&mut s.reply[here..], Reply::Done { value: 0 });
            return Done::Exit(pass);
        }
        Request::Unmap { map, pages, tail } => {
            let Some(first) = resolve(at(map, pages.start)) else {
                return skipped(s);
            };
            let len = tail_len(pages.len(), tail, ps);
            status(match NonNull::new(first as *mut c_void) {
                // SAFETY: unmapping memory the program mapped; the worker holds no references
                // into program mappings across ops.
                Some(p) => unsafe { nix::sys::mman::munmap(p, len) },
                None => Err(Errno::EINVAL),
            })
        }
        Request::Snapshot {
            direct_reads,
            smaps,
            barrier,
        } => {
            s.direct_reads = direct_reads;
            s.smaps = smaps;
            view_and_send(*fd, s, barrier);
            s.smaps = false;
            return Done::Sent;
        }
        Request::Dump { at: page } => {
            let Some(first) = resolve(page) else {
                return skipped(s);
            };
            let reply = &mut s.reply[here..];
            let words = ps / 8;
            let src = first as *const u64;
            for i in 0..words.min(reply.len() - REPLY_HEAD) {
                // SAFETY: reading a page of the process's own memory; a fault is reported by
                // the handler (the page was not readable).
                reply[REPLY_HEAD + i] = unsafe { std::ptr::read_volatile(src.add(i)) };
                PARTIAL.store(i + 1, Ordering::Relaxed);
            }
            put(reply, Reply::Page { words });
            return Done::Reply(words);
        }
        // Only the zygote forks roots.
        Request::SpawnRoot => Reply::Refused,
    };
    put(&mut s.reply[here..], reply);
    Done::Reply(0)
}

/// What `fork` did.
enum Forked {
    /// This is the new process (its slot and socket taken).
    Child,
    /// This is the parent; the child's pid.
    Parent(i32),
    Failed(Errno),
    /// The coordinator passed no socket for the child (a harness error).
    NoSocket,
}

/// Forks; the child takes `child` (its handle number) as its slot, and as its socket the one
/// the coordinator passed with this message (made by the coordinator, so that it can send the
/// child its requests before the fork has even run).
fn fork(fd: &mut RawFd, s: &mut Scratch, child: usize) -> Forked {
    let theirs = std::mem::replace(&mut s.passed_fd, -1);
    if theirs < 0 {
        return Forked::NoSocket;
    }
    // SAFETY: the executor is single-threaded, and after fork the child only runs this loop,
    // which allocates nothing.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: closing the parent's socket, which this process does not use.
            unsafe { libc::close(*fd) };
            *fd = theirs;
            s.is_root = false;
            s.racer.forget();
            s.op_threads.forget();
            s.maps.after_fork();
            // A fork handed to an op thread: the allocator's mappings of the fork are noted
            // (`op_thread.rs`).
            if s.op_threads.watch_fork {
                s.op_threads.watch_fork = false;
                // The op thread that forked was kept beside its worker: back to the job's home.
                crate::kernel::cpus::rehome();
                // The allocator's state for the child's only thread (its arena after the fork)
                // is made now, in the watch (`op_thread.rs`).
                // SAFETY: a malloc and its free.
                unsafe { libc::free(libc::malloc(1)) };
                super::alloc::watch(s, false, true);
            }
            s.take_slot(child);
            s.at = 0;
            s.set_unsent(0);
            // The parent's message passes the turn after the fork, not this process; and a
            // fault in the first view reports from the start of this process's own reply area
            // (the parent's place in its own area means nothing here).
            PENDING_PASS.store(0, Ordering::Relaxed);
            FAULT_AT.store(0, Ordering::Relaxed);
            PARTIAL.store(0, Ordering::Relaxed);
            FAULT_FD.store(*fd, Ordering::Relaxed);
            Forked::Child
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            // SAFETY: the child's socket is the child's; this process does not use it.
            unsafe { libc::close(theirs) };
            Forked::Parent(child.as_raw())
        }
        Err(e) => {
            // SAFETY: as above.
            unsafe { libc::close(theirs) };
            Forked::Failed(e)
        }
    }
}

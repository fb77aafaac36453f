//! Sending a program: each step of the schedule goes to its process as one message of
//! requests (`protocol::Request`), all before any reply is read; ops become requests here.
//! Nothing here waits for a worker: a step whose process is gone is not sent, and its
//! collection says so.

use std::os::fd::{AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::MsgFlags;

use super::{Coordinator, Unborn};
use crate::kernel::executor::Worker;
use crate::kernel::executor::schedule::Step;
use crate::kernel::protocol::{Barrier, ByteRange, REQ_WORDS, Request};
use crate::kernel::worker;
use crate::program::{At, Op, Span};

/// The request for `op`, for a page size of `ps` bytes. Mappings are named by handle: the
/// worker resolves them when it runs the op, so that requests can be sent before the maps they
/// name ran. `direct_reads` says how a fork's child reads its first view; `pass` is the turn
/// an exit passes on its way out; `barrier`, the snapshot after a fork, which the child's
/// first view joins.
fn request(op: &Op, ps: usize, direct_reads: bool, pass: u32, barrier: Barrier) -> Request {
    let bytes = |span: Span| {
        let b = span.bytes_in_page(ps);
        ByteRange {
            start: b.start as u32,
            end: b.end as u32,
        }
    };
    match *op {
        Op::Map {
            map,
            kind,
            pages,
            tail,
            args,
            ..
        } => Request::Map {
            kind,
            pages,
            tail,
            creates: map,
            args,
        },
        Op::MapAt {
            map,
            kind,
            pages,
            tail,
            args,
            how,
            at,
            ..
        } => Request::MapAt {
            kind,
            pages,
            tail,
            creates: map,
            at,
            how,
            args,
        },
        Op::Write {
            map, span, pattern, ..
        } => Request::Write {
            map,
            pages: span.page_range(),
            bytes: bytes(span),
            pattern,
        },
        Op::Vfork {
            map, span, pattern, ..
        } => Request::Vfork {
            map,
            pages: span.page_range(),
            bytes: bytes(span),
            pattern,
        },
        Op::Read { map, span, .. } => Request::Read {
            map,
            pages: span.page_range(),
            bytes: bytes(span),
        },
        Op::Poke {
            map,
            span,
            pattern,
            via,
            ..
        } => Request::Poke {
            map,
            pages: span.page_range(),
            bytes: bytes(span),
            pattern,
            via,
        },
        Op::Fork { child, .. } => Request::Fork {
            child,
            direct_reads,
            barrier,
        },
        Op::CloneVm { child, .. } => Request::CloneVm {
            child,
            direct_reads,
            barrier,
        },
        Op::Exit { .. } => Request::Exit { pass },
        Op::Vmsplice { map, page, .. } => Request::Vmsplice {
            at: At::page(map, page),
        },
        Op::PipeRead { .. } => Request::PipeRead,
        Op::Alloc {
            map, call, size, ..
        } => Request::Alloc {
            call,
            size,
            creates: map,
        },
        Op::Free { map, .. } => Request::Free { map },
        Op::Tune { tune, .. } => Request::Tune { tune },
        Op::Race {
            map,
            page,
            kind,
            thread,
            ..
        } => Request::Race {
            at: At::page(map, page),
            kind,
            thread: thread.0,
        },
        Op::Stop { thread, .. } => Request::Stop { thread: thread.0 },
        Op::Thread { thread, .. } => Request::Thread { thread: thread.0 },
        Op::By { thread, .. } => Request::By { thread: thread.0 },
        Op::End { thread, .. } => Request::End { thread: thread.0 },
        Op::Unmap {
            map, pages, tail, ..
        } => Request::Unmap { map, pages, tail },
        Op::Protect {
            map,
            pages,
            tail,
            prot,
            ..
        } => Request::Protect {
            map,
            pages,
            tail,
            prot,
        },
        Op::Advise {
            map,
            pages,
            tail,
            advice,
            ..
        } => Request::Advise {
            map,
            pages,
            tail,
            advice,
        },
        Op::Remap {
            map,
            old,
            old_tail,
            new_pages,
            new_tail,
            flags,
            result,
            ..
        } => Request::Remap {
            map,
            old,
            old_tail,
            new_pages,
            new_tail,
            creates: result,
            flags,
        },
        Op::Invalid { map, call, bad, .. } => Request::Invalid { map, call, bad },
    }
}

impl Coordinator {
    /// Sends step `n` of the schedule to its process (the root, or a child's socket made in
    /// advance); a FORK's message carries the child's socket. A step of a process that is
    /// gone or never exists is not sent (its collection says so).
    pub(super) fn dispatch(
        &mut self,
        ops: &[Op],
        steps: &[Step],
        n: usize,
        workers: &[Option<Worker>],
        unborn: &mut Unborn,
    ) -> Result<(), String> {
        let fd_of = |p: usize, unborn: &Unborn| {
            workers[p]
                .as_ref()
                .map(|w| w.fd.as_raw_fd())
                .or_else(|| unborn[p].as_ref().map(|(ours, _)| ours.as_raw_fd()))
        };
        let mut words: Vec<u64> = Vec::new();
        let push = |words: &mut Vec<u64>, req: Request| words.extend_from_slice(&req.encode());
        match &steps[n] {
            Step::Batch {
                ops: range,
                wait,
                pass,
                live,
            } => {
                let p = ops[range.start].proc().0 as usize;
                let Some(fd) = fd_of(p, unborn).filter(|_| *live) else {
                    return Ok(());
                };
                // A program with a clone: the root makes the children's kits first.
                if n == 0 && ops.iter().any(|o| matches!(o, Op::CloneVm { .. })) {
                    push(&mut words, Request::PrepareClones);
                }
                if *wait != 0 {
                    push(&mut words, Request::Await { turn: *wait });
                }
                // The snapshot after a fork, which the child's first view joins.
                let barrier = steps
                    .get(n + 1)
                    .map_or_else(Barrier::default, Step::barrier);
                let mut passed = None;
                // A fork's child reads its first view right after the batch.
                let direct_reads = range.end <= self.first_unsafe;
                for op in &ops[range.clone()] {
                    // An exit passes the batch's turn on its way out (the views after it
                    // start).
                    let ps = self.page_size as usize;
                    let req = request(op, ps, direct_reads, *pass, barrier);
                    push(&mut words, req);
                    if let Some(child) = op.born() {
                        passed = unborn[child.0 as usize]
                            .as_mut()
                            .and_then(|(_, theirs)| theirs.take());
                    }
                }
                // An exit's turn is passed by the coordinator, once the process is gone.
                if *pass != 0 && !matches!(ops[range.end - 1], Op::Exit { .. }) {
                    push(&mut words, Request::Pass { turn: *pass });
                }
                // Sent, the child's end is the parent's (and then the child's) alone: we must
                // not hold it, or we would never see the child's end of file.
                self.send_message(fd, &words, passed.as_ref().map(|f| f.as_raw_fd()))?;
                drop(passed);
            }
            step @ Step::Views {
                after,
                serial,
                viewers,
                child,
                ..
            } => {
                // smaps only at the end (I11: its cost), where the claims it checks are decided
                // (an object freed with its last mapper, I14).
                let smaps = !steps[n + 1..]
                    .iter()
                    .any(|s| matches!(s, Step::Batch { .. }));
                for &q in viewers {
                    if Some(q) == *child {
                        // It sends its first view unasked.
                        continue;
                    }
                    let Some(fd) = fd_of(q, unborn) else {
                        continue;
                    };
                    words.clear();
                    push(&mut words, Request::Await { turn: *serial });
                    push(
                        &mut words,
                        Request::Snapshot {
                            direct_reads: *after < self.first_unsafe,
                            smaps,
                            barrier: step.barrier(),
                        },
                    );
                    self.send_message(fd, &words, None)?;
                }
            }
            Step::Dump { dump, wait, pass } => {
                let p = dump.proc.0 as usize;
                let Some(fd) = fd_of(p, unborn) else {
                    return Ok(());
                };
                push(&mut words, Request::Await { turn: *wait });
                push(
                    &mut words,
                    Request::Dump {
                        at: At::page(dump.map, dump.page),
                    },
                );
                push(&mut words, Request::Pass { turn: *pass });
                self.send_message(fd, &words, None)?;
            }
        }
        Ok(())
    }

    /// Sends one message of requests (split into several if it has more than a worker takes
    /// at once), passing `pass_fd` with the first; `false` if the peer is already gone (not an
    /// error: the step's collection finds out).
    pub(super) fn send_message(
        &mut self,
        fd: RawFd,
        words: &[u64],
        pass_fd: Option<RawFd>,
    ) -> Result<bool, String> {
        let mut pass_fd = pass_fd;
        for chunk in words.chunks(worker::MAX_BATCH * REQ_WORDS) {
            // SAFETY: viewing u64 words as bytes of the same length (native order, as the
            // worker, a fork of this process, reads them).
            let bytes =
                unsafe { std::slice::from_raw_parts(chunk.as_ptr() as *const u8, chunk.len() * 8) };
            let iov = [std::io::IoSlice::new(bytes)];
            let fds: Vec<RawFd> = pass_fd.take().into_iter().collect();
            let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
            let cmsgs: &[nix::sys::socket::ControlMessage] =
                if fds.is_empty() { &[] } else { &cmsg };
            loop {
                match nix::sys::socket::sendmsg::<()>(fd, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
                {
                    Ok(_) => break,
                    Err(Errno::EINTR) => continue,
                    Err(Errno::EPIPE) | Err(Errno::ECONNRESET) => return Ok(false),
                    Err(e) => return Err(format!("send to worker: {e}")),
                }
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::generate::{GenConfig, random_program};

    /// Every op the generator makes has a request, on every page size, that travels whole.
    #[test]
    fn generated_ops_have_requests_that_round_trip() {
        let barrier = Barrier {
            serial: 3,
            mask: 0b101,
            next: 4,
            late: 0b1,
        };
        for index in 0..3000 {
            let program = random_program(7, index, GenConfig::default());
            for op in &program.ops {
                for ps in [4096, 16 << 10, 64 << 10] {
                    let r = request(op, ps, index % 2 == 0, 9, barrier);
                    assert_eq!(Request::decode(&r.encode()), Ok(r), "{op}");
                }
            }
        }
    }
}

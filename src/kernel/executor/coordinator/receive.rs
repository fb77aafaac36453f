//! Taking replies off the workers' sockets: the coordinator's receive buffer holds the last
//! message (a worker answers a batch at once), and hands out its replies one at a time; a
//! worker that answers nothing within the op deadline is hung, and what it had built but not
//! sent is salvaged from its slot. It never waits longer than the op deadline for a message,
//! and never reads a reply twice.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

use super::Coordinator;
use crate::kernel::executor::Worker;
use crate::kernel::protocol::{REPLY_HEAD, Reply};

/// What came from a worker.
pub(super) enum Received {
    /// A reply (its payload, if any, is `Coordinator::payload`), and a passed fd if any.
    Msg { reply: Reply, fd: Option<OwnedFd> },
    /// End of file: the process is gone without a word.
    Gone,
    /// No reply within the op deadline.
    Hung,
}

impl Coordinator {
    /// The next reply from the worker at `fd`: the next one of its last message if that had
    /// more (a worker replies to a batch's ops in one message), else the first of a new
    /// message. Each worker socket carries SO_RCVTIMEO = the op deadline, so a hung worker
    /// shows as EAGAIN, without a poll per message.
    pub(super) fn recv(&mut self, fd: RawFd) -> Result<Received, String> {
        if self.next_reply >= self.buf_len && self.salvaged == Some(fd) {
            return Ok(Received::Hung);
        }
        if self.next_reply < self.buf_len {
            if self.buf_fd != fd {
                return Err(format!(
                    "replies of fd {} left unread before a reply from fd {fd}",
                    self.buf_fd
                ));
            }
            return self.next_from_buffer(None);
        }
        let buf: &mut [u8] = {
            let len = self.buf.len() * 8;
            // SAFETY: viewing the u64 buffer as bytes of the same length; u8 has no alignment.
            unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr() as *mut u8, len) }
        };
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        // No spinning before sleeping: with two CPUs a spinning coordinator takes the CPU
        // that the worker it waits for (or the workers looking at themselves in parallel)
        // need. Measured with `cowcheck bench --programs 4000`: 1.63 ms per program without,
        // 2.0 ms with a 200 us spin (the spin paid off before snapshots went parallel).
        let (n, passed) = loop {
            let mut iov = [std::io::IoSliceMut::new(&mut *buf)];
            match recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(msg) => {
                    let mut passed = None;
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(fds) = c {
                                for f in fds {
                                    // SAFETY: the kernel just gave us this fd.
                                    let owned = unsafe { OwnedFd::from_raw_fd(f) };
                                    passed.get_or_insert(owned);
                                }
                            }
                        }
                    }
                    break (msg.bytes, passed);
                }
                // A worker that died with requests still unread in its queue leaves a one-shot
                // ECONNRESET on our socket, which the kernel reports before the replies it sent
                // before dying (net/core/datagram.c checks sock_error() first): take it and
                // read on; end of file follows the replies.
                Err(Errno::EINTR) | Err(Errno::ECONNRESET) => continue,
                Err(Errno::EAGAIN) => return Ok(Received::Hung),
                Err(e) => return Err(format!("recvmsg from worker: {e}")),
            }
        };
        if n == 0 {
            return Ok(Received::Gone);
        }
        if n % 8 != 0 {
            return Err(format!("reply of {n} bytes"));
        }
        self.buf_len = n / 8;
        self.buf_fd = fd;
        self.next_reply = 0;
        self.next_from_buffer(passed)
    }

    /// A worker answered no message within the op deadline: it is killed, and the replies it
    /// had built but not sent (the ops of its batch that did finish) are read from its slot,
    /// so that the hang is named at the op that hung. Returns the first of them, or `Hung`.
    pub(super) fn salvage(
        &mut self,
        p: usize,
        fd: RawFd,
        workers: &[Option<Worker>],
    ) -> Result<Received, String> {
        if let Some(w) = &workers[p] {
            let _ = kill(w.pid, Signal::SIGKILL);
        }
        if self.salvaged == Some(fd) {
            // Its unsent replies were read already: this is the op it hung in.
            return Ok(Received::Hung);
        }
        self.salvaged = Some(fd);
        let words = self.slots.unsent(p);
        if words.is_empty() {
            return Ok(Received::Hung);
        }
        self.buf[..words.len()].copy_from_slice(&words);
        self.buf_len = words.len();
        self.buf_fd = fd;
        self.next_reply = 0;
        self.next_from_buffer(None)
    }

    /// Decodes the reply at `next_reply` (a head, then its payload).
    fn next_from_buffer(&mut self, fd: Option<OwnedFd>) -> Result<Received, String> {
        let at = self.next_reply;
        if at + REPLY_HEAD > self.buf_len {
            return Err(format!("short reply of {} words", self.buf_len - at));
        }
        let mut head = [0u64; REPLY_HEAD];
        head.copy_from_slice(&self.buf[at..at + REPLY_HEAD]);
        let reply = Reply::decode(&head).map_err(|e| e.to_string())?;
        let payload = reply.payload_words();
        if payload > self.buf_len - at - REPLY_HEAD {
            return Err(format!("a reply's payload of {payload} words is cut short"));
        }
        self.reply_at = at;
        self.next_reply = at + REPLY_HEAD + payload;
        Ok(Received::Msg { reply, fd })
    }

    /// The payload of the reply last returned by `recv` (`Reply::payload_words` words).
    pub(super) fn payload(&self) -> &[u64] {
        &self.buf[self.reply_at + REPLY_HEAD..self.next_reply]
    }
}

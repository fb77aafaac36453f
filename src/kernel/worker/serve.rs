//! The worker loop: a message of requests at a time, each decoded onto the stack and performed
//! in order, their replies gathered in the reply area and sent back as one message. This file
//! owns the message: what the fault handler must know before each op, when replies are sent,
//! and how a message ends (a fork's child, an exit). It allocates nothing.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use super::Scratch;
use super::fault::{self, FAULT_AT, FAULT_FD, FAULT_REPLY, PARTIAL, PENDING_PASS, TURN};
use super::op_thread::perform_routed;
use super::perform::Done;
use super::slots::REPLY_AREA;
use super::socket::{recv_requests, send_reply};
use super::turn::Turn;
use crate::kernel::protocol::{BadRequest, REPLY_HEAD, REQ_WORDS, Request};

/// The worker loop. Never returns: the process ends by `exit`, by a fatal signal, or when the
/// coordinator's end of the socket closes.
///
/// A message carries one or more requests (consecutive ops of this process, perhaps ending
/// with SNAPSHOT); they are performed in order and their replies go back as one message, so
/// that the coordinator wakes once per batch rather than once per op. A SNAPSHOT reply goes
/// alone (it is large): what came before it is sent first. A fatal signal sends what was built
/// so far with the fault's report after it.
pub fn serve(mut fd: RawFd, s: &mut Scratch) -> ! {
    // What a clone child runs (`clone_vm`).
    let _ = super::clone_vm::ENTRY.set(serve);
    fault::install_fault_handler();
    TURN.store(s.copy.turn as *mut AtomicU32, Ordering::Relaxed);
    FAULT_FD.store(fd, Ordering::Relaxed);
    FAULT_REPLY.store(s.reply.ptr, Ordering::Relaxed);
    loop {
        let Some(n) = recv_requests(fd, s) else {
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(0) };
        };
        s.at = 0;
        s.set_unsent(0);
        let pass = (0..n)
            .rev()
            .find_map(|k| request(s, k).ok().and_then(|r| r.passes()))
            .unwrap_or(0);
        PENDING_PASS.store(pass, Ordering::Relaxed);
        for k in 0..n {
            let req = request(s, k);
            let alone = matches!(req, Ok(Request::Snapshot { .. }));
            let max = req.as_ref().map_or(0, |r| r.max_payload(s.page_size));
            if alone || s.at + REPLY_HEAD + max > REPLY_AREA {
                flush(fd, s);
            }
            FAULT_AT.store(s.at, Ordering::Relaxed);
            PARTIAL.store(0, Ordering::Relaxed);
            match perform_routed(&mut fd, s, req) {
                Done::Reply(payload) => {
                    s.at += REPLY_HEAD + payload;
                    s.set_unsent(s.unsent + 1);
                }
                Done::Sent | Done::Silent => {}
                // The rest of the message was the parent's.
                Done::Child => break,
                Done::Exit(turn) => {
                    s.at += REPLY_HEAD;
                    flush(fd, s);
                    // The others may look at themselves while this process is torn down (that
                    // changes nothing they can see); the next op waits for the coordinator,
                    // which sees this process gone first. Not while the physical channel runs:
                    // until exit_mm is done this process still maps its pages, and the views'
                    // pagemap words (the exclusive bit) would depend on timing (I8); the
                    // coordinator passes the turn once it has seen the end of file.
                    if !super::physical::pagemap_on() {
                        Turn(s.copy.turn).pass(turn);
                    }
                    // SAFETY: _exit ends the process without running any user-space teardown.
                    unsafe { libc::_exit(0) };
                }
            }
        }
        flush(fd, s);
    }
}

/// The worker loop of a fork's child made by an op thread (`op_thread.rs`): the rest of the
/// parent's message is not the child's; what was built is sent, then the loop.
pub(super) fn serve_child(fd: RawFd, s: &mut Scratch) -> ! {
    flush(fd, s);
    serve(fd, s)
}

/// Request `k` of the message in the request area.
#[inline]
fn request(s: &Scratch, k: usize) -> Result<Request, BadRequest> {
    let mut words = [0u64; REQ_WORDS];
    words.copy_from_slice(&s.requests[k * REQ_WORDS..(k + 1) * REQ_WORDS]);
    Request::decode(&words)
}

/// Sends the replies built so far, as one message.
pub(super) fn flush(fd: RawFd, s: &mut Scratch) {
    if s.at > 0 {
        // Not unsent any more once handed to the kernel: if the send itself hangs (as under
        // an emulator), the coordinator must not read these replies a second time from the
        // slot (they may well have arrived).
        s.set_unsent(0);
        send_reply(fd, &s.reply[..s.at], None);
        s.at = 0;
    }
}

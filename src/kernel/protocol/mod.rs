//! Wire formats of the kernel side, each message's layout documented once, beside the code that
//! encodes and decodes it. Two links:
//!
//! - coordinator <-> worker (`request`, `reply`): a message of fixed-size requests (`Request`,
//!   `REQ_WORDS` u64 words each: one per op, plus AWAIT and PASS of turns) one way, a message of
//!   replies (`Reply`, a head of `REPLY_HEAD` words then its payload) the other, over a
//!   `SOCK_SEQPACKET` socket pair per worker (message boundaries kept, end of file when the
//!   other side is gone, and a child's socket passed to its parent with the FORK). Fixed words
//!   because workers allocate nothing: they receive words into their slot and decode each onto
//!   their stack. The order between workers is kept by turns on the tree's shared board
//!   (`worker::Turn`), not by the coordinator.
//! - front (the `cowcheck` process) <-> executor (`front`): length-prefixed frames over the
//!   executor's stdin and stdout; a request carries the program as its text trace (the one
//!   format), the reply carries outcomes, snapshots and page dumps in a small binary encoding.
//!
//! `region` is the word form of a mapping in a view, shared by both links.
//!
//! This module only encodes and decodes: it never makes a syscall, and it holds no `unsafe`.

mod alloc;
mod codes;
mod decode;
pub mod front;
pub mod region;
pub mod reply;
pub mod request;

#[cfg(test)]
mod tests;

pub use crate::program::outcome::{DumpRequest, KernelRun};
pub use codes::{prot_bits, remap_bits};
pub use front::{
    Dec, DecodeError, Enc, FrontRequest, Hello, decode_request, encode_fork_bench, encode_request,
    features_bits, features_from_bits, read_frame, write_frame,
};
pub use region::{region_flags, region_from_words};
pub use reply::{BadReply, REPLY_HEAD, REPLY_PAYLOAD, Reply};
pub use request::{BadRequest, Barrier, ByteRange, REQ_WORDS, Request};

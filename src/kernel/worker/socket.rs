//! A worker's socket: one message of requests in, into the slot's request area (with the
//! socket passed along, if any), and one message of replies out (passing a socket, if asked),
//! both through libc directly, with control buffers on the stack: nothing here allocates.

use std::ffi::c_void;
use std::os::fd::RawFd;

use super::Scratch;
use crate::kernel::protocol::REQ_WORDS;

/// Receives one message of requests into the slot's request area, and the socket passed
/// with it if any (`Scratch::passed_fd`); how many requests, or `None` when the coordinator
/// is gone (end of file or a dead socket).
pub(super) fn recv_requests(fd: RawFd, s: &mut Scratch) -> Option<usize> {
    let len = s.requests.len() * 8;
    // Room for one SCM_RIGHTS control message carrying one fd, on the stack.
    let mut cmsg_space = [0u64; 8];
    loop {
        let mut iov = libc::iovec {
            iov_base: s.requests.as_mut_ptr() as *mut c_void,
            iov_len: len,
        };
        // SAFETY: msghdr points at live buffers: the request area (`len` bytes) and the stack
        // control buffer, whose 64 bytes exceed CMSG_SPACE(sizeof(int)).
        let (n, passed) = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cmsg_space.as_mut_ptr() as *mut c_void;
            msg.msg_controllen = std::mem::size_of_val(&cmsg_space) as _;
            let n = libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC);
            let mut passed = -1;
            if n > 0 {
                let c = libc::CMSG_FIRSTHDR(&msg);
                if !c.is_null()
                    && (*c).cmsg_level == libc::SOL_SOCKET
                    && (*c).cmsg_type == libc::SCM_RIGHTS
                {
                    passed = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
                }
            }
            (n, passed)
        };
        if passed >= 0 {
            if s.passed_fd >= 0 {
                // SAFETY: an fd passed to this process and never used.
                unsafe { libc::close(s.passed_fd) };
            }
            s.passed_fd = passed;
        }
        if n > 0 && (n as usize).is_multiple_of(REQ_WORDS * 8) {
            return Some(n as usize / (REQ_WORDS * 8));
        }
        if n < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
            continue;
        }
        return None;
    }
}

/// Sends `reply` (one or more replies, each a head and its payload) as one message, passing
/// `pass_fd` along if given.
pub(super) fn send_reply(fd: RawFd, reply: &[u64], pass_fd: Option<RawFd>) {
    let len = reply.len() * 8;
    let mut iov = libc::iovec {
        iov_base: reply.as_ptr() as *mut c_void,
        iov_len: len,
    };
    // Room for one SCM_RIGHTS control message carrying one fd, on the stack (nix's sendmsg
    // allocates its control buffer, and workers allocate nothing).
    let mut cmsg_space = [0u64; 8];
    loop {
        // SAFETY: msghdr points at live stack buffers; CMSG_* macros stay inside cmsg_space,
        // whose 64 bytes exceed CMSG_SPACE(sizeof(int)).
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            if let Some(pfd) = pass_fd {
                msg.msg_control = cmsg_space.as_mut_ptr() as *mut c_void;
                msg.msg_controllen = libc::CMSG_SPACE(4) as _;
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(4) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut i32, pfd);
            }
            libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL)
        };
        if n < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
            continue;
        }
        if n < 0 {
            // The coordinator is gone: nothing is left to report to.
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(0) };
        }
        return;
    }
}

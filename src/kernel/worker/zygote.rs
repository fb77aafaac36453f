//! The zygote: the process that forks every program's root, and a root's setup (its own
//! process group, its socket as fd 3, the program's pipe and /dev/zero descriptor). It also captures, once, the
//! harness's own address ranges that every root inherits and snapshots leave out. It
//! allocates nothing after the executor forked it.

use std::os::fd::RawFd;

use super::Scratch;
use super::baseline::capture_baseline;
use super::serve::serve;
use super::slots::ZYGOTE_SLOT;
use super::socket::{recv_requests, send_reply};
use crate::kernel::protocol::{REPLY_HEAD, REQ_WORDS, Reply, Request};

/// Sends a reply with no payload.
fn answer(fd: RawFd, s: &mut Scratch, reply: Reply, pass_fd: Option<RawFd>) {
    s.reply[..REPLY_HEAD].copy_from_slice(&reply.encode());
    send_reply(fd, &s.reply[..REPLY_HEAD], pass_fd);
}

/// Makes the program's pipe, in the root before the first op; every process inherits it.
/// Non-blocking: a full pipe (vmsplice) or an empty one (read) is EAGAIN, never a hang.
fn open_pipe(s: &mut Scratch) {
    // SAFETY: pipe2 writes two fds into the array.
    unsafe { libc::pipe2(s.pipe.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
}

/// Opens the program's /dev/zero descriptor, in the root before the first op; every process
/// inherits it, and a `map ... fd` maps it or passes it (`MapArgs::fd`). A failure leaves -1,
/// which such a map then passes as it is.
fn open_zero(s: &mut Scratch) {
    // SAFETY: a NUL-terminated path; the fd lives as long as the program's processes.
    s.zero_fd = unsafe { libc::open(c"/dev/zero".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
}

/// The zygote's loop: the process that forks every program's root, made by the executor once,
/// before anything else touches the executor's heap. Roots are forked from here rather than
/// from the executor because a fork makes every private page of the forking process
/// copy-on-write: forked from the executor, each root cost the executor ~50 write faults per
/// program on its own heap (measured with `perf record -e page-faults`), on the critical path.
/// The zygote touches a handful of pages per fork, beside the program that runs.
pub fn serve_zygote(fd: RawFd, s: &mut Scratch) -> ! {
    s.take_slot(ZYGOTE_SLOT);
    // Once for every root: a root's layout is the zygote's (fork copies it, and the zygote
    // maps nothing after this), so each inherits the baseline instead of reading its whole
    // layout again (~35 queries per program).
    capture_baseline(s);
    loop {
        let Some(n) = recv_requests(fd, s) else {
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(0) };
        };
        // Roots of finished programs: the kernel reaps them (SIGCHLD is ignored here), except
        // under an emulator that keeps that disposition to itself; reap them then.
        // SAFETY: waitpid on this process's own children, without blocking.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        let mut first = [0u64; REQ_WORDS];
        first.copy_from_slice(&s.requests[..REQ_WORDS]);
        if n == 1 && Request::decode(&first) == Ok(Request::SpawnRoot) {
            spawn_root(fd, s);
        } else {
            answer(fd, s, Reply::Refused, None);
        }
    }
}

/// In the zygote: forks a program's root, in its own process group, and passes the
/// coordinator's end of its socket back.
fn spawn_root(fd: RawFd, s: &mut Scratch) {
    let mut sv = [-1i32; 2];
    // SAFETY: socketpair writes two fds into `sv`.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    };
    if r < 0 {
        let errno = nix::errno::Errno::last() as i32;
        answer(fd, s, Reply::Failed { errno }, None);
        return;
    }
    // SAFETY: the zygote is single-threaded, and after fork the child only runs the worker
    // loop, which allocates nothing.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let _ =
                nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
            // SAFETY: this process owns every fd it closes and uses none of them again; the
            // signal disposition is reset to the default (the zygote ignores SIGCHLD so that
            // the kernel reaps its roots, and a program's processes must not inherit that).
            let own = unsafe {
                libc::close(fd);
                libc::close(sv[0]);
                let mut own = sv[1];
                if own != 3 && libc::dup2(own, 3) == 3 {
                    libc::close(own);
                    own = 3;
                }
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGCHLD, &dfl, std::ptr::null_mut());
                own
            };
            s.take_slot(0);
            s.maps.after_fork();
            open_pipe(s);
            open_zero(s);
            serve(own, s)
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            // Also here, so that the group exists before the coordinator can name it.
            let _ = nix::unistd::setpgid(child, child);
            // SAFETY: as above.
            unsafe { libc::close(sv[1]) };
            let value = child.as_raw() as u64;
            answer(fd, s, Reply::Done { value }, Some(sv[0]));
            // SAFETY: the coordinator now holds its own copy of the fd.
            unsafe { libc::close(sv[0]) };
        }
        Err(e) => {
            // SAFETY: closing the unused pair.
            unsafe {
                libc::close(sv[0]);
                libc::close(sv[1]);
            }
            answer(fd, s, Reply::Failed { errno: e as i32 }, None);
        }
    }
}

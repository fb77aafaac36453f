//! Starting the zygote (`worker::serve_zygote`), the process that forks every program's root.
//! This file owns what the zygote keeps and drops of the executor (fds, signal disposition);
//! the zygote's own loop is the worker's. The executor never forks a root itself.

use std::os::fd::IntoRawFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

use super::{Worker, set_deadline};
use crate::kernel::worker::{self, Scratch};

/// Forks the zygote (`worker::serve_zygote`), which forks every program's root. It holds
/// nothing of the executor's but its own socket (as fd 3) and `scratch`, and dies with the
/// executor. It ignores SIGCHLD, so the kernel reaps the roots it forks (they are not ours
/// to wait for; their orphaned descendants come to us, the subreaper).
pub(super) fn spawn_zygote(mut scratch: Scratch, op_deadline: Duration) -> Result<Worker, Errno> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let executor = nix::unistd::getpid();
    // SAFETY: the executor is single-threaded; the child runs only the zygote loop, which
    // allocates nothing.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            if nix::unistd::getppid() != executor {
                // SAFETY: _exit is always safe to call.
                unsafe { libc::_exit(0) };
            }
            // Roots and their trees must not hold the executor's pipes (the front detects the
            // executor's death by end of file on them), nor any socket of a live program (a
            // worker would then never see end of file). Its stderr goes to /dev/null too: under
            // an emulator, the emulator's own "uncaught target signal" lines for workers that
            // die on purpose are noise. Keep only our own socket, as fd 3.
            drop(ours);
            let mut fd = theirs.into_raw_fd();
            // SAFETY: closing and replacing fds this process owns and never uses again; the
            // SIGCHLD disposition only concerns this process's children (the roots).
            unsafe {
                libc::close(0);
                libc::close(1);
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
                if null >= 0 {
                    libc::dup2(null, 2);
                    libc::close(null);
                }
                if fd != 3 && libc::dup2(fd, 3) == 3 {
                    fd = 3;
                }
                if libc::syscall(libc::SYS_close_range, fd as u32 + 1, u32::MAX, 0) != 0 {
                    for other in fd + 1..4096 {
                        libc::close(other);
                    }
                }
                for other in 3..fd {
                    libc::close(other);
                }
                let mut ign: libc::sigaction = std::mem::zeroed();
                ign.sa_sigaction = libc::SIG_IGN;
                libc::sigaction(libc::SIGCHLD, &ign, std::ptr::null_mut());
            }
            worker::serve_zygote(fd, &mut scratch)
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            set_deadline(&ours, op_deadline);
            Ok(Worker {
                pid: child,
                fd: ours,
            })
        }
    }
}

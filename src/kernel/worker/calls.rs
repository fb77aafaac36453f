//! The ops' own work on the program's memory: the mmap of a map, the call with a bad argument,
//! the stores of a write, the loads of a read, the kernel's writes of a poke. Each runs inside
//! the worker, on its own memory; a fault is reported by the handler (`fault`). Nothing here
//! allocates.

use std::ffi::c_void;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;

use nix::errno::Errno;

use super::fault::PARTIAL;
use super::{inject, injected};
use crate::kernel::protocol::{ByteRange, REPLY_HEAD, REPLY_PAYLOAD};
use crate::program::outcome::digest;
use crate::program::{BadArg, MapArgs, MapKind, Pattern, PlaceHow, Syscall, Via};

/// `mmap` of `len` bytes of `kind`, anywhere, or at an address with a placement, with the
/// map's fd and offset (`args`; `zero_fd`: the program's /dev/zero descriptor). A /dev/zero map
/// without `args.fd` opens /dev/zero for itself and closes it right after the mmap, as the
/// mapping holds its own reference (docs/SEMANTICS.md C4).
pub(super) fn map(
    kind: MapKind,
    len: usize,
    place: Option<(u64, PlaceHow)>,
    args: MapArgs,
    zero_fd: RawFd,
    ps: usize,
) -> Result<u64, Errno> {
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let shared = kind.is_shared() || injected(inject::PRIVATE_AS_SHARED);
    let mut flags = if shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    let mut len = len;
    if args.hugetlb {
        // The default huge page size (docs/SEMANTICS.md L6). The length is rounded up to whole
        // huge pages here, as the kernel would: the handle covers them, and a runtime that
        // ignored MAP_HUGETLB must not leave part of it to the harness's own memory.
        flags |= libc::MAP_HUGETLB;
        len = len.next_multiple_of(crate::program::caps::HUGETLB_PAGES as usize * ps);
    }
    let hint = match place {
        None => 0,
        Some((addr, how)) => {
            flags |= match how {
                PlaceHow::Fixed => libc::MAP_FIXED,
                PlaceHow::NoReplace => libc::MAP_FIXED_NOREPLACE,
                PlaceHow::FixedNoReplace => libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE,
                PlaceHow::Hint => 0,
            };
            addr
        }
    } as *mut c_void;
    let offset = args.offset.in_bytes(ps) as libc::off_t;
    let r = if kind.uses_dev_zero() && args.fd {
        // SAFETY: as below; the program's /dev/zero descriptor stays open.
        unsafe { libc::mmap(hint, len, prot, flags, zero_fd, offset) }
    } else if kind.uses_dev_zero() {
        let zero = nix::fcntl::open(
            "/dev/zero",
            nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        // SAFETY: a mapping at an address of the kernel's choosing, or inside a program
        // handle's range (MAP_FIXED replaces only program pages); Rust code holds no
        // references into either. `zero` is closed when it goes, right after.
        unsafe { libc::mmap(hint, len, prot, flags, zero.as_raw_fd(), offset) }
    } else {
        let fd = if args.fd { zero_fd } else { -1 };
        // SAFETY: as above; MAP_ANONYMOUS, with fd -1 or the program's /dev/zero descriptor,
        // which Linux ignores (A10).
        unsafe { libc::mmap(hint, len, prot, flags | libc::MAP_ANONYMOUS, fd, offset) }
    };
    if r == libc::MAP_FAILED {
        Err(Errno::last())
    } else {
        Ok(r as u64)
    }
}

/// A prot bit no architecture has.
const UNKNOWN_PROT: i32 = 0x100;
/// An advice number Linux does not have.
const UNKNOWN_ADVICE: i32 = 200;
/// An mremap flag Linux does not have.
const UNKNOWN_REMAP_FLAG: i32 = 0x40;

/// `call` with one bad argument, on the range at `base`.
/// Only combinations that Linux rejects without touching memory are ever sent (see
/// `BadArg::applies_to`).
pub(super) fn invalid_call(call: Syscall, bad: BadArg, base: u64, ps: usize) -> Result<(), Errno> {
    let addr = if bad == BadArg::Unaligned {
        base + 1
    } else {
        base
    } as *mut c_void;
    let len = match bad {
        BadArg::ZeroLength => 0,
        // Its page rounding wraps past the top of the address space.
        BadArg::Overflow => usize::MAX - 2 * ps + 1,
        _ => ps,
    };
    // SAFETY: each call below is rejected by the kernel before it changes anything, for the
    // argument combinations `BadArg::applies_to` admits (measured; docs/SEMANTICS.md A4, D1,
    // E1, F0, G1).
    let ret: isize = unsafe {
        match call {
            Syscall::Mmap => {
                let fixed = if bad == BadArg::Unaligned {
                    libc::MAP_FIXED
                } else {
                    0
                };
                let hint = if bad == BadArg::Unaligned {
                    addr
                } else {
                    std::ptr::null_mut()
                };
                let r = libc::mmap(
                    hint,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | fixed,
                    -1,
                    0,
                );
                if r == libc::MAP_FAILED {
                    -1
                } else {
                    // Not expected: undo it so the program's layout stays as the model says,
                    // and report success for the checker to flag.
                    libc::munmap(r, len);
                    0
                }
            }
            Syscall::Munmap => libc::munmap(addr, len) as isize,
            Syscall::Mprotect => {
                let prot = if bad == BadArg::UnknownProt {
                    UNKNOWN_PROT | libc::PROT_READ
                } else {
                    libc::PROT_READ | libc::PROT_WRITE
                };
                libc::mprotect(addr, len, prot) as isize
            }
            Syscall::Madvise => {
                let unknown = bad == BadArg::UnknownAdvice;
                let advice = if unknown {
                    UNKNOWN_ADVICE
                } else {
                    libc::MADV_NORMAL
                };
                libc::madvise(addr, if unknown { ps } else { len }, advice) as isize
            }
            Syscall::Mremap => {
                let (new_len, flags) = match bad {
                    BadArg::ZeroLength => (0, 0),
                    BadArg::Overflow => (usize::MAX - 2 * ps + 1, libc::MREMAP_MAYMOVE),
                    BadArg::UnknownFlags => (ps, UNKNOWN_REMAP_FLAG),
                    _ => (ps, 0),
                };
                let r = libc::mremap(addr, ps, new_len, flags, std::ptr::null_mut::<c_void>());
                if r == libc::MAP_FAILED { -1 } else { 0 }
            }
        }
    };
    if ret == 0 { Ok(()) } else { Err(Errno::last()) }
}

/// Stores a pattern into bytes `bytes` of `pages` pages from `addr`, page by page in
/// ascending order, so that a fault leaves exactly the earlier pages written (within a page,
/// which bytes a memset stores first is libc's choice). A ramp counts from `origin`, the
/// mapping's first byte.
pub(super) fn write(
    addr: u64,
    pages: usize,
    bytes: ByteRange,
    pattern: Pattern,
    origin: u64,
    ps: usize,
) {
    let (lo, len) = (bytes.start as usize, bytes.len());
    for p in 0..pages {
        let page = addr + (p * ps) as u64;
        let dst = (page as usize + lo) as *mut u8;
        match pattern {
            Pattern::Ramp(byte) => {
                let offset = (page - origin) as usize + lo;
                for i in 0..len {
                    let v = byte.wrapping_add(((offset + i) % 251) as u8);
                    // SAFETY: a store into the program's own mapping; an inaccessible page
                    // faults and the handler reports it.
                    unsafe { std::ptr::write_volatile(dst.add(i), v) };
                }
            }
            // SAFETY: as above (memset within one page).
            Pattern::Fill(byte) => unsafe { std::ptr::write_bytes(dst, byte, len) },
        }
    }
}

/// Writes a pattern through the kernel, page by page: pwrite on /proc/self/mem (a forced
/// write) or process_vm_writev on ourselves. The first page that fails ends it with its errno.
#[allow(clippy::too_many_arguments)]
pub(super) fn poke(
    buf: &mut [u8],
    addr: u64,
    pages: usize,
    bytes: ByteRange,
    pattern: Pattern,
    origin: u64,
    via: Via,
    ps: usize,
) -> Result<(), Errno> {
    let vm = via == Via::Vm;
    let fd = if vm {
        -1
    } else {
        // SAFETY: a NUL-terminated path; the fd is closed below.
        let fd = unsafe { libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Errno::last());
        }
        fd
    };
    let len = bytes.len();
    let mut result = Ok(());
    for p in 0..pages {
        let page = addr + (p * ps) as u64;
        let offset = (page - origin) as usize + bytes.start as usize;
        pattern.fill(&mut buf[..len], offset);
        let dst = page + bytes.start as u64;
        let n = if vm {
            let local = libc::iovec {
                iov_base: buf.as_mut_ptr() as *mut c_void,
                iov_len: len,
            };
            let remote = libc::iovec {
                iov_base: dst as *mut c_void,
                iov_len: len,
            };
            // SAFETY: `local` is our buffer; the kernel checks `remote` (our own memory).
            unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) }
        } else {
            // SAFETY: writing our buffer through /proc/self/mem; the kernel checks the target.
            unsafe { libc::pwrite(fd, buf.as_ptr() as *const c_void, len, dst as i64) }
        };
        if n != len as isize {
            result = Err(if n < 0 { Errno::last() } else { Errno::EIO });
            break;
        }
    }
    if fd >= 0 {
        // SAFETY: closing the fd opened above.
        unsafe { libc::close(fd) };
    }
    result
}

/// Digests bytes `bytes` of `pages` pages from `addr` into the reply payload (after the head
/// at the start of `reply`); returns how many digests.
pub(super) fn read(
    reply: &mut [u64],
    addr: u64,
    pages: usize,
    bytes: ByteRange,
    ps: usize,
) -> usize {
    let (lo, len) = (bytes.start as usize, bytes.len());
    for p in 0..pages.min(REPLY_PAYLOAD) {
        let src = (addr as usize + p * ps + lo) as *const u8;
        // SAFETY: loads from the program's own mapping; a fault is reported by the handler.
        let bytes = unsafe { std::slice::from_raw_parts(src, len) };
        reply[REPLY_HEAD + p] = digest(bytes);
        PARTIAL.store(p + 1, Ordering::Relaxed);
    }
    pages
}

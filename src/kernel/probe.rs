//! Probes: what the kernel (or emulator) under us supports, found by trying. `advice_known`
//! and `libc_version` are shared by the front and the executor (one syscall each, touching no
//! memory); `probe_features` is the executor's, run once before any program, on scratch
//! mappings of its own. Probes never parse version numbers: backports and emulators make
//! versions lie.

use crate::program::features::Features;
use crate::program::tables::madv;

/// `madvise(NULL, 0, advice)`: 0 if and only if the kernel knows the advice (a zero-length
/// range is valid and names no memory; docs/SEMANTICS.md F0), else the errno (EINVAL).
pub fn advice_known(advice: i32) -> Result<(), nix::errno::Errno> {
    // SAFETY: a zero-length range names no memory at all.
    let r = unsafe { libc::madvise(std::ptr::null_mut(), 0, advice) };
    if r == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// The C library's own version string, `confstr(_CS_GNU_LIBC_VERSION)`: "glibc 2.36" on glibc.
/// musl has no such call (and no version API): `None` there.
pub fn libc_version() -> Option<String> {
    #[cfg(target_env = "gnu")]
    {
        let mut buf = [0u8; 128];
        // SAFETY: confstr writes at most buf.len() bytes, NUL-terminated, into our buffer.
        let n = unsafe {
            libc::confstr(
                libc::_CS_GNU_LIBC_VERSION,
                buf.as_mut_ptr() as *mut libc::c_char,
                buf.len(),
            )
        };
        (n > 0 && n <= buf.len()).then(|| String::from_utf8_lossy(&buf[..n - 1]).into_owned())
    }
    #[cfg(not(target_env = "gnu"))]
    {
        None
    }
}

/// Finds out what the kernel supports by trying each thing once, in the executor itself, before
/// any program runs (never by parsing the version: backports and emulators make versions lie).
pub fn probe_features(ps: usize) -> Features {
    let known = |a: i32| advice_known(a).is_ok();
    // SAFETY: every call below works on a scratch mapping made and removed here.
    unsafe {
        let scratch = |flags: i32| {
            let p = libc::mmap(
                std::ptr::null_mut(),
                ps,
                libc::PROT_READ | libc::PROT_WRITE,
                flags | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            (p != libc::MAP_FAILED).then_some(p)
        };
        let works_on = |flags: i32, f: &dyn Fn(*mut libc::c_void) -> bool| match scratch(flags) {
            Some(p) => {
                let ok = f(p);
                libc::munmap(p, ps);
                ok
            }
            None => false,
        };
        let dontunmap = |flags: i32| {
            works_on(flags, &|p| {
                let q = libc::mremap(
                    p,
                    ps,
                    ps,
                    libc::MREMAP_MAYMOVE | libc::MREMAP_DONTUNMAP,
                    std::ptr::null_mut::<libc::c_void>(),
                );
                if q == libc::MAP_FAILED {
                    return false;
                }
                libc::munmap(q, ps);
                true
            })
        };
        let guard = known(madv::GUARD_INSTALL);
        Features {
            guard,
            guard_shared: guard
                && works_on(libc::MAP_SHARED, &|p| {
                    libc::madvise(p, ps, madv::GUARD_INSTALL) == 0
                }),
            populate: known(madv::POPULATE_READ),
            cold_pageout: known(madv::PAGEOUT),
            wipeonfork: known(madv::WIPEONFORK),
            free: known(madv::FREE),
            dontunmap: dontunmap(libc::MAP_PRIVATE),
            dontunmap_shared: dontunmap(libc::MAP_SHARED),
            // Before 4.17 the flag is ignored and the address is only a hint (D4).
            // proc_mem.force_override=never (6.12) forbids forced writes: try one into a
            // read-only private scratch page.
            force_write: works_on(libc::MAP_PRIVATE, &|p| {
                let fd = libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
                if fd < 0 {
                    return false;
                }
                let ok = libc::mprotect(p, ps, libc::PROT_READ) == 0
                    && libc::pwrite(fd, b"x".as_ptr() as *const libc::c_void, 1, p as i64) == 1;
                libc::close(fd);
                ok
            }),
            move_multi_vma: move_multi_vma().is_ok(),
            collapse: known(madv::COLLAPSE),
            thp_align: thp_align(ps),
            hugetlb: super::hugetlb_pool::usable(ps),
            glibc_malloc: glibc_malloc(),
            // Probed last, right before the zygote (`malloc_probe`).
            glibc_dynamic_threshold: false,
            clone_vm: super::clone_vm_probe::clone_vm_works(),
            noreplace: works_on(libc::MAP_PRIVATE, &|p| {
                let q = libc::mmap(
                    p,
                    ps,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                );
                if q == libc::MAP_FAILED {
                    return nix::errno::Errno::last() == nix::errno::Errno::EEXIST;
                }
                if q != p {
                    libc::munmap(q, ps);
                }
                false
            }),
        }
    }
}

/// Whether a pure mremap move (MREMAP_MAYMOVE | MREMAP_FIXED, same size) may span several VMAs
/// (6.17; docs/SEMANTICS.md G4): three private pages whose middle one is read-only (three VMAs)
/// are moved onto a scratch destination. `Err` is the errno of the refusal (EFAULT before 6.17).
/// Everything is unmapped again.
pub fn move_multi_vma() -> Result<(), nix::errno::Errno> {
    let ps = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as usize;
    let len = 3 * ps;
    let map = || {
        // SAFETY: a fresh private anonymous mapping of our own, placed by the kernel.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        (p != libc::MAP_FAILED).then_some(p)
    };
    let (Some(src), Some(dst)) = (map(), map()) else {
        return Err(nix::errno::Errno::ENOMEM);
    };
    // SAFETY: the calls name only the two scratch mappings made above (the middle page of the
    // source, the source onto the destination) and unmap both at the end.
    unsafe {
        libc::mprotect(
            (src as *mut u8).add(ps) as *mut libc::c_void,
            ps,
            libc::PROT_READ,
        );
        let q = libc::mremap(
            src,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dst,
        );
        let result = if q == libc::MAP_FAILED {
            Err(nix::errno::Errno::last())
        } else {
            Ok(())
        };
        libc::munmap(src, len);
        libc::munmap(dst, len);
        result
    }
}

/// Whether the kernel places a private anonymous mapping whose length is a multiple of the PMD
/// size on a PMD boundary (docs/SEMANTICS.md L1; 6.7, efa7df3e3bb5, and since 6.12 only for
/// such lengths, d4148aeab412). The PMD size is what one page-table page maps: `ps * ps / 8`
/// (2 MiB with 4 KiB pages). Tried three times, each after a one-page mapping that leaves the
/// next free range unaligned, so that a chance alignment does not pass for the rule; every
/// scratch mapping is unmapped before the next and never touched.
pub fn thp_align(ps: usize) -> bool {
    let pmd = ps * (ps / 8);
    let map = |len: usize| {
        // SAFETY: a fresh private anonymous mapping placed by the kernel, never touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        (p != libc::MAP_FAILED).then_some(p)
    };
    (0..3).all(|_| {
        let spacer = map(ps);
        let big = map(pmd);
        // SAFETY: unmaps only the two scratch mappings made above.
        unsafe {
            if let Some(p) = spacer {
                libc::munmap(p, ps);
            }
            if let Some(p) = big {
                libc::munmap(p, pmd);
            }
        }
        big.is_some_and(|p| (p as usize).is_multiple_of(pmd))
    })
}

/// Whether the `malloc` this process calls is glibc's own (docs/SEMANTICS.md M7): `dladdr` of
/// the `malloc` symbol the dynamic linker resolves (an `LD_PRELOAD`ed jemalloc, mimalloc or
/// tcmalloc comes first in the lookup) names the same object as `gnu_get_libc_version`, which
/// only glibc's libc.so.6 defines. A static or musl build has no glibc: false.
pub fn glibc_malloc() -> bool {
    #[cfg(target_env = "gnu")]
    {
        unsafe extern "C" {
            fn gnu_get_libc_version() -> *const libc::c_char;
        }
        let object = |name: &std::ffi::CStr| {
            // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name; dladdr writes into our
            // zeroed Dl_info; the names it returns are the loader's, read only while loaded.
            unsafe {
                let sym = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
                if sym.is_null() {
                    return None;
                }
                let mut info: libc::Dl_info = std::mem::zeroed();
                (libc::dladdr(sym, &mut info) != 0 && !info.dli_fbase.is_null())
                    .then_some(info.dli_fbase as usize)
            }
        };
        let _ = gnu_get_libc_version as unsafe extern "C" fn() -> *const libc::c_char;
        match (object(c"malloc"), object(c"gnu_get_libc_version")) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

//! Whether glibc's dynamic mmap threshold is on in the processes the executor forks
//! (docs/SEMANTICS.md M11): probed, not assumed, in a child forked right before the zygote, so
//! that the child starts from the allocator state every program's root inherits and the
//! executor itself is not disturbed.
//!
//! The child asks glibc's public counters (`mallinfo2`: `hblkhd`, the bytes in chunks glibc
//! mapped for themselves, `man mallinfo(3)`) whether each of three requests got a mapping of
//! its own: after `malloc_trim(0)` (so that the heap's top holds none of them), a request whose
//! chunk is exactly the default threshold (131072 bytes) must be mapped (the threshold in force
//! is the default); after freeing it and a mapped 1 MiB block, a 300000-byte request must come
//! from the heap (the free raised the threshold past it). Any other answer, or a `malloc` that
//! is not glibc's, or an environment that tunes glibc's malloc (where glibc turns the dynamic
//! threshold off for good), is "off": the model then predicts no threshold it does not know.

/// glibc's default `M_MMAP_THRESHOLD`, the chunk size at which the probe's first request lands.
const DEFAULT_THRESHOLD: usize = 128 * 1024;

/// `GLIBC_TUNABLES` names whose setting turns the dynamic threshold off (glibc `malloc.c`:
/// `do_set_mmap_threshold()`, `do_set_trim_threshold()`, `do_set_top_pad()`,
/// `do_set_mmaps_max()`), and their older `MALLOC_*_` environment aliases.
const TUNED_BY: [&str; 4] = [
    "glibc.malloc.mmap_threshold",
    "glibc.malloc.trim_threshold",
    "glibc.malloc.top_pad",
    "glibc.malloc.mmap_max",
];
const TUNED_VARS: [&str; 4] = [
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
];

/// Whether this process's environment tunes glibc's malloc in a way that turns the dynamic
/// threshold off.
fn tuned_by_environment() -> bool {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    tunables
        .split(':')
        .filter_map(|t| t.split_once('=').map(|(name, _)| name.trim()))
        .any(|name| TUNED_BY.contains(&name))
        || TUNED_VARS
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// Whether glibc's dynamic mmap threshold is on in a child of this process, which must be
/// single-threaded. `glibc_malloc`: the `GLIBC_MALLOC` probe's answer (`probe::glibc_malloc`).
pub fn glibc_dynamic_threshold(glibc_malloc: bool, page_size: usize) -> bool {
    if !glibc_malloc || tuned_by_environment() {
        return false;
    }
    probe(page_size)
}

/// glibc's `struct mallinfo2` (glibc 2.33).
#[cfg(target_env = "gnu")]
#[repr(C)]
struct MallInfo2 {
    /// arena, ordblks, smblks, hblks.
    _before: [usize; 4],
    /// The bytes in chunks glibc mapped for themselves.
    hblkhd: usize,
    /// usmblks, fsmblks, uordblks, fordblks, keepcost.
    _after: [usize; 5],
}

#[cfg(target_env = "gnu")]
fn probe(page_size: usize) -> bool {
    type Info = unsafe extern "C" fn() -> MallInfo2;
    type Trim = unsafe extern "C" fn(usize) -> libc::c_int;
    // Looked up before the fork (dlsym may allocate); an older glibc without mallinfo2 is "off".
    // SAFETY: dlsym with RTLD_DEFAULT and NUL-terminated names.
    let (info, trim) = unsafe {
        (
            libc::dlsym(libc::RTLD_DEFAULT, c"mallinfo2".as_ptr()),
            libc::dlsym(libc::RTLD_DEFAULT, c"malloc_trim".as_ptr()),
        )
    };
    if info.is_null() || trim.is_null() {
        return false;
    }
    // SAFETY: the symbols glibc defines under these names, with these signatures.
    let (info, trim) = unsafe {
        (
            std::mem::transmute::<*mut libc::c_void, Info>(info),
            std::mem::transmute::<*mut libc::c_void, Trim>(trim),
        )
    };
    // glibc's chunk for a request, and the length of its own mapping (M8).
    let mapping = |size: usize| ((size + 8 + 15) & !15) + 8;
    let mapping = move |size: usize| mapping(size).next_multiple_of(page_size);
    // SAFETY: the executor is single-threaded here; the child calls only the allocator and
    // _exit, and never returns.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: glibc's allocator and its counters, on blocks of this child only.
            let on = unsafe {
                let mapped_by = |size: usize| {
                    let before = info().hblkhd;
                    let p = libc::malloc(size);
                    (p, info().hblkhd.wrapping_sub(before))
                };
                trim(0);
                let (a, grew_a) = mapped_by(DEFAULT_THRESHOLD - 8);
                libc::free(a);
                let (b, grew_b) = mapped_by(1 << 20);
                libc::free(b);
                trim(0);
                let (c, grew_c) = mapped_by(300_000);
                !a.is_null()
                    && !b.is_null()
                    && !c.is_null()
                    && grew_a == mapping(DEFAULT_THRESHOLD - 8)
                    && grew_b == mapping(1 << 20)
                    && grew_c == 0
            };
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(if on { 0 } else { 1 }) }
        }
        pid if pid > 0 => {
            let mut status = 0;
            // SAFETY: waiting for the child just forked.
            while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
                && nix::errno::Errno::last() == nix::errno::Errno::EINTR
            {}
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
        }
        _ => false,
    }
}

#[cfg(not(target_env = "gnu"))]
fn probe(_: usize) -> bool {
    false
}

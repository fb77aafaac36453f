//! Probes the front and the executor share: one syscall each, touching no memory.

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

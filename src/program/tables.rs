//! The numbers the language shares with Linux, each in one table: errno names and values,
//! the fatal signals and their `si_code`s, and the `madvise` advice numbers. Every layer (the
//! model, the executor, the expectation syntax, the C reproducer, the environment report) reads
//! them from here.

/// errno values (asm-generic/errno-base.h and errno.h; the same on every architecture
/// cowcheck targets). The model names these; `ERRNOS` lists every name a trace may use.
pub mod errno {
    pub const EPERM: i32 = 1;
    pub const EIO: i32 = 5;
    pub const EAGAIN: i32 = 11;
    pub const ENOMEM: i32 = 12;
    pub const EACCES: i32 = 13;
    pub const EFAULT: i32 = 14;
    pub const EEXIST: i32 = 17;
    pub const EINVAL: i32 = 22;
    pub const EMFILE: i32 = 24;
}

/// Errno names an expectation (`=> EINVAL`) may use, with Linux's numbers (from libc).
pub const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("ESRCH", libc::ESRCH),
    ("EINTR", libc::EINTR),
    ("EIO", libc::EIO),
    ("ENXIO", libc::ENXIO),
    ("E2BIG", libc::E2BIG),
    ("EBADF", libc::EBADF),
    ("ECHILD", libc::ECHILD),
    ("EAGAIN", libc::EAGAIN),
    ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES),
    ("EFAULT", libc::EFAULT),
    ("EBUSY", libc::EBUSY),
    ("EEXIST", libc::EEXIST),
    ("ENODEV", libc::ENODEV),
    ("EINVAL", libc::EINVAL),
    ("ENFILE", libc::ENFILE),
    ("EMFILE", libc::EMFILE),
    ("EFBIG", libc::EFBIG),
    ("ENOSPC", libc::ENOSPC),
    ("ESPIPE", libc::ESPIPE),
    ("EPIPE", libc::EPIPE),
    ("ERANGE", libc::ERANGE),
    ("ENOSYS", libc::ENOSYS),
    ("EOVERFLOW", libc::EOVERFLOW),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("EHWPOISON", libc::EHWPOISON),
];

/// The name of an errno (`EINVAL`), if the table has it.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    ERRNOS
        .iter()
        .find(|(_, n)| *n == errno)
        .map(|(name, _)| *name)
}

/// The errno of a name (`EINVAL`).
pub fn errno_from_name(name: &str) -> Option<i32> {
    ERRNOS.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
}

/// `SIGSEGV` and `SIGBUS` numbers as Linux defines them on every architecture cowcheck targets.
pub const SIGSEGV: i32 = 11;
pub const SIGBUS: i32 = 7;
/// `si_code` values (asm-generic/siginfo.h).
pub const SEGV_MAPERR: i32 = 1;
pub const SEGV_ACCERR: i32 = 2;
pub const BUS_ADRERR: i32 = 2;

/// The fatal signals the language speaks of: (number, C name, trace name).
const SIGNALS: &[(i32, &str, &str)] = &[
    (SIGSEGV, "SIGSEGV", "SIGSEGV"),
    (SIGBUS, "SIGBUS", "SIGBUS"),
];

/// Their `si_code`s: (signal, code, C name, trace name).
const SI_CODES: &[(i32, i32, &str, &str)] = &[
    (SIGSEGV, SEGV_MAPERR, "SEGV_MAPERR", "maperr"),
    (SIGSEGV, SEGV_ACCERR, "SEGV_ACCERR", "accerr"),
    (SIGBUS, BUS_ADRERR, "BUS_ADRERR", "adrerr"),
];

/// `SIGSEGV`, `SIGBUS`.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    SIGNALS.iter().find(|s| s.0 == signal).map(|s| s.1)
}

/// The signal of a name (`SIGSEGV`).
pub fn signal_from_name(name: &str) -> Option<i32> {
    SIGNALS.iter().find(|s| s.2 == name).map(|s| s.0)
}

/// `SEGV_MAPERR`, as C names it.
pub fn code_c_name(signal: i32, code: i32) -> Option<&'static str> {
    SI_CODES
        .iter()
        .find(|c| c.0 == signal && c.1 == code)
        .map(|c| c.2)
}

/// `maperr`, as a trace's expectation names it.
pub fn code_trace_name(signal: i32, code: i32) -> Option<&'static str> {
    SI_CODES
        .iter()
        .find(|c| c.0 == signal && c.1 == code)
        .map(|c| c.3)
}

/// The `si_code` of a trace name under a signal (`maperr` under SIGSEGV).
pub fn code_from_trace_name(signal: i32, name: &str) -> Option<i32> {
    SI_CODES
        .iter()
        .find(|c| c.0 == signal && c.3 == name)
        .map(|c| c.1)
}

/// `madvise` advice numbers (asm-generic/mman-common.h; the guard advices are 102/103 since
/// 6.13), with their `MADV_` names.
pub mod madv {
    pub const DONTNEED: i32 = 4;
    pub const FREE: i32 = 8;
    pub const REMOVE: i32 = 9;
    pub const DONTFORK: i32 = 10;
    pub const DOFORK: i32 = 11;
    pub const HUGEPAGE: i32 = 14;
    pub const NOHUGEPAGE: i32 = 15;
    pub const WIPEONFORK: i32 = 18;
    pub const KEEPONFORK: i32 = 19;
    pub const COLD: i32 = 20;
    pub const PAGEOUT: i32 = 21;
    pub const POPULATE_READ: i32 = 22;
    pub const POPULATE_WRITE: i32 = 23;
    pub const COLLAPSE: i32 = 25;
    pub const GUARD_INSTALL: i32 = 102;
    pub const GUARD_REMOVE: i32 = 103;

    /// Every advice the language has, by its C name.
    pub const NAMES: &[(&str, i32)] = &[
        ("MADV_DONTNEED", DONTNEED),
        ("MADV_FREE", FREE),
        ("MADV_REMOVE", REMOVE),
        ("MADV_DONTFORK", DONTFORK),
        ("MADV_DOFORK", DOFORK),
        ("MADV_HUGEPAGE", HUGEPAGE),
        ("MADV_NOHUGEPAGE", NOHUGEPAGE),
        ("MADV_WIPEONFORK", WIPEONFORK),
        ("MADV_KEEPONFORK", KEEPONFORK),
        ("MADV_COLD", COLD),
        ("MADV_PAGEOUT", PAGEOUT),
        ("MADV_POPULATE_READ", POPULATE_READ),
        ("MADV_POPULATE_WRITE", POPULATE_WRITE),
        ("MADV_GUARD_INSTALL", GUARD_INSTALL),
        ("MADV_GUARD_REMOVE", GUARD_REMOVE),
        ("MADV_COLLAPSE", COLLAPSE),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The constants agree with the C library's (where libc has them).
    #[test]
    fn numbers_match_libc() {
        assert_eq!(errno::EINVAL, libc::EINVAL);
        assert_eq!(errno::EFAULT, libc::EFAULT);
        assert_eq!(errno::EEXIST, libc::EEXIST);
        assert_eq!(errno::ENOMEM, libc::ENOMEM);
        assert_eq!(errno::EAGAIN, libc::EAGAIN);
        assert_eq!(errno::EACCES, libc::EACCES);
        assert_eq!(errno::EIO, libc::EIO);
        assert_eq!(errno::EPERM, libc::EPERM);
        assert_eq!(errno::EMFILE, libc::EMFILE);
        assert_eq!(SIGSEGV, libc::SIGSEGV);
        assert_eq!(SIGBUS, libc::SIGBUS);
        assert_eq!(madv::DONTNEED, libc::MADV_DONTNEED);
        assert_eq!(madv::FREE, libc::MADV_FREE);
        assert_eq!(madv::REMOVE, libc::MADV_REMOVE);
        assert_eq!(madv::DONTFORK, libc::MADV_DONTFORK);
        assert_eq!(madv::WIPEONFORK, libc::MADV_WIPEONFORK);
        assert_eq!(madv::HUGEPAGE, libc::MADV_HUGEPAGE);
        assert_eq!(madv::COLD, libc::MADV_COLD);
        assert_eq!(madv::PAGEOUT, libc::MADV_PAGEOUT);
        assert_eq!(madv::POPULATE_WRITE, libc::MADV_POPULATE_WRITE);
        for (name, n) in ERRNOS {
            assert_eq!(errno_from_name(name), Some(*n));
        }
        assert_eq!(code_c_name(SIGBUS, BUS_ADRERR), Some("BUS_ADRERR"));
        assert_eq!(code_from_trace_name(SIGSEGV, "accerr"), Some(SEGV_ACCERR));
        assert_eq!(signal_from_name("SIGBUS"), Some(SIGBUS));
    }
}

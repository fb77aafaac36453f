//! /proc/self/maps, read and parsed without allocating (workers run it after fork).
//!
//! Line format (proc(5)): `start-end perms offset dev inode [name]`, addresses in hex, perms
//! `rwxp` / `rwxs`. The name tells the backing (docs/SEMANTICS.md O4): none for private
//! anonymous memory, `/dev/zero` for a private mapping of /dev/zero, `/dev/zero (deleted)` for a
//! shmem object (shared anonymous or shared /dev/zero).

use crate::program::outcome::{Backing, PROT_R, PROT_W, PROT_X, Region};

/// One line of /proc/self/maps.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub start: u64,
    pub end: u64,
    pub prot: u8,
    pub shared: bool,
    pub name: &'a [u8],
}

impl Entry<'_> {
    pub fn backing(&self) -> Backing {
        match self.name {
            b"" => Backing::Anon,
            b"/dev/zero" => Backing::DevZero,
            b"/dev/zero (deleted)" => Backing::Shmem,
            b"/anon_hugepage (deleted)" => Backing::Hugetlb,
            _ => Backing::Other,
        }
    }

    /// The part `[start, end)` of this entry as a region.
    pub fn region(&self, start: u64, end: u64) -> Region {
        Region {
            start,
            end,
            prot: self.prot,
            shared: self.shared,
            backing: self.backing(),
        }
    }
}

/// Reads /proc/self/maps into `buf`, returning the bytes read (0 if it cannot be read; the
/// snapshot then shows an empty layout, which the checker reports as a divergence).
pub fn read_self_maps(buf: &mut [u8]) -> usize {
    let path = c"/proc/self/maps";
    // SAFETY: `path` is NUL-terminated; `buf` is writable for its length.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return 0;
        }
        let mut n = 0usize;
        while n < buf.len() {
            let r = libc::read(
                fd,
                buf.as_mut_ptr().add(n) as *mut libc::c_void,
                buf.len() - n,
            );
            if r < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                continue;
            }
            if r <= 0 {
                break;
            }
            n += r as usize;
        }
        libc::close(fd);
        n
    }
}

/// `struct procmap_query` of include/uapi/linux/fs.h (Linux 6.11+): the binary query
/// interface of /proc/PID/maps, an ioctl on the open file that answers "the mapping covering
/// (or after) this address" without formatting text and, unless asked, without the path name.
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

/// `_IOWR('f', 17, struct procmap_query)`.
const PROCMAP_QUERY: libc::c_ulong = (3 << 30)
    | ((std::mem::size_of::<ProcmapQuery>() as libc::c_ulong) << 16)
    | ((b'f' as libc::c_ulong) << 8)
    | 17;
const QUERY_VMA_READABLE: u64 = 0x01;
const QUERY_VMA_WRITABLE: u64 = 0x02;
const QUERY_VMA_EXECUTABLE: u64 = 0x04;
const QUERY_VMA_SHARED: u64 = 0x08;
const QUERY_COVERING_OR_NEXT_VMA: u64 = 0x10;

/// Set once PROCMAP_QUERY turned out not to work here (older kernels; emulators such as
/// qemu-user, whose /proc/self/maps is a file they generate at open): text from then on.
static NO_QUERY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reads this process's own layout, by PROCMAP_QUERY where it works, else from the text of
/// /proc/self/maps. Allocates nothing after construction (workers use it after fork).
pub struct SelfMaps {
    /// /proc/self/maps, kept open for queries: it answers for the process that opened it, so
    /// a forked child must `forget` its parent's (see `after_fork`).
    fd: libc::c_int,
    text: Box<[u8]>,
    name: Box<[u8]>,
}

impl SelfMaps {
    pub fn new() -> SelfMaps {
        SelfMaps {
            fd: -1,
            text: vec![0u8; 1 << 20].into_boxed_slice(),
            name: vec![0u8; 4096].into_boxed_slice(),
        }
    }

    /// In a freshly forked child: the inherited fd describes the parent's memory; drop it.
    pub fn after_fork(&mut self) {
        if self.fd >= 0 {
            // SAFETY: closing an fd this process inherited and no longer uses.
            unsafe { libc::close(self.fd) };
            self.fd = -1;
        }
    }

    /// Calls `visit` with every mapping in ascending order, and stops early when it returns
    /// false. `named(start, end)` says whether the entry's name is wanted (the name costs a
    /// path lookup in the kernel; an entry without it has an empty name). Returns false if
    /// the layout could not be read at all.
    pub fn visit(
        &mut self,
        named: impl Fn(u64, u64) -> bool,
        visit: impl FnMut(&Entry<'_>) -> bool,
    ) -> bool {
        self.visit_skipping(named, |_, end| end, visit)
    }

    /// `visit`, where `resume(start, end)` says from which address to look for the next
    /// mapping after the one at `[start, end)`: mappings in between are not visited (the
    /// snapshot jumps over the harness's own address ranges, a few queries instead of one per
    /// library mapping). The text fallback visits everything.
    pub fn visit_skipping(
        &mut self,
        named: impl Fn(u64, u64) -> bool,
        resume: impl Fn(u64, u64) -> u64,
        mut visit: impl FnMut(&Entry<'_>) -> bool,
    ) -> bool {
        if !NO_QUERY.load(std::sync::atomic::Ordering::Relaxed) {
            match self.query(&named, &resume, &mut visit) {
                Some(ok) => return ok,
                None => NO_QUERY.store(true, std::sync::atomic::Ordering::Relaxed),
            }
        }
        let n = read_self_maps(&mut self.text);
        if n == 0 {
            return false;
        }
        for e in entries(&self.text[..n]) {
            if !visit(&e) {
                break;
            }
        }
        true
    }

    /// The PROCMAP_QUERY walk; `None` if the interface does not work here (nothing was
    /// visited then).
    fn query(
        &mut self,
        named: &impl Fn(u64, u64) -> bool,
        resume: &impl Fn(u64, u64) -> u64,
        visit: &mut impl FnMut(&Entry<'_>) -> bool,
    ) -> Option<bool> {
        if self.fd < 0 {
            // SAFETY: a NUL-terminated path.
            self.fd = unsafe {
                libc::open(
                    c"/proc/self/maps".as_ptr(),
                    libc::O_RDONLY | libc::O_CLOEXEC,
                )
            };
            if self.fd < 0 {
                return Some(false);
            }
        }
        let mut addr = 0u64;
        let mut first = true;
        loop {
            let mut q = ProcmapQuery {
                size: std::mem::size_of::<ProcmapQuery>() as u64,
                query_flags: QUERY_COVERING_OR_NEXT_VMA,
                query_addr: addr,
                ..ProcmapQuery::default()
            };
            // SAFETY: `q` is a live procmap_query of the size it declares.
            let r =
                unsafe { libc::ioctl(self.fd, PROCMAP_QUERY as _, &mut q as *mut ProcmapQuery) };
            if r < 0 {
                let e = nix::errno::Errno::last();
                if e == nix::errno::Errno::EINTR {
                    continue;
                }
                if e == nix::errno::Errno::ENOENT && !first {
                    return Some(true);
                }
                if first {
                    // ENOTTY (no such ioctl; an emulator's plain file), EINVAL, ...; even
                    // ENOENT on the first query (no mapping at all) cannot be a real process.
                    self.after_fork();
                    return None;
                }
                return Some(false);
            }
            first = false;
            let (start, end) = (q.vma_start, q.vma_end);
            let mut name_len = 0usize;
            if named(start, end) {
                // The same mapping again, with its name.
                let mut n = ProcmapQuery {
                    size: std::mem::size_of::<ProcmapQuery>() as u64,
                    query_flags: 0,
                    query_addr: start,
                    vma_name_size: self.name.len() as u32,
                    vma_name_addr: self.name.as_mut_ptr() as u64,
                    ..ProcmapQuery::default()
                };
                // SAFETY: as above; the name buffer is writable for the size given.
                let r = unsafe {
                    libc::ioctl(self.fd, PROCMAP_QUERY as _, &mut n as *mut ProcmapQuery)
                };
                if r < 0 || n.vma_start != start || n.vma_end != end {
                    return Some(false);
                }
                // The size counts the terminating NUL; 0 for an unnamed mapping.
                name_len = (n.vma_name_size as usize)
                    .saturating_sub(1)
                    .min(self.name.len());
            }
            let f = q.vma_flags;
            let mut prot = 0;
            if f & QUERY_VMA_READABLE != 0 {
                prot |= PROT_R;
            }
            if f & QUERY_VMA_WRITABLE != 0 {
                prot |= PROT_W;
            }
            if f & QUERY_VMA_EXECUTABLE != 0 {
                prot |= PROT_X;
            }
            let e = Entry {
                start,
                end,
                prot,
                shared: f & QUERY_VMA_SHARED != 0,
                name: &self.name[..name_len],
            };
            if !visit(&e) {
                return Some(true);
            }
            let next = resume(start, end).max(end);
            if next <= addr {
                return Some(false);
            }
            addr = next;
        }
    }
}

impl Default for SelfMaps {
    fn default() -> Self {
        SelfMaps::new()
    }
}

/// The entries of a maps text; malformed lines are skipped.
pub fn entries(text: &[u8]) -> impl Iterator<Item = Entry<'_>> {
    text.split(|b| *b == b'\n').filter_map(parse_line)
}

fn hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v = 0u64;
    for &c in s {
        let d = (c as char).to_digit(16)? as u64;
        v = v << 4 | d;
    }
    Some(v)
}

fn parse_line(line: &[u8]) -> Option<Entry<'_>> {
    let mut fields = line.splitn(6, |b| *b == b' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let name = fields.next().unwrap_or(b"");
    let dash = range.iter().position(|b| *b == b'-')?;
    let start = hex(&range[..dash])?;
    let end = hex(&range[dash + 1..])?;
    if perms.len() < 4 || end <= start {
        return None;
    }
    let mut prot = 0;
    if perms[0] == b'r' {
        prot |= PROT_R;
    }
    if perms[1] == b'w' {
        prot |= PROT_W;
    }
    if perms[2] == b'x' {
        prot |= PROT_X;
    }
    let first = name.iter().position(|b| *b != b' ').unwrap_or(name.len());
    Some(Entry {
        start,
        end,
        prot,
        shared: perms[3] == b's',
        name: &name[first..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query walk and the text agree on the mappings this test makes: every backing,
    /// protections, shared and private (other threads of the test harness may map things
    /// meanwhile, so only our ranges are compared).
    #[test]
    fn query_and_text_agree() {
        let ps = 4096usize;
        let mut made = Vec::new();
        // SAFETY: fresh mappings made and removed here; nothing else refers to them.
        unsafe {
            let zero = libc::open(c"/dev/zero".as_ptr(), libc::O_RDWR);
            assert!(zero >= 0);
            for (flags, fd, prot) in [
                (
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    libc::PROT_READ | libc::PROT_WRITE,
                ),
                (libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, libc::PROT_READ),
                (libc::MAP_PRIVATE, zero, libc::PROT_READ | libc::PROT_WRITE),
                (libc::MAP_SHARED, zero, libc::PROT_WRITE),
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, libc::PROT_NONE),
                (
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    libc::PROT_READ | libc::PROT_EXEC,
                ),
            ] {
                let p = libc::mmap(std::ptr::null_mut(), 3 * ps, prot, flags, fd, 0);
                assert_ne!(p, libc::MAP_FAILED);
                made.push((p as u64, p as u64 + 3 * ps as u64));
            }
            libc::close(zero);
        }
        let ours = |s: u64, e: u64| made.iter().any(|&(a, b)| s < b && a < e);
        let collect = |m: &mut SelfMaps| {
            let mut v = Vec::new();
            assert!(m.visit(ours, |e| {
                if ours(e.start, e.end) {
                    v.push((e.start, e.end, e.prot, e.shared, e.name.to_vec()));
                }
                true
            }));
            v
        };
        let mut m = SelfMaps::new();
        let queried = collect(&mut m);
        let mut text = vec![0u8; 1 << 20];
        let n = read_self_maps(&mut text);
        let listed: Vec<_> = entries(&text[..n])
            .filter(|e| ours(e.start, e.end))
            .map(|e| (e.start, e.end, e.prot, e.shared, e.name.to_vec()))
            .collect();
        assert_eq!(queried, listed);
        assert_eq!(listed.len(), made.len(), "{listed:?}");
        if NO_QUERY.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!("PROCMAP_QUERY unavailable: compared the text with itself");
        }
        for (a, b) in made {
            // SAFETY: unmapping what this test mapped.
            unsafe { libc::munmap(a as *mut libc::c_void, (b - a) as usize) };
        }
    }

    #[test]
    fn parses_the_three_anonymous_names() {
        let text = b"7f0000000000-7f0000002000 rw-p 00000000 00:00 0 \n\
7f0000002000-7f0000003000 rw-s 00000000 00:01 1234                       /dev/zero (deleted)\n\
7f0000003000-7f0000004000 r--p 00000000 00:05 4                          /dev/zero\n\
garbage\n";
        let e: Vec<_> = entries(text).collect();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].backing(), Backing::Anon);
        assert_eq!(e[0].prot, PROT_R | PROT_W);
        assert!(!e[0].shared);
        assert_eq!(e[1].backing(), Backing::Shmem);
        assert!(e[1].shared);
        assert_eq!(e[2].backing(), Backing::DevZero);
        assert_eq!(e[2].prot, PROT_R);
    }
}

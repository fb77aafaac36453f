//! /proc/self/maps, read and parsed without allocating (workers run it after fork).
//!
//! Line format (proc(5)): `start-end perms offset dev inode [name]`, addresses in hex, perms
//! `rwxp` / `rwxs`. The name tells the backing (SEMANTICS O4): none for private anonymous
//! memory, `/dev/zero` for a private mapping of /dev/zero, `/dev/zero (deleted)` for a shmem
//! object (shared anonymous or shared /dev/zero).

use crate::outcome::{Backing, PROT_R, PROT_W, PROT_X, Region};

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

//! Regions a runtime under the executor makes for itself (valgrind's shared page for vgdb,
//! an emulator's own memory): kinds of region that show in a process's layout although no op
//! of the program made them. A kind is a protection, private or shared, and a backing, written
//! as in /proc/self/maps: `rw-s:file` (a shared mapping of a named file, read and write),
//! `r--p:anon`, or just `rw-s` (any backing).
//!
//! The checker sets aside an observed region of such a kind only where the model expects
//! nothing at all (`check::compare`): memory the program made is never set aside.

use std::fmt;

use crate::program::outcome::{Backing, PROT_R, PROT_W, PROT_X, Region};

/// A kind of region that a runtime makes for itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionKind {
    pub prot: u8,
    pub shared: bool,
    /// `None`: any backing.
    pub backing: Option<Backing>,
}

impl RegionKind {
    /// The kind of an observed region.
    pub fn of(r: &Region) -> RegionKind {
        RegionKind {
            prot: r.prot,
            shared: r.shared,
            backing: Some(r.backing),
        }
    }

    pub fn matches(&self, r: &Region) -> bool {
        r.prot == self.prot
            && r.shared == self.shared
            && self.backing.is_none_or(|b| b == r.backing)
    }

    /// Parses `PERMS[:BACKING]`: PERMS as in /proc/self/maps (`rw-s`, `r-xp`), BACKING one
    /// of `anon`, `dev-zero`, `shmem`, `file`.
    pub fn parse(s: &str) -> Result<RegionKind, String> {
        let (perms, backing) = match s.split_once(':') {
            Some((p, b)) => (p, Some(b)),
            None => (s, None),
        };
        let p = perms.as_bytes();
        let bad = || {
            format!(
                "a region kind is PERMS[:BACKING], PERMS as in /proc/self/maps (rw-s, r--p), \
                 BACKING anon, dev-zero, shmem or file; not `{s}`"
            )
        };
        if p.len() != 4 {
            return Err(bad());
        }
        let mut prot = 0;
        for (i, (c, bit)) in [(b'r', PROT_R), (b'w', PROT_W), (b'x', PROT_X)]
            .into_iter()
            .enumerate()
        {
            match p[i] {
                x if x == c => prot |= bit,
                b'-' => {}
                _ => return Err(bad()),
            }
        }
        let shared = match p[3] {
            b's' => true,
            b'p' => false,
            _ => return Err(bad()),
        };
        let backing = match backing {
            None => None,
            Some("anon") => Some(Backing::Anon),
            Some("dev-zero") => Some(Backing::DevZero),
            Some("shmem") => Some(Backing::Shmem),
            Some("file") => Some(Backing::Other),
            Some("hugetlb") => Some(Backing::Hugetlb),
            Some(_) => return Err(bad()),
        };
        Ok(RegionKind {
            prot,
            shared,
            backing,
        })
    }
}

impl fmt::Display for RegionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bit = |b: u8, c: char| if self.prot & b != 0 { c } else { '-' };
        write!(
            f,
            "{}{}{}{}",
            bit(PROT_R, 'r'),
            bit(PROT_W, 'w'),
            bit(PROT_X, 'x'),
            if self.shared { 's' } else { 'p' }
        )?;
        match self.backing {
            None => Ok(()),
            Some(Backing::Anon) => write!(f, ":anon"),
            Some(Backing::DevZero) => write!(f, ":dev-zero"),
            Some(Backing::Shmem) => write!(f, ":shmem"),
            Some(Backing::Other) => write!(f, ":file"),
            Some(Backing::Hugetlb) => write!(f, ":hugetlb"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for s in [
            "rw-s:file",
            "r--p:anon",
            "rw-s",
            "---p:shmem",
            "rwxp:dev-zero",
        ] {
            assert_eq!(RegionKind::parse(s).unwrap().to_string(), s);
        }
        for s in ["", "rw-", "rw-q", "wr-s", "rw-s:", "rw-s:disk", "rw-ss"] {
            assert!(RegionKind::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn matches_kind_and_backing() {
        let r = Region {
            start: 0x1000,
            end: 0x2000,
            prot: PROT_R | PROT_W,
            shared: true,
            backing: Backing::Other,
        };
        assert!(RegionKind::parse("rw-s:file").unwrap().matches(&r));
        assert!(RegionKind::parse("rw-s").unwrap().matches(&r));
        assert!(!RegionKind::parse("rw-s:shmem").unwrap().matches(&r));
        assert!(!RegionKind::parse("rw-p").unwrap().matches(&r));
        assert!(!RegionKind::parse("r--s").unwrap().matches(&r));
        assert_eq!(RegionKind::of(&r), RegionKind::parse("rw-s:file").unwrap());
    }
}

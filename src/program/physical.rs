//! The physical channel's vocabulary: what a process reports about the pages behind its
//! mappings (docs/SEMANTICS.md part 11, I2 to I10), and which parts of the channel ran.
//!
//! A page's physical fact travels as one 64-bit word in the layout of `/proc/PID/pagemap`
//! (Documentation/admin-guide/mm/pagemap.rst): present (63), swapped (62), file page or shared
//! anonymous (61), guard region (58), uffd-wp (57), exclusively mapped (56), soft-dirty (55),
//! and the page frame number in bits 0-54 (0 without CAP_SYS_ADMIN). Where the
//! `PAGEMAP_SCAN` ioctl told that a present page is the shared zero page, `ZERO_PAGE` is set
//! (bit 54, which pagemap itself never sets as a PFN bit on any machine with fewer than 2^54
//! frames; `pm::PFN` excludes it).

/// Bits of a pagemap word (fs/proc/task_mmu.c: PM_PRESENT, PM_SWAP, PM_FILE, PM_GUARD_REGION,
/// PM_UFFD_WP, PM_MMAP_EXCLUSIVE, PM_SOFT_DIRTY, PM_PFRAME_MASK).
pub mod pm {
    pub const PRESENT: u64 = 1 << 63;
    pub const SWAPPED: u64 = 1 << 62;
    pub const FILE: u64 = 1 << 61;
    pub const GUARD: u64 = 1 << 58;
    pub const UFFD_WP: u64 = 1 << 57;
    pub const EXCLUSIVE: u64 = 1 << 56;
    pub const SOFT_DIRTY: u64 = 1 << 55;
    /// Ours, not the kernel's: `PAGEMAP_SCAN` said PAGE_IS_PFNZERO.
    pub const ZERO_PAGE: u64 = 1 << 54;
    /// Ours, not the kernel's (pagemap's bits 59-60 are always zero): `mincore` said the page
    /// is resident (its vector's bit 0), read right after the word (I10).
    pub const RESIDENT: u64 = 1 << 60;
    /// Ours, not the kernel's: `PAGEMAP_SCAN` said PAGE_IS_HUGE, the page is mapped by a PMD
    /// (a transparent huge page or the huge zero page, mapped whole: I20). Bit 53, which no
    /// machine with fewer than 2^53 frames has as a PFN bit.
    pub const HUGE: u64 = 1 << 53;
    /// The page frame number (bits 0-52 here; 0-54 in the kernel's word).
    pub const PFN: u64 = (1 << 53) - 1;
}

/// What a process's `/proc/self/smaps` said of each region of its view (I11 to I13): after the
/// region's pagemap words come, per region in order, `WORDS` words: the number of smaps
/// entries (VMAs) summed, or `UNKNOWN` where a VMA reaches outside the region (the harness's
/// neighbour), then each of `FIELDS` in kB, summed over those VMAs; then `TRAILER`.
pub mod smaps {
    /// The smaps fields read, in this order (each line `Name:   <n> kB`).
    pub const FIELDS: [&str; 12] = [
        "Rss",
        "Pss",
        "Anonymous",
        "Shared_Clean",
        "Shared_Dirty",
        "Private_Clean",
        "Private_Dirty",
        "LazyFree",
        "AnonHugePages",
        "Swap",
        "Private_Hugetlb",
        "Shared_Hugetlb",
    ];
    pub const RSS: usize = 0;
    pub const PSS: usize = 1;
    pub const ANON: usize = 2;
    pub const SHARED_CLEAN: usize = 3;
    pub const SHARED_DIRTY: usize = 4;
    pub const PRIVATE_CLEAN: usize = 5;
    pub const PRIVATE_DIRTY: usize = 6;
    pub const LAZYFREE: usize = 7;
    pub const ANON_HUGE: usize = 8;
    pub const SWAP: usize = 9;
    pub const PRIVATE_HUGETLB: usize = 10;
    pub const SHARED_HUGETLB: usize = 11;
    /// Words per region: the entry count, then the fields.
    pub const WORDS: usize = 1 + FIELDS.len();
    /// The entry count of a region whose sums would include memory outside it.
    pub const UNKNOWN: u64 = u64::MAX;

    /// The last word of a view's physical words when smaps words come before it: bit 59,
    /// which no pagemap word has (the kernel's bits 59-60 are zero, and `pm::RESIDENT` is 60),
    /// with the number of regions in the low bits.
    pub const TRAILER: u64 = 1 << 59;

    /// How many of a view's physical words `phys` are pagemap words (the rest, if any, are its
    /// smaps words and their trailer).
    pub fn page_words(phys: &[u64], regions: usize) -> usize {
        match phys.last() {
            Some(&t) if t & TRAILER != 0 && t & !TRAILER == regions as u64 => phys
                .len()
                .checked_sub(1 + regions * WORDS)
                .unwrap_or(phys.len()),
            _ => phys.len(),
        }
    }

    /// A view's pagemap words and, if they were read, its smaps words (`WORDS` per region):
    /// `phys` holds `pages` words, or `pages + regions * WORDS` and the trailer.
    pub fn split(phys: &[u64], pages: usize, regions: usize) -> (&[u64], Option<&[u64]>) {
        let n = page_words(phys, regions);
        if n == pages && phys.len() == pages + regions * WORDS + 1 && regions > 0 {
            let (w, s) = phys.split_at(pages);
            (w, Some(&s[..regions * WORDS]))
        } else {
            (phys, None)
        }
    }
}

/// One part of the physical channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// `/proc/self/pagemap` read by each process of the tree at every full-state snapshot.
    Pagemap,
    /// The `PAGEMAP_SCAN` ioctl (6.7+): which present pages are the zero page.
    PagemapScan,
    /// Page frame numbers in pagemap (CAP_SYS_ADMIN): frame identity across processes.
    Pfn,
    /// `mincore` over each region, read with the pagemap words (I10).
    Mincore,
    /// `/proc/self/smaps`, summed per region, read after the pagemap words (I11 to I13).
    Smaps,
    /// A memory cgroup's `memory.stat` for the program's tree: not built (I10, I14), always
    /// skipped with the reason.
    Cgroup,
}

impl Channel {
    pub const ALL: [Channel; 6] = [
        Channel::Pagemap,
        Channel::PagemapScan,
        Channel::Pfn,
        Channel::Mincore,
        Channel::Smaps,
        Channel::Cgroup,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Channel::Pagemap => "pagemap",
            Channel::PagemapScan => "pagemap-scan",
            Channel::Pfn => "pfn",
            Channel::Mincore => "mincore",
            Channel::Smaps => "smaps",
            Channel::Cgroup => "cgroup",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Channel::Pagemap => 0,
            Channel::PagemapScan => 1,
            Channel::Pfn => 2,
            Channel::Mincore => 3,
            Channel::Smaps => 4,
            Channel::Cgroup => 5,
        }
    }
}

/// Why a part of the channel did not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Skip {
    /// Turned off (`--no-physical`).
    Disabled,
    /// `/proc/self/pagemap` could not be opened or read.
    NoPagemap,
    /// pagemap did not show a page this process had just written as present (an emulator
    /// whose /proc is the host's, or a guest address space that is not the host's).
    NotOwnPages,
    /// The ioctl is unknown here (before 6.7: ENOTTY or EINVAL).
    NoIoctl,
    /// PFNs read as 0: no CAP_SYS_ADMIN.
    NoPfn,
    /// Needs the pagemap channel, which did not run.
    NeedsPagemap,
    /// Under an emulator (`--under qemu-*`): left out, so that its snapshots read pages the way
    /// they always have there (`process_vm_readv`) and its findings stay comparable.
    Emulator,
    /// Transparent huge pages are `always` on: a huge page may back any private page of a
    /// PMD-sized range at any fault (a snapshot's reads included) and stay behind in pieces
    /// after a split, which the model's frames do not follow (I9, L4).
    ThpAlways,
    /// `mincore` failed on a page this process had just written (an emulator without it).
    NoMincore,
    /// Swap is on: a shared object's page may be swapped out, which `mincore` reports as not
    /// resident, and pagemap cannot say so for a page not mapped here (I10).
    Swap,
    /// `/proc/self/smaps` could not be read, or did not show the probe's written page.
    NoSmaps,
    /// No cgroup v2 memory controller (it is on cgroup v1, or absent).
    NoCgroupMemory,
    /// A cgroup v2 memory controller is there, but its counters lag (I10): not built.
    CgroupLags,
    /// smaps is read only when asked (`run --smaps`, `bench --smaps`): its cost (I11).
    SmapsOff,
}

impl Skip {
    pub fn reason(self) -> &'static str {
        match self {
            Skip::Disabled => "turned off (--no-physical)",
            Skip::NoPagemap => "/proc/self/pagemap cannot be read",
            Skip::NotOwnPages => {
                "/proc/self/pagemap does not show this process's own written page as present \
                 (an emulator's or another address space's)"
            }
            Skip::NoIoctl => "the PAGEMAP_SCAN ioctl is unknown here (6.7+)",
            Skip::NoPfn => "page frame numbers read as 0 (needs CAP_SYS_ADMIN)",
            Skip::NeedsPagemap => "needs the pagemap channel",
            Skip::ThpAlways => {
                "transparent huge pages are `always` here: a huge page may back any private \
                 page at any fault, which the model's frames do not follow"
            }
            Skip::NoMincore => "mincore failed on, or did not report, a page just written",
            Skip::Swap => {
                "swap is on: a shared object's page may be swapped out, which mincore reports \
                 as not resident"
            }
            Skip::NoSmaps => {
                "/proc/self/smaps cannot be read, or does not show a page this process has just \
                 written"
            }
            Skip::NoCgroupMemory => {
                "no cgroup v2 memory controller here (the memory controller is on cgroup v1, \
                 whose counters lag like v2's, I10, and which cowcheck does not use)"
            }
            Skip::CgroupLags => {
                "a memory cgroup's memory.stat lags by the per-CPU flush threshold (I10); not \
                 built"
            }
            Skip::SmapsOff => {
                "off in campaigns: reading /proc/self/smaps at each program's end costs 9% more \
                 time a program, 22% on --core's small programs (I11); --smaps turns it on \
                 (replay, corpus and shrink always read it)"
            }
            Skip::Emulator => {
                "under an emulator (--under qemu-*): its /proc is the host's view of the \
                 emulator, and snapshots keep reading pages with process_vm_readv as the \
                 emulator implements it"
            }
        }
    }

    fn code(self) -> u8 {
        match self {
            Skip::Disabled => 1,
            Skip::NoPagemap => 2,
            Skip::NotOwnPages => 3,
            Skip::NoIoctl => 4,
            Skip::NoPfn => 5,
            Skip::NeedsPagemap => 6,
            Skip::Emulator => 7,
            Skip::ThpAlways => 8,
            Skip::NoMincore => 9,
            Skip::Swap => 10,
            Skip::NoSmaps => 11,
            Skip::NoCgroupMemory => 12,
            Skip::CgroupLags => 13,
            Skip::SmapsOff => 14,
        }
    }

    fn of_code(c: u8) -> Option<Skip> {
        Some(match c {
            1 => Skip::Disabled,
            2 => Skip::NoPagemap,
            3 => Skip::NotOwnPages,
            4 => Skip::NoIoctl,
            5 => Skip::NoPfn,
            6 => Skip::NeedsPagemap,
            7 => Skip::Emulator,
            8 => Skip::ThpAlways,
            9 => Skip::NoMincore,
            10 => Skip::Swap,
            11 => Skip::NoSmaps,
            12 => Skip::NoCgroupMemory,
            13 => Skip::CgroupLags,
            14 => Skip::SmapsOff,
            _ => return None,
        })
    }
}

/// Which parts of the physical channel run on this target (probed by the executor at start,
/// carried in its hello).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Channels {
    pub pagemap: Result<(), Skip>,
    pub scan: Result<(), Skip>,
    pub pfn: Result<(), Skip>,
    pub mincore: Result<(), Skip>,
    pub smaps: Result<(), Skip>,
    pub cgroup: Result<(), Skip>,
}

impl Channels {
    /// Nothing runs, for `why`.
    pub const fn off(why: Skip) -> Channels {
        Channels {
            pagemap: Err(why),
            scan: Err(why),
            pfn: Err(why),
            mincore: Err(why),
            smaps: Err(why),
            cgroup: Err(why),
        }
    }

    pub fn get(&self, c: Channel) -> Result<(), Skip> {
        match c {
            Channel::Pagemap => self.pagemap,
            Channel::PagemapScan => self.scan,
            Channel::Pfn => self.pfn,
            Channel::Mincore => self.mincore,
            Channel::Smaps => self.smaps,
            Channel::Cgroup => self.cgroup,
        }
    }

    /// (name, `Ok` or the reason it was skipped), for reports.
    pub fn list(&self) -> Vec<(&'static str, Result<(), &'static str>)> {
        Channel::ALL
            .iter()
            .map(|&c| (c.name(), self.get(c).map_err(Skip::reason)))
            .collect()
    }

    /// Four bits per channel, in `Channel::ALL` order: 0 ran, else the skip's code.
    pub fn to_words(&self) -> u32 {
        Channel::ALL.iter().fold(0u32, |acc, &c| {
            let b = match self.get(c) {
                Ok(()) => 0,
                Err(s) => s.code(),
            };
            acc | (b as u32) << (4 * c.bit())
        })
    }

    pub fn from_words(w: u32) -> Option<Channels> {
        if w >> (4 * Channel::ALL.len()) != 0 {
            return None;
        }
        let at = |c: Channel| match (w >> (4 * c.bit())) as u8 & 0xf {
            0 => Some(Ok(())),
            b => Skip::of_code(b).map(Err),
        };
        Some(Channels {
            pagemap: at(Channel::Pagemap)?,
            scan: at(Channel::PagemapScan)?,
            pfn: at(Channel::Pfn)?,
            mincore: at(Channel::Mincore)?,
            smaps: at(Channel::Smaps)?,
            cgroup: at(Channel::Cgroup)?,
        })
    }
}

impl Default for Channels {
    fn default() -> Channels {
        Channels::off(Skip::Disabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip() {
        for c in [
            Channels {
                pagemap: Ok(()),
                scan: Err(Skip::NoIoctl),
                pfn: Err(Skip::NoPfn),
                mincore: Err(Skip::Swap),
                smaps: Ok(()),
                cgroup: Err(Skip::NoCgroupMemory),
            },
            Channels::off(Skip::Disabled),
            Channels {
                pagemap: Ok(()),
                scan: Ok(()),
                pfn: Ok(()),
                mincore: Ok(()),
                smaps: Err(Skip::NoSmaps),
                cgroup: Err(Skip::CgroupLags),
            },
        ] {
            assert_eq!(Channels::from_words(c.to_words()), Some(c));
        }
        assert_eq!(Channels::from_words(0x7f), None);
        // 3 pages in 2 regions, with and without smaps words.
        let mut phys = vec![pm::PRESENT; 3];
        assert_eq!(smaps::page_words(&phys, 2), 3);
        phys.extend([1; 2 * smaps::WORDS]);
        phys.push(smaps::TRAILER | 2);
        assert_eq!(smaps::page_words(&phys, 2), 3);
        assert_eq!(
            smaps::split(&phys, 3, 2).1.map(|s| s.len()),
            Some(2 * smaps::WORDS)
        );
        assert_eq!(Channels::from_words(0x7f << 24), None);
    }
}

//! The huge-page backings family (docs/SEMANTICS.md L1-L4): mappings the size of one or two
//! PMDs (and a page short of or past one), MADV_HUGEPAGE, MADV_NOHUGEPAGE and MADV_COLLAPSE on
//! them, whole-PMD writes and reads (a huge page, the huge zero page, where THP gives them), and
//! the ops that cut a huge page (one page unmapped, protected, dropped or moved out, a range
//! across a PMD boundary). Forks, exits and the rest come from the classic ops around them.
//!
//! hugetlb maps and the ops on them are this family's too, drawn by `hugetlb.rs`.
//!
//! Lengths are in pages, 512 to a PMD: the PMD of x86-64 and of arm64 with 4 KiB pages. On
//! other page sizes the programs stay valid and simply cut no PMD.

use super::{Builder, RawOp};
use crate::program::op::{
    Advice, MapArgs, MapId, MapKind, Op, PageRange, Pattern, ProcId, Prot, RemapFlags, Span, caps,
};

/// Pages in one PMD on a 4 KiB kernel.
const PMD: u16 = 512;

/// A mapping this family counts as big: at least half a PMD.
const BIG: u16 = PMD / 2;

/// The lengths a big map takes: whole PMDs mostly (aligned by the kernel, L1), and one page
/// short of or past one (not aligned: a huge page only where one fits inside).
const LENGTHS: [u16; 6] = [PMD, PMD, PMD, 2 * PMD, PMD - 1, PMD + 1];

impl Builder {
    /// Adds one op of the backings family from `r`: a big map while there is none to work on.
    pub(super) fn add_backings(&mut self, r: &RawOp) {
        // One op in eight is a hugetlb op where hugetlb was probed (L6-L12, `hugetlb.rs`):
        // elsewhere these bytes decode as they always did.
        if self.config.features.hugetlb && r.verb & 0x38 == 0x38 {
            self.add_hugetlb(r);
            return;
        }
        let p = self.pick_proc(r.who);
        let Some(m) = self.pick_big(p, r.what) else {
            self.big_map(p, r);
            return;
        };
        let size = self.sizes[m.0 as usize];
        let kind = self.kinds[m.0 as usize];
        match r.verb % 8 {
            0 => self.big_map(p, r),
            1 | 2 => {
                let f = self.config.features;
                let advice = match r.c % 4 {
                    0 | 1 => Advice::HugePage,
                    2 => Advice::NoHugePage,
                    _ if f.allows(Advice::Collapse, kind) => Advice::Collapse,
                    _ => Advice::HugePage,
                };
                let pages = self.huge_range(size, r);
                self.push(Op::Advise {
                    proc: p,
                    map: m,
                    pages,
                    tail: 0,
                    advice,
                });
            }
            3 => {
                let pattern = if r.d & 1 == 0 {
                    Pattern::Fill(r.c | 1)
                } else {
                    Pattern::Ramp(r.c)
                };
                let pages = self.huge_range(size, r);
                self.push(Op::Write {
                    proc: p,
                    map: m,
                    span: Span::Pages(pages),
                    pattern,
                });
            }
            4 => {
                let pages = self.huge_range(size, r);
                self.push(Op::Read {
                    proc: p,
                    map: m,
                    span: Span::Pages(pages),
                });
            }
            5 => self.cut(p, m, size, r),
            6 if self.config.features.collapse => {
                self.push(Op::Advise {
                    proc: p,
                    map: m,
                    pages: PageRange::new(0, size),
                    tail: 0,
                    advice: Advice::Collapse,
                });
            }
            _ => self.move_part(p, m, size, r),
        }
    }

    /// A big mapping `p` holds, if any: the one `what` names among them.
    fn pick_big(&self, p: ProcId, what: u8) -> Option<MapId> {
        let held = self.holds[p.0 as usize];
        let big: Vec<MapId> = (0..self.next_map)
            .filter(|&m| held & 1 << m != 0 && self.sizes[m as usize] >= BIG)
            .map(MapId)
            .collect();
        (!big.is_empty()).then(|| big[what as usize % big.len()])
    }

    /// A map of one of `LENGTHS`, of any kind, mostly followed by MADV_HUGEPAGE on all of it.
    fn big_map(&mut self, p: ProcId, r: &RawOp) {
        if self.next_map as usize >= caps::MAX_MAPS {
            return;
        }
        let kind = MapKind::ALL[r.c as usize % 4];
        let pages = LENGTHS[r.a as usize % LENGTHS.len()];
        let m = MapId(self.next_map);
        let op = Op::Map {
            proc: p,
            map: m,
            kind,
            pages,
            tail: 0,
            args: MapArgs::default(),
        };
        if self.push(op) {
            self.created(p, m, kind, pages);
            // Mostly advised at once, so that the first touch may fault in a huge page where
            // THP is `enabled=madvise`.
            if !r.d.is_multiple_of(4) && self.ops.len() < self.config.max_ops.min(caps::MAX_OPS) {
                self.push(Op::Advise {
                    proc: p,
                    map: m,
                    pages: PageRange::new(0, pages),
                    tail: 0,
                    advice: Advice::HugePage,
                });
            }
        }
    }

    /// A range of a big mapping of `size` pages: the whole of it, its first PMD, its second,
    /// one page, or a few pages across the first PMD boundary.
    fn huge_range(&self, size: u16, r: &RawOp) -> PageRange {
        match r.b % 6 {
            0 | 1 => PageRange::new(0, size),
            2 => PageRange::new(0, PMD.min(size)),
            3 if size >= 2 * PMD => PageRange::new(PMD, 2 * PMD),
            4 if size > PMD + 2 => PageRange::new(PMD - 2, PMD + 2),
            _ => {
                let page = r.a % size;
                PageRange::new(page, page + 1)
            }
        }
    }

    /// An op that cuts a huge page: one page (or a few) in it unmapped, made read-only or
    /// inaccessible, or dropped with MADV_DONTNEED.
    fn cut(&mut self, p: ProcId, m: MapId, size: u16, r: &RawOp) {
        let start = r.a % size;
        let pages = PageRange::new(start, (start + 1 + r.d as u16 % 4).min(size));
        let op = match r.c % 4 {
            0 => Op::Unmap {
                proc: p,
                map: m,
                pages,
                tail: 0,
            },
            1 | 2 => Op::Protect {
                proc: p,
                map: m,
                pages,
                tail: 0,
                prot: if r.c % 4 == 1 { Prot::Read } else { Prot::None },
            },
            _ => Op::Advise {
                proc: p,
                map: m,
                pages,
                tail: 0,
                advice: Advice::DontNeed,
            },
        };
        self.push(op);
    }

    /// mremap of part of a huge page out to a place of the kernel's choice (growing it by a page,
    /// so that it moves), or of the whole mapping to two PMDs.
    fn move_part(&mut self, p: ProcId, m: MapId, size: u16, r: &RawOp) {
        if self.next_map as usize >= caps::MAX_MAPS {
            return;
        }
        let kind = self.kinds[m.0 as usize];
        let (old, new_pages) = if r.d.is_multiple_of(4) && size <= PMD + 1 {
            (PageRange::new(0, size), 2 * PMD)
        } else {
            let start = r.a % size;
            let end = (start + 1 + r.b % 16).min(size);
            (PageRange::new(start, end), end - start + 1)
        };
        let result = MapId(self.next_map);
        let op = Op::Remap {
            proc: p,
            map: m,
            old,
            old_tail: 0,
            new_pages,
            new_tail: 0,
            flags: RemapFlags {
                maymove: true,
                ..RemapFlags::default()
            },
            result,
        };
        if self.push(op) {
            self.created(p, result, kind, new_pages);
        }
    }
}

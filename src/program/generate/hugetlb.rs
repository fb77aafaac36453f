//! hugetlb ops of the backings family (docs/SEMANTICS.md L6-L12), drawn only where the executor
//! probed hugetlb (`Features::hugetlb`): MAP_HUGETLB maps, private and shared, of one base page
//! (a whole huge page), one or two huge pages or a length between; whole-huge-page and
//! one-page writes and reads; forks and writes by the other processes that map it (copy on
//! write, and the reservation rules: a child's copy may find no page); and the calls whose
//! range cuts a huge page (munmap, mprotect, madvise of one base page: EINVAL) beside the same
//! calls on whole huge pages. Exits and the rest come from the classic ops around them.

use super::{Builder, RawOp};
use crate::program::op::{
    Advice, MapArgs, MapId, MapKind, Op, PageRange, Pattern, ProcId, Prot, Span, caps,
};

/// Base pages in one huge page (the language's, `caps::HUGETLB_PAGES`).
const HUGE: u16 = caps::HUGETLB_PAGES;

/// The lengths a hugetlb map asks for, in base pages: one page (rounded up to a whole huge
/// page), one huge page, a page past it (two), two, and a length inside the first.
const LENGTHS: [u16; 5] = [1, HUGE, HUGE + 1, 2 * HUGE, 100];

impl Builder {
    /// Adds one hugetlb op from `r` for a process: a hugetlb map while it holds none.
    pub(super) fn add_hugetlb(&mut self, r: &RawOp) {
        let p = self.pick_proc(r.who);
        let Some(m) = self.pick_hugetlb(p, r.what) else {
            self.hugetlb_map(p, r);
            return;
        };
        let size = self.sizes[m.0 as usize];
        match r.c % 8 {
            0 => self.hugetlb_map(p, r),
            1 | 2 => {
                // A store by whoever maps it: the maker, or a fork relative (copy on write,
                // and for a child, a copy the pool may not have a page for: L9).
                let q = self.hugetlb_holder(m, r.who).unwrap_or(p);
                let span = self.hugetlb_span(size, r);
                let pattern = if r.d & 1 == 0 {
                    Pattern::Fill(r.b as u8 | 1)
                } else {
                    Pattern::Ramp(r.b as u8)
                };
                self.push(Op::Write {
                    proc: q,
                    map: m,
                    span,
                    pattern,
                });
            }
            3 => {
                let q = self.hugetlb_holder(m, r.who).unwrap_or(p);
                let span = self.hugetlb_span(size, r);
                self.push(Op::Read {
                    proc: q,
                    map: m,
                    span,
                });
            }
            4 => {
                if self.live.len() >= caps::MAX_LIVE || self.next_proc as usize >= caps::MAX_PROCS {
                    return;
                }
                let child = ProcId(self.next_proc);
                if self.push(Op::Fork { proc: p, child }) {
                    self.next_proc += 1;
                    self.live.push(child);
                    self.holds[child.0 as usize] = self.holds[p.0 as usize];
                }
            }
            5 => {
                let pages = self.hugetlb_cut(size, r);
                self.push(Op::Unmap {
                    proc: p,
                    map: m,
                    pages,
                    tail: 0,
                });
            }
            6 => {
                let pages = self.hugetlb_cut(size, r);
                let prot = [Prot::Read, Prot::None, Prot::ReadWrite][r.d as usize % 3];
                self.push(Op::Protect {
                    proc: p,
                    map: m,
                    pages,
                    tail: 0,
                    prot,
                });
            }
            _ => {
                let pages = self.hugetlb_cut(size, r);
                const ADVICE: [Advice; 8] = [
                    Advice::DontNeed,
                    Advice::DontNeed,
                    Advice::DontFork,
                    Advice::DoFork,
                    Advice::HugePage,
                    Advice::Free,
                    Advice::PageOut,
                    Advice::Remove,
                ];
                let advice = ADVICE[r.d as usize % ADVICE.len()];
                if !self
                    .config
                    .features
                    .allows(advice, self.kinds[m.0 as usize])
                {
                    return;
                }
                self.push(Op::Advise {
                    proc: p,
                    map: m,
                    pages,
                    tail: 0,
                    advice,
                });
            }
        }
    }

    /// A hugetlb mapping `p` holds, if any: the one `what` names among them.
    fn pick_hugetlb(&self, p: ProcId, what: u8) -> Option<MapId> {
        let held = self.holds[p.0 as usize];
        let huge: Vec<MapId> = (0..self.next_map)
            .map(MapId)
            .filter(|&m| held & 1 << m.0 != 0 && self.v.is_hugetlb(m))
            .collect();
        (!huge.is_empty()).then(|| huge[what as usize % huge.len()])
    }

    /// A live process that holds `m` (by the static guess), `who` choosing among them.
    fn hugetlb_holder(&self, m: MapId, who: u8) -> Option<ProcId> {
        let holders: Vec<ProcId> = self
            .live
            .iter()
            .copied()
            .filter(|q| self.holds[q.0 as usize] & 1 << m.0 != 0)
            .collect();
        (!holders.is_empty()).then(|| holders[who as usize % holders.len()])
    }

    /// A hugetlb map of one of `LENGTHS`, private mostly.
    fn hugetlb_map(&mut self, p: ProcId, r: &RawOp) {
        if self.next_map as usize >= caps::MAX_MAPS {
            return;
        }
        let kind = if r.d.is_multiple_of(3) {
            MapKind::Shared
        } else {
            MapKind::Private
        };
        let pages = LENGTHS[r.a as usize % LENGTHS.len()];
        let m = MapId(self.next_map);
        let op = Op::Map {
            proc: p,
            map: m,
            kind,
            pages,
            tail: 0,
            args: MapArgs {
                hugetlb: true,
                ..MapArgs::default()
            },
        };
        if self.push(op) {
            let extent = self.v.map_pages(m).unwrap_or(pages);
            self.created(p, m, kind, extent);
        }
    }

    /// What a load or store covers: a whole huge page, one base page, the last base page of a
    /// huge page, or all of the mapping.
    fn hugetlb_span(&self, size: u16, r: &RawOp) -> Span {
        let huge = (r.a % (size / HUGE).max(1)) * HUGE;
        match r.b % 4 {
            0 => Span::Pages(PageRange::new(huge, huge + HUGE)),
            1 => Span::Pages(PageRange::new(huge + r.a % HUGE, huge + r.a % HUGE + 1)),
            2 => Span::Pages(PageRange::new(huge + HUGE - 1, huge + HUGE)),
            _ => Span::Pages(PageRange::new(0, size)),
        }
    }

    /// A range for munmap, mprotect and madvise: a whole huge page (or all of the mapping), or
    /// base pages that cut one (at its start, inside it, or across the boundary between two).
    fn hugetlb_cut(&self, size: u16, r: &RawOp) -> PageRange {
        let huge = (r.a % (size / HUGE).max(1)) * HUGE;
        match r.b % 6 {
            0 | 1 => PageRange::new(huge, huge + HUGE),
            2 => PageRange::new(0, size),
            3 => PageRange::new(huge, huge + 1),
            4 if size > HUGE => PageRange::new(HUGE - 1, HUGE + 1),
            _ => {
                let page = huge + 1 + r.a % (HUGE - 1);
                PageRange::new(page, page + 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::program::generate::{GenConfig, random_program};
    use crate::program::{MapArgs, Op, Validator};

    /// Campaigns draw hugetlb maps, forks of processes that hold one and the calls that cut a
    /// huge page (where hugetlb was probed), and none where it was not. Prints the counts for
    /// `run --cases N --seed 1` (`COWCHECK_HUGETLB_CASES=N`, 2000 by default).
    #[test]
    fn campaigns_draw_hugetlb_only_where_probed() {
        let cases: u64 = std::env::var("COWCHECK_HUGETLB_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000);
        let (mut programs, mut maps, mut forks, mut cuts) = (0, 0, 0, 0);
        for index in 0..cases {
            let program = random_program(1, index, GenConfig::default());
            let mut v = Validator::new();
            let mut any = false;
            for op in &program.ops {
                let holds_huge =
                    |v: &Validator| (0..32u8).any(|m| v.is_hugetlb(crate::program::MapId(m)));
                match *op {
                    Op::Map {
                        args: MapArgs { hugetlb: true, .. },
                        ..
                    } => {
                        maps += 1;
                        any = true;
                    }
                    Op::Fork { .. } if holds_huge(&v) => forks += 1,
                    Op::Unmap { map, pages, .. }
                    | Op::Protect { map, pages, .. }
                    | Op::Advise { map, pages, .. }
                        if v.is_hugetlb(map)
                            && (pages.start % 512 != 0 || pages.end % 512 != 0) =>
                    {
                        cuts += 1
                    }
                    _ => {}
                }
                v.admit(op).expect("generated programs are valid");
            }
            programs += any as u32;
        }
        println!(
            "seed 1, {cases} programs: {programs} with hugetlb maps, {maps} hugetlb maps, {forks} forks after one, {cuts} calls cutting a huge page"
        );
        assert!(maps > 0 && forks > 0 && cuts > 0);
        let mut config = GenConfig::default();
        config.features.hugetlb = false;
        for index in 0..200 {
            let program = random_program(1, index, config);
            assert!(!program.ops.iter().any(|op| matches!(
                op,
                Op::Map {
                    args: MapArgs { hugetlb: true, .. },
                    ..
                }
            )));
        }
    }
}

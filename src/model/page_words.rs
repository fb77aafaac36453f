//! A view's pagemap words by process and page number, for the rules that learn from them
//! (`thp.rs`, `thp_collapse.rs`, `thp_pieces.rs`). An index over the snapshot's own vectors:
//! each region of a view is a run of page numbers whose words lie one after another in the
//! view's `phys`, so a lookup is a binary search among the regions, and building the index
//! copies no word (a map of every word cost 5% of a campaign's CPU, `perf`, session 10).

use crate::program::ProcId;
use crate::program::outcome::Snapshot;

/// One region's pages `[start, end)` (page numbers), their words from `at` in `phys`.
#[derive(Clone, Copy, Debug)]
struct Run {
    start: u64,
    end: u64,
    at: usize,
}

#[derive(Debug)]
struct ProcWords<'a> {
    proc: ProcId,
    runs: Vec<Run>,
    phys: &'a [u64],
}

/// Each live process's pagemap words of a view, by page number.
#[derive(Debug)]
pub struct PageWords<'a> {
    /// By process, ascending.
    procs: Vec<ProcWords<'a>>,
}

impl<'a> PageWords<'a> {
    /// The words of every view that read them (`phys` not empty). Words run through the
    /// regions in order, one per page; a view with fewer words than pages has words for its
    /// first pages only.
    pub fn of(observed: &'a Snapshot, page_size: u64) -> PageWords<'a> {
        let mut procs: Vec<ProcWords<'a>> = Vec::new();
        for view in &observed.procs {
            if view.phys.is_empty() {
                continue;
            }
            let mut runs = Vec::with_capacity(view.regions.len());
            let mut at = 0usize;
            for r in &view.regions {
                let pages = ((r.end.saturating_sub(r.start)) / page_size) as usize;
                let n = pages.min(view.phys.len() - at);
                if n > 0 {
                    let start = r.start / page_size;
                    runs.push(Run {
                        start,
                        end: start + n as u64,
                        at,
                    });
                }
                at += n;
                if at == view.phys.len() {
                    break;
                }
            }
            runs.sort_by_key(|r| r.start);
            procs.retain(|p| p.proc != view.proc);
            procs.push(ProcWords {
                proc: view.proc,
                runs,
                phys: &view.phys,
            });
        }
        procs.sort_by_key(|p| p.proc);
        PageWords { procs }
    }

    fn proc(&self, p: ProcId) -> Option<&ProcWords<'a>> {
        let i = self.procs.binary_search_by_key(&p, |w| w.proc).ok()?;
        Some(&self.procs[i])
    }

    /// The word of `(process, page number)`, if the view read one.
    pub fn get(&self, &(p, vpn): &(ProcId, u64)) -> Option<&u64> {
        let w = self.proc(p)?;
        let i = w.runs.partition_point(|r| r.start <= vpn).checked_sub(1)?;
        let r = w.runs[i];
        (vpn < r.end).then(|| &w.phys[r.at + (vpn - r.start) as usize])
    }

    /// Whether the view read `p`'s words.
    pub fn has(&self, p: ProcId) -> bool {
        self.proc(p).is_some_and(|w| !w.runs.is_empty())
    }

    /// Every word with its process and page number, by process and then page.
    pub fn iter(&self) -> impl Iterator<Item = ((ProcId, u64), u64)> + '_ {
        self.procs.iter().flat_map(|w| {
            w.runs.iter().flat_map(move |r| {
                (r.start..r.end).map(move |v| ((w.proc, v), w.phys[r.at + (v - r.start) as usize]))
            })
        })
    }

    /// Whether any word is of a present page with a PFN (the view could read PFNs).
    pub fn any(&self, f: impl Fn(u64) -> bool) -> bool {
        self.procs.iter().any(|w| {
            w.runs.iter().any(|r| {
                w.phys[r.at..r.at + (r.end - r.start) as usize]
                    .iter()
                    .any(|&x| f(x))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::outcome::{Backing, ProcView, Region};
    use std::collections::BTreeMap;

    fn region(start: u64, end: u64) -> Region {
        Region {
            start,
            end,
            prot: 3,
            shared: false,
            backing: Backing::Anon,
        }
    }

    /// The index answers as a map of every word built page by page would.
    #[test]
    fn index_agrees_with_a_map_of_every_word() {
        let ps = 4096;
        let view = |proc: u8, regions: Vec<Region>, n: usize| ProcView {
            proc: ProcId(proc),
            regions,
            pages: Vec::new(),
            phys: (0..n as u64)
                .map(|i| 0x1000 * proc as u64 + i + 1)
                .collect(),
        };
        let snap = Snapshot {
            procs: vec![
                view(
                    2,
                    vec![region(0x10000, 0x13000), region(0x20000, 0x22000)],
                    5,
                ),
                view(0, vec![region(0x5000, 0x8000), region(0x9000, 0xa000)], 3),
                view(1, vec![region(0x5000, 0x8000)], 0),
            ],
        };
        let mut map: BTreeMap<(ProcId, u64), u64> = BTreeMap::new();
        for v in &snap.procs {
            let mut it = v.phys.iter();
            'r: for r in &v.regions {
                let mut a = r.start;
                while a < r.end {
                    let Some(&w) = it.next() else { break 'r };
                    map.insert((v.proc, a / ps), w);
                    a += ps;
                }
            }
        }
        let words = PageWords::of(&snap, ps);
        for p in 0..4u8 {
            for vpn in 0..0x30 {
                assert_eq!(
                    words.get(&(ProcId(p), vpn)),
                    map.get(&(ProcId(p), vpn)),
                    "p{p} {vpn:#x}"
                );
            }
        }
        let all: Vec<_> = words.iter().collect();
        let expected: Vec<_> = map.iter().map(|(&k, &w)| (k, w)).collect();
        assert_eq!(all, expected);
        assert!(words.has(ProcId(0)) && words.has(ProcId(2)));
        assert!(!words.has(ProcId(1)), "a view without words");
        assert!(words.any(|w| w == 0x2001));
        assert!(!words.any(|w| w == 0x9999));
    }
}

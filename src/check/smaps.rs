//! The smaps half of the physical channel's comparison (docs/SEMANTICS.md I11 to I13): what a
//! process's `/proc/self/smaps` said of each region of its view, summed over the region's
//! entries, held against what the model's frames and the pagemap words (read a moment before,
//! in the same process) say the kernel counts there, as `fs/proc/task_mmu.c:
//! smaps_account()` counts: every present page that is not the zero page is resident (I11);
//! its proportional share is the page divided by the page-table entries that map it, and it is
//! Shared_* when two or more do, Private_* otherwise (I12); a private page with a frame is dirty
//! (a shmem page's clean or dirty depends on its entries' history, so only its sum is checked,
//! I12); only a page left open (I9) may be lazily freed or part of a huge page (I13). A shared
//! object's survivor has its pages whole (I14).
//!
//! Each field is a range, exact where every page of the region is determined: the entries that
//! map a shared page are counted like the exclusive bit's (I8: those seen present, and at most
//! those whose copy a digest may have faulted in meanwhile), a page left open may count or not,
//! and a shmem page may be clean or dirty. A region one of whose entries
//! reaches outside it (a neighbour of the harness's) is not checked, nor a snapshot where a live
//! process's pagemap words are missing (its entries could not be counted).

use std::collections::BTreeMap;

use crate::model::{Identity, Model, Prediction, Presence};
use crate::program::outcome::Snapshot;
use crate::program::physical::{pm, smaps};

/// The kernel's fixed-point shift for Pss (fs/proc/task_mmu.c: PSS_SHIFT).
const PSS_SHIFT: u32 = 12;

/// The signature's rule per field, and its ID.
const RULES: [(&str, &str); smaps::FIELDS.len()] = [
    ("smaps Rss", "I11"),
    ("smaps Pss", "I12"),
    ("smaps Anonymous", "I11"),
    ("smaps Shared_Clean", "I12"),
    ("smaps Shared_Dirty", "I12"),
    ("smaps Private_Clean", "I12"),
    ("smaps Private_Dirty", "I12"),
    ("smaps LazyFree", "I13"),
    ("smaps AnonHugePages", "I13"),
    ("smaps Swap", "I11"),
    ("smaps Private_Hugetlb", "I17"),
    ("smaps Shared_Hugetlb", "I17"),
];

/// Sums of two fields checked as one, where each alone is open: (rule, fields).
const SUMS: [(&str, [usize; 2]); 3] = [
    ("smaps Shared_*", [smaps::SHARED_CLEAN, smaps::SHARED_DIRTY]),
    (
        "smaps Private_*",
        [smaps::PRIVATE_CLEAN, smaps::PRIVATE_DIRTY],
    ),
    (
        "smaps *_Hugetlb",
        [smaps::PRIVATE_HUGETLB, smaps::SHARED_HUGETLB],
    ),
];

/// Bounds per field, in bytes (Pss in bytes << PSS_SHIFT).
#[derive(Default)]
struct Bounds {
    lo: [u64; smaps::FIELDS.len()],
    hi: [u64; smaps::FIELDS.len()],
}

impl Bounds {
    fn add(&mut self, f: usize, lo: u64, hi: u64) {
        self.lo[f] += lo;
        self.hi[f] += hi;
    }

    /// What one page adds. `entries` is the range of page-table entries mapping its frame
    /// across the live processes (I8), for a page that is not open.
    fn page(&mut self, ps: u64, pred: &Prediction, word: u64, entries: (usize, usize)) {
        // A hugetlb page is counted in Private_Hugetlb where one page table maps its huge
        // page, Shared_Hugetlb where more do, and in no other field (I17).
        if pred.identity.is_some_and(|id| id.huge_page().is_some()) {
            let (private, shared) = (smaps::PRIVATE_HUGETLB, smaps::SHARED_HUGETLB);
            if pred.open {
                self.add(private, 0, ps);
                self.add(shared, 0, ps);
            } else if word & pm::PRESENT != 0 {
                match entries {
                    (low, _) if low >= 2 => self.add(shared, ps, ps),
                    (_, high) if high < 2 => self.add(private, ps, ps),
                    _ => {
                        self.add(private, 0, ps);
                        self.add(shared, 0, ps);
                    }
                }
            }
            return;
        }
        // A page left open (I9) may count or not, whatever its pagemap word said a moment
        // before: what leaves it open (a racing thread's MADV_DONTNEED or store, T7; reclaim
        // of a lazily freed page) can change it between the two reads. Found by
        // `run --seed 5`: a dontneed racer's page was absent in pagemap and resident in smaps.
        if pred.open {
            for f in 0..smaps::FIELDS.len() {
                if f == smaps::PSS {
                    self.add(f, 0, ps << PSS_SHIFT);
                } else {
                    self.add(f, 0, ps);
                }
            }
            return;
        }
        if word & pm::PRESENT == 0 {
            // A guard marker is a swap-type entry that pagemap shows swapped (and guard);
            // smaps counts no swap for it.
            if word & pm::SWAPPED != 0 && word & pm::GUARD == 0 {
                self.add(smaps::SWAP, ps, ps);
            }
            return;
        }
        let zero_page =
            word & pm::ZERO_PAGE != 0 || (!pred.open && pred.identity == Some(Identity::Zero));
        if zero_page {
            return;
        }
        if pred.identity.is_none() {
            for f in 0..smaps::FIELDS.len() {
                if f == smaps::PSS {
                    self.add(f, 0, ps << PSS_SHIFT);
                } else if f != smaps::SWAP {
                    self.add(f, 0, ps);
                }
            }
            return;
        }
        self.add(smaps::RSS, ps, ps);
        // A page a transparent huge page may back: in AnonHugePages where a PMD maps it (I20).
        if pred.huge && !pred.shared {
            self.add(smaps::ANON_HUGE, 0, ps);
        }
        if !pred.shared {
            self.add(smaps::ANON, ps, ps);
        }
        let (low, high) = entries;
        let share = |m: usize| {
            if m >= 2 {
                (ps << PSS_SHIFT) / m as u64
            } else {
                ps << PSS_SHIFT
            }
        };
        self.add(smaps::PSS, share(high), share(low));
        // (shared, dirty) combinations the page may be in.
        let shared: &[bool] = match (low >= 2, high >= 2) {
            (true, _) => &[true],
            (false, true) => &[true, false],
            (false, false) => &[false],
        };
        // A shmem page is dirty in smaps where this entry's dirty bit is set or the folio was
        // marked dirty (a write fault, an unmap of a dirty entry), and a store through an
        // entry a read fault made writable marks neither: which one it is depends on the
        // entries' history, so only the sum is checked (`SUMS`).
        let dirty: &[bool] = if !pred.shared {
            &[true]
        } else {
            &[true, false]
        };
        let only = shared.len() * dirty.len() == 1;
        for &s in shared {
            for &d in dirty {
                let f = match (s, d) {
                    (true, false) => smaps::SHARED_CLEAN,
                    (true, true) => smaps::SHARED_DIRTY,
                    (false, false) => smaps::PRIVATE_CLEAN,
                    (false, true) => smaps::PRIVATE_DIRTY,
                };
                self.add(f, if only { ps } else { 0 }, ps);
            }
        }
    }
}

/// A region whose smaps sums the frames forbid: the process, the region's start, the rule (a
/// short shape for signatures), its ID, and what was seen and expected.
pub(super) type Difference = (
    crate::program::ProcId,
    u64,
    &'static str,
    &'static str,
    String,
);

/// Checks each view's smaps sums; `entries` holds, per identity not left open, the range of
/// page-table entries mapping it (from the I8 count). Returns the regions checked.
pub(super) fn check(
    model: &Model,
    observed: &Snapshot,
    preds: &[(crate::program::ProcId, Vec<Prediction>)],
    entries: &BTreeMap<Identity, (usize, usize)>,
) -> Result<usize, Difference> {
    let ps = model.page_size() as u64;
    // Every address space's views were read (two processes that share one, a clone child
    // and its parent, read the same smaps; the predictions stand for the first, T31).
    let seen = |p: &crate::program::ProcId| observed.procs.iter().any(|v| v.proc == *p);
    if !preds.iter().all(|(p, _)| seen(p)) || observed.procs.iter().any(|v| v.phys.is_empty()) {
        return Ok(0);
    }
    let mut checked = 0;
    for view in &observed.procs {
        let Some((_, pp)) = preds.iter().find(|(p, _)| *p == view.proc) else {
            continue;
        };
        let by_addr: BTreeMap<u64, &Prediction> = pp.iter().map(|p| (p.addr, p)).collect();
        let pages: usize = view
            .regions
            .iter()
            .map(|r| ((r.end - r.start) / ps) as usize)
            .sum();
        let (words, Some(sums)) = smaps::split(&view.phys, pages, view.regions.len()) else {
            continue;
        };
        let mut k = 0usize;
        'region: for (i, r) in view.regions.iter().enumerate() {
            let n = ((r.end - r.start) / ps) as usize;
            let at = k;
            k += n;
            let got = &sums[i * smaps::WORDS..(i + 1) * smaps::WORDS];
            if got[0] == smaps::UNKNOWN || got[0] == 0 {
                continue;
            }
            let mut b = Bounds::default();
            for (j, &word) in words[at..at + n].iter().enumerate() {
                let addr = r.start + j as u64 * ps;
                let Some(pred) = by_addr.get(&addr) else {
                    continue 'region;
                };
                if pred.presence == Presence::Never && word & pm::PRESENT != 0 {
                    continue 'region;
                }
                let e = pred
                    .identity
                    .and_then(|id| entries.get(&id).copied())
                    // A frame with a holder left open: its entries are not counted (I8).
                    .unwrap_or((1, usize::MAX));
                b.page(ps, pred, word, e);
            }
            if let Some((rule, id, what)) = compare(&b, got) {
                let detail = format!(
                    "smaps says {what}, summed over {} entries of {:#x}-{:#x}",
                    got[0], r.start, r.end
                );
                return Err((view.proc, r.start, rule, id, detail));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

/// One region's smaps words (`got`: the entry count, then the fields) against its bounds: the
/// first field out of them, as (rule, ID, what was seen and what was expected).
fn compare(b: &Bounds, got: &[u64]) -> Option<(&'static str, &'static str, String)> {
    for (f, &(rule, id)) in RULES.iter().enumerate() {
        let kb = got[1 + f];
        let (lo, hi) = if f == smaps::PSS {
            // Each entry's Pss is shown truncated to a kB (pss >> PSS_SHIFT >> 10).
            let lo = (b.lo[f] >> (PSS_SHIFT + 10)).saturating_sub(got[0].saturating_sub(1));
            (lo, b.hi[f] >> (PSS_SHIFT + 10))
        } else {
            (b.lo[f] / 1024, b.hi[f] / 1024)
        };
        if !(lo..=hi).contains(&kb) {
            return Some((
                rule,
                id,
                format!(
                    "{} {kb} kB; the model's frames and pagemap say {}",
                    smaps::FIELDS[f],
                    span(lo, hi)
                ),
            ));
        }
    }
    for &(rule, [a, c]) in &SUMS {
        let kb = got[1 + a] + got[1 + c];
        let (lo, hi) = ((b.lo[a] + b.lo[c]) / 1024, (b.hi[a] + b.hi[c]) / 1024);
        if !(lo..=hi).contains(&kb) {
            return Some((
                rule,
                "I12",
                format!(
                    "{} + {} {kb} kB; the model's frames and pagemap say {}",
                    smaps::FIELDS[a],
                    smaps::FIELDS[c],
                    span(lo, hi)
                ),
            ));
        }
    }
    None
}

fn span(lo: u64, hi: u64) -> String {
    if lo == hi {
        format!("{lo} kB")
    } else {
        format!("{lo} to {hi} kB")
    }
}

#[cfg(test)]
#[path = "smaps_tests.rs"]
mod tests;

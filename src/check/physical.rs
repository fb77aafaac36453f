//! The physical channel's comparison (docs/SEMANTICS.md part 11): each live process's pagemap
//! words, read at a full-state snapshot, held against the model's frames (`Model::physical`,
//! after `Model::learn_collapses` took in the collapses the words show, I22).
//! Checked, page by page: presence (I3), what mincore says (I10, `accounting`), the file bit (I7), the zero page (I5, with
//! PAGEMAP_SCAN), and across every live process, with PFNs, one frame per identity and one
//! identity per frame (I4), and the exclusive bit from the number of page-table entries that
//! map the frame (I8; a page a PMD maps takes its PMD's first page's, I23). A snapshot's own
//! digests fault pages in after each process read its
//! words, and processes read at once, so for a shared page the count is a range (I8).

use std::collections::BTreeMap;

use crate::model::{Identity, Model, Prediction, Presence};
use crate::program::ProcId;
use crate::program::outcome::{Snapshot, UNREADABLE};
use crate::program::physical::{Channels, pm};

/// What the channel saw that the frames forbid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhysicalDifference {
    pub proc: ProcId,
    pub page: u64,
    /// The rule broken, as a short shape (`exclusive bit`, `pfn shared`, ...), for signatures.
    pub rule: &'static str,
    /// The rule's ID in docs/SEMANTICS.md.
    pub id: &'static str,
    /// What was seen and what the frames say, in words.
    pub detail: String,
    /// The part of the channel that saw it (`Channel::name`).
    pub channel: &'static str,
}

/// One observed page.
struct Seen<'a> {
    proc: ProcId,
    pred: &'a Prediction,
    word: u64,
    /// The snapshot digested it (it was readable): its own digest read faulted it in.
    digested: bool,
}

fn describe(w: u64, pfn: bool) -> String {
    if w & pm::PRESENT == 0 {
        return if w & pm::SWAPPED != 0 {
            "swapped out".into()
        } else {
            "not present".into()
        };
    }
    let mut s = String::from("present");
    if w & pm::FILE != 0 {
        s.push_str(", file/shared");
    }
    if w & pm::EXCLUSIVE != 0 {
        s.push_str(", exclusive");
    }
    if w & pm::ZERO_PAGE != 0 {
        s.push_str(", the zero page");
    }
    if w & pm::HUGE != 0 {
        s.push_str(", mapped by a PMD");
    }
    if pfn {
        s.push_str(&format!(", pfn {:#x}", w & pm::PFN));
    }
    s
}

fn ident(i: Option<Identity>) -> String {
    match i {
        None => "an open frame".into(),
        Some(Identity::Zero) => "the zero page".into(),
        Some(Identity::Frame(f)) => format!("frame {f}"),
        Some(Identity::ObjPage(o, p)) => format!("page {p} of shared object {o}"),
        Some(Identity::TlbPrivate(h, p)) => {
            format!("base page {p} of the private hugetlb huge page headed by frame {h}")
        }
        Some(Identity::TlbShared(o, p)) => format!("page {p} of shared hugetlb object {o}"),
    }
}

/// `items` sorted by `key`: borrowed as they are when already in order (the executor's pages
/// are, region by region), else a sorted copy.
fn sorted_by<T: Clone, K: Ord>(items: &[T], key: impl Fn(&T) -> K) -> std::borrow::Cow<'_, [T]> {
    if items.windows(2).all(|w| key(&w[0]) <= key(&w[1])) {
        std::borrow::Cow::Borrowed(items)
    } else {
        let mut v = items.to_vec();
        v.sort_by_key(|t| key(t));
        std::borrow::Cow::Owned(v)
    }
}

/// The index of `key` in `items` (sorted by `key`), looked for from `*from` on: the words run
/// through the pages in address order, so each search is a step or two forward of the last
/// (a binary search when asked for a key behind it).
fn seek<T>(items: &[T], from: &mut usize, key: u64, key_of: impl Fn(&T) -> u64) -> Option<usize> {
    let mut i = (*from).min(items.len());
    if i > 0 && key_of(&items[i - 1]) >= key {
        i = items.partition_point(|t| key_of(t) < key);
    } else {
        while i < items.len() && key_of(&items[i]) < key {
            i += 1;
        }
    }
    *from = i;
    (i < items.len() && key_of(&items[i]) == key).then_some(i)
}

/// Checks a snapshot's pagemap words against the model (already reconciled with it).
/// Processes whose words were not read are skipped.
pub fn check(
    model: &Model,
    observed: &Snapshot,
    channels: &Channels,
) -> Result<usize, PhysicalDifference> {
    if channels.pagemap.is_err() {
        return Ok(0);
    }
    let pfn = channels.pfn.is_ok();
    let scan = channels.scan.is_ok();
    let mincore = channels.mincore.is_ok();
    let mut preds = model.physical();
    // By address (they come so from the page tables; a sorted run costs one pass).
    for (_, pp) in &mut preds {
        pp.sort_by_key(|p| p.addr);
    }
    let mut seen: Vec<Seen> = Vec::new();
    for view in &observed.procs {
        if view.phys.is_empty() {
            continue;
        }
        let Some((_, pp)) = preds.iter().find(|(p, _)| *p == view.proc) else {
            continue;
        };
        // Both by address (binary searches, not maps built at every view: `perf`, this was a
        // tenth of the front's time).
        let digests = sorted_by(&view.pages, |&(a, _)| a);
        let ps = model.page_size() as u64;
        let mut words = view.phys.iter();
        let (mut at_pred, mut at_digest) = (0, 0);
        for r in &view.regions {
            let mut a = r.start;
            while a < r.end {
                let Some(&word) = words.next() else {
                    return Ok(0);
                };
                if let Some(i) = seek(pp, &mut at_pred, a, |p| p.addr) {
                    let digested = seek(&digests, &mut at_digest, a, |&(a, _)| a)
                        .is_some_and(|j| digests[j].1 != UNREADABLE);
                    seen.push(Seen {
                        proc: view.proc,
                        pred: &pp[i],
                        word,
                        digested,
                    });
                }
                a += ps;
            }
        }
    }
    let fail = |s: &Seen, rule, id, expected: String, channel| {
        Err(PhysicalDifference {
            proc: s.proc,
            page: s.pred.addr,
            rule,
            id,
            detail: format!(
                "pagemap says {}; the model's frames say {expected}",
                describe(s.word, pfn)
            ),
            channel,
        })
    };
    // Page by page.
    for s in &seen {
        let present = s.word & pm::PRESENT != 0;
        let swapped = s.word & pm::SWAPPED != 0;
        match s.pred.presence {
            Presence::Must if !present && !swapped => {
                return fail(
                    s,
                    "presence",
                    "I3",
                    format!("{}, mapped here: present", ident(s.pred.identity)),
                    "pagemap",
                );
            }
            Presence::Never if present => {
                return fail(s, "presence", "I3", "no page here".into(), "pagemap");
            }
            _ => {}
        }
        if mincore && let Some(expected) = super::accounting::mincore(model, s.pred, s.word) {
            let seen = if s.word & pm::RESIDENT != 0 {
                "resident"
            } else {
                "not resident"
            };
            return Err(PhysicalDifference {
                proc: s.proc,
                page: s.pred.addr,
                rule: "mincore",
                id: "I10",
                detail: format!(
                    "mincore says {seen} (pagemap: {}); the model's frames say {expected}",
                    describe(s.word, pfn)
                ),
                channel: "mincore",
            });
        }
        if !present {
            continue;
        }
        if s.pred.open {
            continue;
        }
        if (s.word & pm::FILE != 0) != s.pred.shared && s.pred.identity != Some(Identity::Zero) {
            let what = if s.pred.shared {
                "a shared (shmem) page"
            } else {
                "an anonymous page"
            };
            return fail(s, "file bit", "I7", what.into(), "pagemap");
        }
        let zero = s.pred.identity == Some(Identity::Zero);
        if zero && s.word & (pm::EXCLUSIVE | pm::FILE) != 0 {
            return fail(
                s,
                "zero page",
                "I5",
                "the zero page (never exclusive, not a file page), or nothing".into(),
                "pagemap",
            );
        }
        if scan && s.pred.identity.is_some() && (s.word & pm::ZERO_PAGE != 0) != zero {
            return fail(s, "zero page", "I5", ident(s.pred.identity), "pagemap-scan");
        }
    }
    // A hugetlb huge page's base pages: one run of PFNs from a huge page aligned head (I16).
    if pfn
        && let Some((s, expected)) =
            super::hugetlb_phys::runs(seen.iter().map(|s| (s.proc, s.pred, s.word)))
    {
        return fail(&seen[s], "hugetlb run", "I16", expected, "pfn");
    }
    // Across processes: frame identity and PFNs (I4), the exclusive bit (I8).
    // The holders of each identity, in identity order (the seen pages sorted by identity, then
    // grouped: one sort, where a map of vectors cost a fifth of the check).
    let mut order: Vec<(Identity, usize)> = (seen.iter().enumerate())
        .filter_map(|(k, s)| s.pred.identity.map(|i| (i, k)))
        .collect();
    order.sort_unstable();
    // A frame with an open holder: its mappers cannot be counted, and the open page says
    // nothing of its PFN; the others still share one. Each group: the identity, whether a
    // holder is open, and the holders that are not (in `members`).
    let mut members: Vec<&Seen> = Vec::with_capacity(order.len());
    let mut holders: Vec<(Identity, bool, std::ops::Range<usize>)> = Vec::new();
    let mut k = 0;
    while k < order.len() {
        let (id, start, mut open) = (order[k].0, members.len(), false);
        while k < order.len() && order[k].0 == id {
            let s = &seen[order[k].1];
            if s.pred.open {
                open = true;
            } else {
                members.push(s);
            }
            k += 1;
        }
        holders.push((id, open, start..members.len()));
    }
    let mut owner_of_pfn: BTreeMap<u64, (Identity, &Seen)> = BTreeMap::new();
    // Entries mapping each identity not left open (I8), for smaps's Pss (I12).
    let mut entries: BTreeMap<Identity, (usize, usize)> = BTreeMap::new();
    for (id, open, hs) in &holders {
        let (id, hs) = (*id, &members[hs.clone()]);
        let present: Vec<&&Seen> = hs.iter().filter(|s| s.word & pm::PRESENT != 0).collect();
        if pfn && let Some(first) = present.first() {
            let p0 = first.word & pm::PFN;
            for s in &present[1..] {
                if s.word & pm::PFN != p0 {
                    return fail(
                        s,
                        "pfn shared",
                        "I4",
                        format!(
                            "{} (which p{} maps at {:#x} as pfn {p0:#x}): one frame",
                            ident(Some(id)),
                            first.proc.0,
                            first.pred.addr
                        ),
                        "pfn",
                    );
                }
            }
            if let Some((other, o)) = owner_of_pfn.insert(p0, (id, first)) {
                return fail(
                    first,
                    "pfn distinct",
                    "I4",
                    format!(
                        "{}, not {} (p{} at {:#x}): two frames",
                        ident(Some(id)),
                        ident(Some(other)),
                        o.proc.0,
                        o.pred.addr
                    ),
                    "pfn",
                );
            }
        }
        if id == Identity::Zero || *open {
            continue;
        }
        // Entries mapping the frame when each process read its words: at least those seen
        // present; at most also the shared ones that a digest may have faulted in meanwhile.
        // A shared page seen present in an address space that a clone child shares counts
        // only at most: the other user's view may have faulted it in (its digest, T31) after
        // a third process read its words (`run --time 600 --seed 8`, 1 run in 5).
        let late = |s: &&&Seen| s.pred.shared && model.shares_mm(s.proc);
        let low = present.iter().filter(|s| !late(s)).count();
        let high = present.len()
            + hs.iter()
                .filter(|s| s.word & pm::PRESENT == 0 && s.pred.shared && s.digested)
                .count();
        entries.insert(id, (low, high));
    }
    // The exclusive bit (I8). A page a huge page may back (I20) is checked only where PFNs
    // learnt the collapses and PAGEMAP_SCAN tells a PMD-mapped page from a PTE-mapped one: a
    // PMD-mapped page's bit is its PMD's first page's (I23).
    let pmd_bytes = model.pmd_pages() * model.page_size() as u64;
    // Each seen page by process and address, built only if a PMD-mapped page asks.
    let mut at: Option<BTreeMap<(ProcId, u64), &Seen>> = None;
    for (id, _, hs) in &holders {
        let (id, hs) = (*id, &members[hs.clone()]);
        let Some(&(low, high)) = entries.get(&id) else {
            continue;
        };
        for s in hs.iter().filter(|s| s.word & pm::PRESENT != 0) {
            let (low, high) = if !s.pred.huge {
                (low, high)
            } else if !(pfn && scan) {
                continue;
            } else if s.word & pm::HUGE == 0 {
                (low, high)
            } else {
                let at = at.get_or_insert_with(|| {
                    seen.iter().map(|s| ((s.proc, s.pred.addr), s)).collect()
                });
                let head = at.get(&(s.proc, s.pred.addr - s.pred.addr % pmd_bytes));
                match head.and_then(|h| h.pred.identity.filter(|_| !h.pred.open)) {
                    Some(h) => match entries.get(&h) {
                        Some(&e) => e,
                        None => continue,
                    },
                    None => continue,
                }
            };
            let excl = s.word & pm::EXCLUSIVE != 0;
            if excl && low > 1 {
                return fail(
                    s,
                    "exclusive bit",
                    "I8",
                    format!(
                        "{}, mapped by {low} page-table entries: not exclusive",
                        ident(Some(id))
                    ),
                    "pagemap",
                );
            }
            if !excl && high < 2 {
                return fail(
                    s,
                    "exclusive bit",
                    "I8",
                    format!("{}, mapped here only: exclusive", ident(Some(id))),
                    "pagemap",
                );
            }
        }
    }
    if channels.smaps.is_ok() {
        super::smaps::check(model, observed, &preds, &entries).map_err(
            |(proc, page, rule, id, detail)| PhysicalDifference {
                proc,
                page,
                rule,
                id,
                detail,
                channel: "smaps",
            },
        )?;
    }
    Ok(seen.len())
}

#[cfg(test)]
mod tests {
    use super::{seek, sorted_by};

    /// `seek` finds what a binary search finds, asked in order, out of order and for keys
    /// that are not there.
    #[test]
    fn seek_is_a_search() {
        let items: Vec<u64> = vec![2, 3, 5, 8, 13, 21, 34];
        for order in [
            vec![0u64, 2, 3, 4, 5, 8, 9, 13, 21, 34, 35],
            vec![34, 2, 21, 3, 40, 1, 13, 13, 5],
        ] {
            let mut from = 0;
            for key in order {
                assert_eq!(
                    seek(&items, &mut from, key, |&x| x),
                    items.binary_search(&key).ok(),
                    "key {key}"
                );
            }
        }
        assert_eq!(seek(&[] as &[u64], &mut 0, 1, |&x| x), None);
        assert_eq!(&*sorted_by(&[3u64, 1, 2], |&x| x), &[1, 2, 3]);
        assert!(matches!(
            sorted_by(&[1u64, 2], |&x| x),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}

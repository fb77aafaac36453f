//! hugetlb pages in the physical channel's comparison (docs/SEMANTICS.md I16): the base pages
//! of one huge page are one folio, so a present one's PFN is its huge page's head PFN plus its
//! index, and that head is huge page aligned (`alloc_hugetlb_folio()` allocates the folio whole,
//! and pagemap gives each base page `pte_pfn() + index`: `pagemap_hugetlb_range()`). The other
//! physical facts of a hugetlb page (presence, one PFN per identity across processes, the file
//! and exclusive bits) are checked as every page's are, from `Model::physical()`'s identities.

use std::collections::BTreeMap;

use crate::model::Prediction;
use crate::program::physical::pm;
use crate::program::{ProcId, caps};

/// Base pages in a huge page.
const HUGE: u64 = caps::HUGETLB_PAGES as u64;

/// A huge page, as `Identity::huge_page()` names it.
type HugePage = (bool, u32, u32);

/// Checks the runs of the present hugetlb pages seen (process, prediction, pagemap word), in
/// order, each process's on their own (that two processes show one huge page with one run is
/// I4's check, by identity): the first page that breaks one, by its position, with what the
/// model says instead.
pub(super) fn runs<'a>(
    seen: impl Iterator<Item = (ProcId, &'a Prediction, u64)>,
) -> Option<(usize, String)> {
    // Per process and huge page: the head PFN its first present page showed, and where.
    let mut heads: BTreeMap<(ProcId, HugePage), (u64, u64)> = BTreeMap::new();
    for (i, (proc, pred, word)) in seen.enumerate() {
        if pred.open || word & pm::PRESENT == 0 {
            continue;
        }
        let Some((key, index)) = pred.identity.and_then(|id| id.huge_page()) else {
            continue;
        };
        let pfn = word & pm::PFN;
        let head = pfn.wrapping_sub(index);
        if pfn < index || !head.is_multiple_of(HUGE) {
            return Some((
                i,
                format!(
                    "base page {index} of a hugetlb huge page: pfn {:#x} plus {index}, its head's \
                     PFN {HUGE}-aligned",
                    pfn - pfn % HUGE
                ),
            ));
        }
        let key = (proc, key);
        if let Some(&(other, at)) = heads.get(&key) {
            if other != head {
                return Some((
                    i,
                    format!(
                        "base page {index} of the huge page whose page at {at:#x} is on the run \
                         from pfn {other:#x}: pfn {:#x}",
                        other + index
                    ),
                ));
            }
        } else {
            heads.insert(key, (head, pred.addr));
        }
    }
    None
}

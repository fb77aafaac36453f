//! The accounting half of the physical channel's comparison (docs/SEMANTICS.md I10): what
//! `mincore` said of each page (`pm::RESIDENT`, read in the same process right after the
//! pagemap word) against the same frames that predict presence (`Model::physical`).
//!
//! A private page: mincore reports the page-table entry, so it must agree with pagemap's present
//! bit (a swapped page may be in the swap cache or not). A shared (shmem) page: mincore reports
//! the page cache, whoever maps the page, so a page of the object that holds data (dirty, and
//! never reclaimed without swap) must be resident; a page past the object's end never is. A
//! page whose kernel frame is open (I9), a guard page of a shared mapping (mincore looks its
//! offset up in the page cache) and a shared page that holds only zeros (a read fault anywhere
//! allocates it clean, and reclaim or MADV_PAGEOUT may drop it again, even while it is mapped
//! between the two reads) are left open.

use crate::model::{Model, Prediction};
use crate::program::physical::pm;

/// What the frames say mincore should have reported of a page, if it reported otherwise.
pub(super) fn mincore(model: &Model, pred: &Prediction, word: u64) -> Option<&'static str> {
    let resident = word & pm::RESIDENT != 0;
    let present = word & pm::PRESENT != 0;
    let guard = word & pm::GUARD != 0 || pred.presence == crate::model::Presence::Never;
    // mincore reports a hugetlb page by its page-table entry, shared or not (I15).
    let tlb = pred.identity.is_some_and(|id| id.huge_page().is_some());
    if !pred.shared || tlb {
        if pred.open && !guard {
            return None;
        }
        if word & pm::SWAPPED != 0 {
            return None;
        }
        return match (present, resident) {
            (true, false) => {
                Some("resident (a private page mincore reports by its entry, present here)")
            }
            (false, true) => {
                Some("not resident (a private page mincore reports by its entry, absent here)")
            }
            _ => None,
        };
    }
    if pred.open || word & pm::GUARD != 0 {
        return None;
    }
    match pred.identity {
        None if resident => Some("not resident (past the shared object's end)"),
        Some(id) if !resident && model.holds_data(id) => Some(
            "resident (a shared object's page that holds data stays in the page cache while the \
             object lives)",
        ),
        _ => None,
    }
}

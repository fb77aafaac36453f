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
//! between the two reads) are left open. So is a private page that pagemap showed absent and
//! mincore resident in a process whose address space another live process shares (a
//! `clone(CLONE_VM)` child, T31): that process reads its view at the same moment, and its
//! digest's load of the page can map it between this process's two reads.

use crate::model::{Model, Prediction};
use crate::program::ProcId;
use crate::program::physical::pm;

/// What the frames say mincore should have reported of a page, if it reported otherwise.
pub(super) fn mincore(
    model: &Model,
    pred_proc: ProcId,
    pred: &Prediction,
    word: u64,
) -> Option<&'static str> {
    let resident = word & pm::RESIDENT != 0;
    let present = word & pm::PRESENT != 0;
    let guard = word & pm::GUARD != 0 || pred.presence == crate::model::Presence::Never;
    if !pred.shared {
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
            (false, true) if model.shares_mm(pred_proc) => None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::trace;

    /// The model after `ops` (trace lines after the header), and p0's prediction for the
    /// first page of m0.
    fn p0_first_page(ops: &str) -> (Model, Prediction) {
        let p = trace::parse_str(&format!("cowcheck-trace 1\n{ops}")).expect("parses");
        let mut model = Model::new(4096);
        for op in &p.ops {
            model.apply(op, None).expect("runs");
        }
        let preds = model.physical();
        let pred = preds
            .iter()
            .find(|(proc, _)| *proc == ProcId(0))
            .and_then(|(_, pp)| pp.first().copied())
            .expect("p0 maps m0");
        (model, pred)
    }

    /// A private page that pagemap showed absent and mincore resident: a divergence in a
    /// process of its own, left open where a `clone(CLONE_VM)` child's view may fault it in
    /// between the two reads (T31), and held again once that child is gone.
    #[test]
    fn an_absent_page_resident_in_mincore_is_open_only_in_a_shared_address_space() {
        let absent_but_resident = pm::RESIDENT;
        let (model, pred) = p0_first_page("p0 map m0 private 2\n");
        assert!(mincore(&model, ProcId(0), &pred, absent_but_resident).is_some());
        let (model, pred) = p0_first_page("p0 map m0 private 2\np0 clone p1\n");
        assert_eq!(mincore(&model, ProcId(0), &pred, absent_but_resident), None);
        let (model, pred) = p0_first_page("p0 map m0 private 2\np0 clone p1\np1 exit\n");
        assert!(mincore(&model, ProcId(0), &pred, absent_but_resident).is_some());
        // Present but not resident stays a divergence either way.
        let (model, pred) = p0_first_page("p0 map m0 private 2\np0 clone p1\n");
        assert!(mincore(&model, ProcId(0), &pred, pm::PRESENT).is_some());
    }
}

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
    // mincore reports a hugetlb page by its page-table entry, shared or not (I15), where the
    // process has a page-table page over it.
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
            // Absent from a page table with no page-table page over it at all (a fork child
            // that never touched anything in that GiB), the walk takes its hole path, which
            // looks a shared hugetlb page up in its object's page cache, as for shmem (I15).
            (false, true) if pred.shared => None,
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
    use super::mincore;
    use crate::model::{Model, Prediction};
    use crate::program::physical::pm;
    use crate::program::{ProcId, trace};

    /// The model after `ops`, and process `proc`'s first predicted page.
    fn first_page(ops: &str, proc: u8) -> (Model, Prediction) {
        let program = trace::parse_str(&format!("cowcheck-trace 1\n{ops}")).expect("trace");
        let mut model = Model::new(4096);
        for op in &program.ops {
            model.apply(op, None).expect("model");
        }
        let pred = model
            .physical()
            .into_iter()
            .find(|(p, _)| *p == ProcId(proc))
            .expect("live")
            .1[0];
        (model, pred)
    }

    /// A hugetlb page is reported by its entry, except that a shared one absent from the page
    /// table may read resident (the walk's hole path looks its object up, I15); a present one
    /// may not read absent, nor an absent private page resident.
    #[test]
    fn an_absent_shared_hugetlb_page_may_read_resident() {
        let (model, child) = first_page(
            "p0 map m0 shared 1 hugetlb\np0 write m0 0 fill 0x09\np0 fork p1\n",
            1,
        );
        assert!(child.shared && !child.open);
        assert!(child.identity.is_some_and(|id| id.huge_page().is_some()));
        assert_eq!(mincore(&model, &child, pm::RESIDENT), None);
        assert_eq!(mincore(&model, &child, 0), None);
        let (model, parent) =
            first_page("p0 map m0 shared 1 hugetlb\np0 write m0 0 fill 0x09\n", 0);
        assert!(mincore(&model, &parent, pm::PRESENT).is_some());
        // A private page absent from the page table, hugetlb or not, never reads resident
        // (a private hugetlb page is left open where the pool decides, L9; a base page is not).
        let (model, private) = first_page("p0 map m0 private 1\np0 write m0 0 fill 0x09\n", 0);
        assert!(!private.shared && !private.open, "{private:?}");
        assert!(mincore(&model, &private, pm::RESIDENT).is_some());
        assert_eq!(mincore(&model, &private, pm::PRESENT | pm::RESIDENT), None);
    }
}

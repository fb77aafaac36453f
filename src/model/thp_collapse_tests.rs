//! Resolving a MADV_COLLAPSE from the view right after it (I25): the caller seen on a new
//! huge page's run gets copies of the pages it shared and pieces for its untouched ones; seen
//! on the run its relatives share, nothing moved; any other op in between, or no run, and
//! the PMD stays open.

use super::super::Model;
use super::super::physical::Identity;
use crate::program::ProcId;
use crate::program::outcome::Snapshot;
use crate::program::physical::pm;
use crate::program::trace::parse_str;

fn model(trace: &str) -> Model {
    let program = parse_str(&format!("cowcheck-trace 1\n{trace}")).expect("parses");
    let mut m = Model::new(4096);
    for op in &program.ops {
        // The kernel puts a PMD-multiple private mapping on a PMD boundary (L1).
        let placement = matches!(op, crate::program::Op::Map { .. }).then_some(0x7eff_ffc0_0000);
        m.apply(op, placement).expect("applies");
    }
    m
}

/// The model's snapshot with pagemap words: every page present, p0 on the run from 0x100000,
/// p1 on the run `child` gives.
fn view(m: &mut Model, child: u64) -> Snapshot {
    let mut snap = m.snapshot();
    for v in &mut snap.procs {
        let mut words = Vec::new();
        for r in &v.regions {
            let mut a = r.start;
            while a < r.end {
                let vpn = a / 4096;
                let base = if v.proc == ProcId(0) {
                    0x10_0000
                } else {
                    child
                };
                words.push(pm::PRESENT | (base + vpn % 512));
                a += 4096;
            }
        }
        v.phys = words;
    }
    snap
}

/// Page `page` of the first region of `proc`: its identity, and whether it is open.
fn page(m: &Model, proc: u8, page: usize) -> (Option<Identity>, bool) {
    let preds = m.physical();
    let (_, pp) = preds.iter().find(|(p, _)| *p == ProcId(proc)).unwrap();
    (pp[page].identity, pp[page].open)
}

const FORKED: &str = "p0 map m0 private 512\np0 write m0 0..100 fill 0x11\np0 fork p1\n";

#[test]
fn a_child_seen_on_a_new_run_copied_every_page() {
    let mut m = model(&format!("{FORKED}p1 advise m0 0..512 collapse\n"));
    // Before the view: the collapsed PMD is open in the child (and so the frames it shares).
    assert!(page(&m, 1, 7).1);
    let snap = view(&mut m, 0x20_0000);
    m.learn_collapses(&snap);
    let (parent, child) = (page(&m, 0, 7), page(&m, 1, 7));
    assert!(
        !parent.1 && !child.1,
        "predicted again: {parent:?} {child:?}"
    );
    assert_ne!(parent.0, child.0, "the child's copy is its own frame");
    // An untouched page is a piece of the child's huge page: a frame, predicted.
    let piece = page(&m, 1, 300);
    assert!(
        matches!(piece, (Some(Identity::Frame(_)), false)),
        "{piece:?}"
    );
}

#[test]
fn a_child_seen_on_the_shared_run_copied_nothing() {
    let mut m = model(&format!("{FORKED}p1 advise m0 0..512 collapse\n"));
    let snap = view(&mut m, 0x10_0000);
    m.learn_collapses(&snap);
    assert_eq!(page(&m, 0, 7).0, page(&m, 1, 7).0);
    assert!(page(&m, 1, 7).1, "left open, as before I25");
}

#[test]
fn only_the_view_right_after_the_collapse_resolves_it() {
    let mut m = model(&format!(
        "{FORKED}p1 advise m0 0..512 collapse\np0 read m0 0 => 0x11\n"
    ));
    let snap = view(&mut m, 0x20_0000);
    m.learn_collapses(&snap);
    assert_eq!(page(&m, 0, 7).0, page(&m, 1, 7).0);
    assert!(page(&m, 1, 7).1);
}

#[test]
fn a_caller_off_any_run_is_left_open() {
    let mut m = model(&format!("{FORKED}p1 advise m0 0..512 collapse\n"));
    let snap = view(&mut m, 0x20_0001);
    m.learn_collapses(&snap);
    assert!(page(&m, 1, 7).1);
}

//! Learning khugepaged's collapses from a view (I22): a fork child seen on a huge page's run of
//! PFNs that its parent's copies do not share gets copies of its own, and only where a collapse
//! could have happened.

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
        m.apply(op, None).expect("applies");
    }
    m
}

/// The model's snapshot with pagemap words: every page present, the parent's PFNs scattered,
/// the child's from `child(vpn)`.
fn view(m: &mut Model, child: impl Fn(u64) -> u64) -> Snapshot {
    let mut snap = m.snapshot();
    for v in &mut snap.procs {
        let mut words = Vec::new();
        for r in &v.regions {
            let mut a = r.start;
            while a < r.end {
                let vpn = a / 4096;
                let pfn = if v.proc == ProcId(0) {
                    0x10_0001 + 3 * (vpn % 4096)
                } else {
                    child(vpn)
                };
                words.push(pm::PRESENT | pfn);
                a += 4096;
            }
        }
        v.phys = words;
    }
    snap
}

/// The identity of page `page` of the first region of `proc`.
fn identity(m: &Model, proc: u8, page: usize) -> Option<Identity> {
    let preds = m.physical();
    let (_, pp) = preds.iter().find(|(p, _)| *p == ProcId(proc)).unwrap();
    pp[page].identity
}

/// A PMD-aligned run for the child: what a collapse gives it.
fn run(vpn: u64) -> u64 {
    0x20_0000 + vpn % 512
}

#[test]
fn a_collapse_in_the_child_is_learnt() {
    let mut m = model(
        "p0 map m0 private 512\np0 advise m0 0..512 hugepage\np0 write m0 0..100 fill 0x11\n\
         p0 fork p1\n",
    );
    assert_eq!(identity(&m, 0, 7), identity(&m, 1, 7));
    let snap = view(&mut m, run);
    m.learn_collapses(&snap);
    assert_ne!(identity(&m, 0, 7), identity(&m, 1, 7));
}

#[test]
fn no_collapse_with_more_than_max_ptes_shared_shared() {
    let mut m = model(
        "p0 map m0 private 512\np0 advise m0 0..512 hugepage\np0 write m0 0..300 fill 0x11\n\
         p0 fork p1\n",
    );
    let snap = view(&mut m, run);
    m.learn_collapses(&snap);
    assert_eq!(identity(&m, 0, 7), identity(&m, 1, 7));
}

#[test]
fn no_collapse_off_a_run_or_unadvised() {
    let mut m = model(
        "p0 map m0 private 512\np0 advise m0 0..512 hugepage\np0 write m0 0..100 fill 0x11\n\
         p0 fork p1\n",
    );
    // An eager copy: scattered PFNs, never on a PMD-aligned run.
    let snap = view(&mut m, |vpn| 0x30_0001 + 5 * (vpn % 4096));
    m.learn_collapses(&snap);
    assert_eq!(identity(&m, 0, 7), identity(&m, 1, 7));
    let mut m = model("p0 map m0 private 512\np0 write m0 0..100 fill 0x11\np0 fork p1\n");
    let snap = view(&mut m, run);
    m.learn_collapses(&snap);
    assert_eq!(identity(&m, 0, 7), identity(&m, 1, 7));
}

//! T13: what the model learns of a `remap` thread's page from views, and what it refuses.

use super::super::Model;
use crate::program::trace::parse_str;
use crate::program::{MapId, ProcId};

const FORKED: &str = "cowcheck-trace 1\np0 map m0 private 3\np0 write m0 0..3 fill 0x88\n\
    p0 unmap m0 1\np0 race t0 remap m0 0\np0 fork p1\n";

/// The model after `trace`, each op as the model predicts it, and the raced page's number.
fn after(trace: &str) -> (Model, u64) {
    let program = parse_str(trace).expect("parses");
    let mut model = Model::new(4096);
    for op in &program.ops {
        model.step(op, None).expect("steps");
    }
    let vpn = model.handle(MapId(0)).expect("m0").base / 4096;
    (model, vpn)
}

/// T13: a fork's child may have the page at home or at the spare, with its bytes; the model
/// learns either from the child's first view, then holds it.
#[test]
fn a_forks_copy_is_at_home_or_at_the_spare() {
    let (model, vpn) = after(FORKED);
    let child = ProcId(1);
    let mut at_spare = model.clone();
    let spare_view = at_spare.snapshot();
    let mut at_home = model.clone();
    at_home.home(child, vpn, true);
    let home_view = at_home.snapshot();
    assert_ne!(home_view, spare_view);
    for seen in [&home_view, &spare_view] {
        let mut m = model.clone();
        m.reconcile(seen);
        assert_eq!(&m.snapshot(), seen, "learnt from the first view");
    }
    // Learnt once: a later view that shows the copy moved differs.
    let mut m = model.clone();
    m.reconcile(&home_view);
    m.reconcile(&spare_view);
    assert_ne!(m.snapshot(), spare_view, "a child's copy does not move");
}

/// T13: the page at both addresses, or at neither, is no outcome: the view differs.
#[test]
fn both_or_neither_differs() {
    let (model, vpn) = after(FORKED);
    let child = ProcId(1);
    let mut both = model.clone();
    both.fresh_page(child, vpn);
    let mut neither = model.clone();
    neither.do_munmap(child, vpn + 1, 1);
    for mut bad in [both, neither] {
        let seen = bad.snapshot();
        let mut m = model.clone();
        m.reconcile(&seen);
        assert_ne!(m.snapshot(), seen);
    }
}

/// T13: after `stop` the page is at home with its bytes and the spare a hole, wherever the
/// last view had it.
#[test]
fn stop_brings_it_home() {
    let trace = "cowcheck-trace 1\np0 map m0 private 3\np0 write m0 0..3 fill 0x88\n\
        p0 race t0 remap m0 1\np0 stop t0\np0 read m0 1 => 0x88\n";
    let program = parse_str(trace).expect("parses");
    let mut model = Model::new(4096);
    for op in &program.ops {
        model.step(op, None).expect("steps");
    }
    let base = model.handle(MapId(0)).expect("m0").base;
    let space = model.space(ProcId(0));
    assert!(space.get(base / 4096 + 1).is_some(), "home");
    assert!(space.get(base / 4096 + 2).is_none(), "the spare");
}

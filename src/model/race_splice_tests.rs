//! T14: what a `vmsplice` thread's stop must report.

use super::super::Model;
use crate::program::Op;
use crate::program::outcome::Outcome;
use crate::program::trace::parse_str;

/// Steps `trace` with `seen` as the observation of its last op (the stop), every other op as
/// the model predicts it; the model's prediction for the stop.
fn stop_seen(trace: &str, seen: Outcome) -> Outcome {
    let program = parse_str(trace).expect("parses");
    let mut model = Model::new(4096);
    let (last, head) = program.ops.split_last().expect("ops");
    for op in head {
        let o = model.clone().step(op, None).expect("steps");
        let o = match (op, o) {
            (Op::Fork { .. }, Outcome::Forked { .. }) => Outcome::Forked {
                before: 10,
                after: 20,
            },
            (_, o) => o,
        };
        model.step(op, Some(&o)).expect("steps");
    }
    model.step(last, Some(&seen)).expect("steps")
}

fn watched(first: u64, last: u64, drops: u64) -> Outcome {
    Outcome::Watched {
        rounds: 5,
        first,
        last,
        drops,
    }
}

const PRIVATE: &str = "cowcheck-trace 1\np0 map m0 private 1\np0 write m0 0 fill 0x01\n\
    p0 race t0 vmsplice m0 0\np0 fork p1\np1 write m0 0[0..100] fill 0x02\np0 stop t0\n";
const SHARED: &str = "cowcheck-trace 1\np0 map m0 shared 1\np0 write m0 0 fill 0x01\n\
    p0 fork p1\np0 race t0 vmsplice m0 0\np1 write m0 0[0..100] fill 0x02\np0 stop t0\n";
const BESIDE: &str = "cowcheck-trace 1\np0 map m0 private 1\np0 race t0 write m0 0\n\
    p0 race t1 vmsplice m0 0\np0 fork p1\np1 write m0 0[0..100] fill 0x02\np0 stop t1\n";

/// T14 with K3: a private page drains as it was, whatever a fork's child stores to its copy;
/// a drained page that differed (a drop) or another word differs.
#[test]
fn a_private_page_drains_unchanged() {
    let w = 0x0101_0101_0101_0101;
    assert_eq!(stop_seen(PRIVATE, watched(w, w, 0)), watched(w, w, 0));
    for bad in [watched(w, w, 1), watched(w, 0x0202_0202_0202_0202, 0)] {
        assert_ne!(stop_seen(PRIVATE, bad.clone()), bad);
    }
}

/// T14: a shared object's page may change under the thread (another mapper stores, B5): its
/// drops are learnt; its word still is the page's.
#[test]
fn a_shared_page_may_change() {
    let w = 0x0101_0101_0101_0101;
    assert_eq!(stop_seen(SHARED, watched(w, w, 3)), watched(w, w, 3));
    let bad = watched(w, 7, 0);
    assert_ne!(stop_seen(SHARED, bad.clone()), bad);
}

/// T14 beside a writer: the words drained never go down and start at the published counter.
#[test]
fn beside_a_writer_the_words_rise() {
    assert_eq!(stop_seen(BESIDE, watched(3, 900, 0)), watched(3, 900, 0));
    for bad in [watched(900, 3, 0), watched(3, 900, 1), watched(0, 900, 0)] {
        assert_ne!(stop_seen(BESIDE, bad.clone()), bad);
    }
}

//! A failed MREMAP_FIXED move and its destination (G5): both worlds are allowed where the kernel
//! may have unmapped it first, and the model follows the one the observations show; where the
//! error comes before the unmapping on every kernel, only the destination kept is allowed.

use super::super::Model;
use crate::program::outcome::{Outcome, Snapshot};
use crate::program::trace::parse_str;

const SETUP: &str = "cowcheck-trace 1\n\
    p0 map m0 private 7\n\
    p0 map m1 shared-zero 2 fixed m0+2 fd\n\
    p0 map m2 private 3\n\
    p0 write m2 0..3 fill 0x5a\n\
    p0 protect m0 2 read\n";

/// Runs `SETUP` then `tail` as a kernel that `unmaps` (6.1, 6.12) or does not (6.18) would show
/// it: a model run alone plays the kernel, its destination unmapped by hand after op `fail_at`
/// where `unmaps`. Returns what the learning model predicted for each op, what the kernel did,
/// and both final snapshots.
fn run(
    tail: &str,
    fail_at: usize,
    unmaps: bool,
) -> (Vec<Outcome>, Vec<Outcome>, Snapshot, Snapshot) {
    let program = parse_str(&format!("{SETUP}{tail}")).expect("parses");
    let unmap = parse_str(&format!("{SETUP}p0 unmap m2 0..3\n")).expect("parses");
    let unmap = unmap.ops.last().expect("the unmap");
    let mut kernel = Model::new(4096);
    let mut model = Model::new(4096);
    let (mut expected, mut observed) = (Vec::new(), Vec::new());
    for (i, op) in program.ops.iter().enumerate() {
        let seen = kernel.step(op, None).expect("kernel steps");
        if i == fail_at && unmaps {
            kernel.step(unmap, None).expect("unmaps");
        }
        expected.push(model.step(op, Some(&seen)).expect("model steps"));
        observed.push(seen);
    }
    let seen = kernel.snapshot();
    model.reconcile(&seen);
    (expected, observed, model.snapshot(), seen)
}

#[test]
fn a_source_spanning_vmas_may_have_unmapped_the_destination() {
    let tail = "p0 remap m1 0..2 3 maymove fixed m2 as m3\n";
    for unmaps in [false, true] {
        let (expected, observed, model, kernel) = run(tail, 5, unmaps);
        assert_eq!(observed[5], Outcome::Failed { errno: 14 });
        assert_eq!(expected, observed, "unmapped first: {unmaps}");
        // Learnt from the snapshot alone: a model that never unmaps fails the 6.1 side, one
        // that always does fails the 6.18 side.
        assert_eq!(model, kernel, "unmapped first: {unmaps}");
    }
}

#[test]
fn the_next_outcome_tells_the_worlds_apart() {
    // Old size 0 on private memory (EINVAL in vma_to_resize() on 6.1), then a read of the
    // destination: its data (6.18) or SIGSEGV (6.1) picks the world before any snapshot.
    let tail = "p0 remap m0 0..0 2 maymove fixed m2 as m3\np0 read m2 0..3\n";
    for unmaps in [false, true] {
        let (expected, observed, model, kernel) = run(tail, 5, unmaps);
        assert_eq!(observed[5], Outcome::Failed { errno: 22 });
        assert_eq!(observed[6].death().is_some(), unmaps);
        assert_eq!(expected, observed, "unmapped first: {unmaps}");
        assert_eq!(model, kernel, "unmapped first: {unmaps}");
    }
}

#[test]
fn an_error_before_the_unmapping_keeps_the_destination_on_every_kernel() {
    // A destination over the source is refused with the arguments: a kernel that unmapped it
    // anyway is a divergence the model reports.
    let tail = "p0 remap m2 0..2 2 maymove fixed m2+1 as m3\np0 read m2 0..3\n";
    let (expected, observed, _, _) = run(tail, 5, false);
    assert_eq!(observed[5], Outcome::Failed { errno: 22 });
    assert_eq!(expected, observed);
    let (expected, observed, model, kernel) = run(tail, 5, true);
    assert_ne!(
        expected[6], observed[6],
        "a read of an unmapped destination must differ"
    );
    assert_ne!(model, kernel);
}

//! The harness's own address ranges (the baseline), which snapshots leave out: everything a
//! process has mapped before its program's first op.

use super::Scratch;

/// Captures the harness's own address ranges: once in the zygote before the first root, and
/// again in a root that made clone kits before its first op (`clone_vm::prepare`).
pub(super) fn capture_baseline(s: &mut Scratch) {
    let mut len = 0;
    let baseline = &mut s.baseline;
    s.maps.visit(
        |_, _| false,
        |e| {
            // Neighbours without a gap become one span (the snapshot jumps over whole spans).
            if len > 0 && baseline[len - 1].1 == e.start {
                baseline[len - 1].1 = e.end;
            } else if len < baseline.len() {
                baseline[len] = (e.start, e.end);
                len += 1;
            }
            true
        },
    );
    s.baseline_len = len;
}

//! A racing layout thread's page is the program's, never the allocator's: once a process has
//! had an op thread, the worker watches what the allocator maps around a race's start, and an
//! `unmap` thread started over a hole maps a page there while the watch runs (T12). Taking
//! that page for the allocator's hid it from every later view: a false layout divergence,
//! found by the fuzzer, in 6 replays of 10 before the fix (and the scenario below failed 4
//! corpus runs of 10). The race is timing-dependent, so the scenario is replayed several
//! times: with the old rule, twelve passing replays in a row had a chance of about 0.6^12.

mod common;

use common::*;

#[test]
fn a_racing_unmap_over_a_hole_keeps_its_page_in_every_view() {
    let trace = format!(
        "{}/scenarios/threads/unmap-racer-over-hole.trace",
        env!("CARGO_MANIFEST_DIR")
    );
    for _ in 0..12 {
        cowcheck(&["replay", &trace]).expect_code(0);
    }
}

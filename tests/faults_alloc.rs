//! Proof that the allocator rules (docs/SEMANTICS.md part 14) can fail: each mode of the
//! misbehaving malloc family tests/faults/liballoc.c, loaded into the executor with `--under`, is
//! caught by `cowcheck run --seed 1 --cases 20000`, shrunk to a few ops, saved, and the saved trace
//! replays to a divergence under the fault and agrees without it.

mod common;

use std::path::PathBuf;

use common::*;

/// Most ops a shrunk allocator divergence may keep.
const MAX_SHRUNK_OPS: usize = 6;

/// tests/faults/liballoc.c built once; `None` (after a note) without a C compiler.
fn liballoc() -> Option<PathBuf> {
    shim("liballoc")
}

fn assert_caught(mode: &str) {
    let Some(lib) = liballoc() else { return };
    let under = format!(
        "env COWCHECK_ALLOC_FAULT={mode} LD_PRELOAD={}",
        lib.display()
    );
    let Caught { ops, trace, .. } =
        caught_and_shrunk(&format!("liballoc-{mode}"), &under, MAX_SHRUNK_OPS);
    assert!(
        ops.iter().any(|o| [
            "malloc",
            "calloc",
            "realloc",
            "aligned-alloc",
            "posix-memalign"
        ]
        .iter()
        .any(|v| o.contains(&format!(" {v} ")))),
        "{mode}: the divergence should involve an allocation:\n{trace}"
    );
}

/// Large blocks from a MAP_SHARED mapping: a child's write shows in the parent (M1).
#[test]
fn liballoc_shared_large() {
    assert_caught("shared-large");
}

/// calloc hands a freed mapping back without zeroing it (M3).
#[test]
fn liballoc_calloc_dirty_reuse() {
    assert_caught("calloc-dirty-reuse");
}

/// realloc that moves keeps only half the old block (M4).
#[test]
fn liballoc_realloc_lose_tail() {
    assert_caught("realloc-lose-tail");
}

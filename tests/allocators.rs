//! The allocator-independent rules (docs/SEMANTICS.md M1 to M6) under other allocators, each
//! put in front of the C library with `LD_PRELOAD` (docs/ALLOCATORS.md): the scenarios of
//! scenarios/malloc and a bounded seeded campaign must pass under each. An allocator that is not
//! installed (Debian: libjemalloc2, libmimalloc2.0, libtcmalloc-minimal4; .ci/run installs them)
//! is skipped with a note.

mod common;

use std::path::Path;

use common::*;

const ALLOCATORS: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
];

fn under(lib: &str) -> Option<String> {
    if !Path::new(lib).exists() {
        eprintln!("note: {lib} is not installed; skipping it");
        return None;
    }
    Some(format!("env LD_PRELOAD={lib}"))
}

#[test]
fn the_malloc_scenarios_pass_under_other_allocators() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/malloc");
    for lib in ALLOCATORS {
        let Some(under) = under(lib) else { continue };
        let run = cowcheck(&["corpus", dir.to_str().unwrap(), "--under", &under]);
        run.expect_code(0);
    }
}

#[test]
fn a_seeded_campaign_is_clean_under_other_allocators() {
    for lib in ALLOCATORS {
        let Some(under) = under(lib) else { continue };
        let out = tmpdir("allocators");
        let run = cowcheck(&[
            "run",
            "--cases",
            "300",
            "--seed",
            "1",
            "--json",
            "--out",
            out.to_str().unwrap(),
            "--under",
            &under,
        ]);
        run.expect_code(0);
        assert_eq!(run.json()["programs"], 300, "{lib}");
    }
}

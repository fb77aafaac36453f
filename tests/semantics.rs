//! Known semantics through the CLI: the model predicts the textbook answer (`cowcheck model`),
//! and the real kernel agrees (`cowcheck replay` exits 0). Where the kernel's own observations
//! can be compared without the model (read digests, fault addresses), they are compared too.

mod common;

use common::*;

const KINDS: [&str; 4] = ["private", "shared", "private-zero", "shared-zero"];

fn is_shared(kind: &str) -> bool {
    kind.starts_with("shared")
}

/// The digest list of a kernel read outcome (`read 1 page(s), digests 9305ba97e0e30020`).
fn digests(outcome: &str) -> &str {
    assert!(
        outcome.starts_with("read "),
        "not a read outcome: {outcome:?}"
    );
    outcome
        .split_once("digests")
        .map(|(_, d)| d.trim())
        .unwrap_or_else(|| panic!("read outcome without digests: {outcome:?}"))
}

/// The classic example: an int (4 bytes) set to 1 by the parent, incremented to 2 by a child
/// that then exits; the parent reads it back.
fn classic(kind: &str) -> String {
    format!(
        "cowcheck-trace 1\n\
         # an int in {kind} memory, incremented by the child\n\
         p0 map m0 {kind} 1\n\
         p0 write m0 0[0..4] fill 0x01\n\
         p0 fork p1\n\
         p1 read m0 0[0..4]\n\
         p1 write m0 0[0..4] fill 0x02\n\
         p1 read m0 0[0..4]\n\
         p1 exit\n\
         p0 read m0 0[0..4]\n"
    )
}

#[test]
fn classic_int_incremented_by_child_model_predictions() {
    let dir = tmpdir("classic-model");
    for kind in KINDS {
        let path = write_file(&dir, &format!("{kind}.trace"), classic(kind));
        // The prediction is about bytes inside the first 4 KiB: the same for every page size.
        for page_size in ["4096", "16384", "65536"] {
            let p = model(&path, &["--page-size", page_size]);
            assert!(
                p[0].outcome.starts_with("mapped at 0x"),
                "{kind}: {:?}",
                p[0]
            );
            assert_eq!(p[1].outcome, "ok", "{kind}");
            assert_eq!(p[2].outcome, "ok", "{kind}");
            assert_eq!(
                p[3].outcome, "page 0: 0x01×4",
                "{kind}: the child inherits the parent's int"
            );
            assert_eq!(p[4].outcome, "ok", "{kind}");
            assert_eq!(
                p[5].outcome, "page 0: 0x02×4",
                "{kind}: the child sees its own write"
            );
            assert_eq!(p[6].outcome, "ok", "{kind}");
            let parent = if is_shared(kind) {
                "page 0: 0x02×4"
            } else {
                "page 0: 0x01×4"
            };
            assert_eq!(
                p[7].outcome, parent,
                "{kind} (page size {page_size}): what the parent reads after the child's increment"
            );
        }
    }
}

#[test]
fn classic_int_incremented_by_child_kernel_agrees() {
    let dir = tmpdir("classic-replay");
    for kind in KINDS {
        let path = write_file(&dir, &format!("{kind}.trace"), classic(kind));

        let run = cowcheck(&["replay", path.to_str().unwrap()]);
        run.expect_code(0);
        assert!(
            run.stdout.contains("kernel and model agree on all 8 ops"),
            "{kind}\n{}",
            run.dump()
        );

        let (code, report, run) = replay_json(&path, &[]);
        assert_eq!(code, 0, "{kind}\n{}", run.dump());
        assert!(report["divergence"].is_null(), "{kind}: {report}");
        let k = kernel_outcomes(&report);
        assert_eq!(k.len(), 8, "{kind}: {report}");
        // The kernel's own reads, compared with each other (no model involved): the child's
        // read before its write, after it, and the parent's read at the end.
        let (before, after, parent) = (digests(&k[3]), digests(&k[5]), digests(&k[7]));
        assert_ne!(
            before, after,
            "{kind}: the child's write changed nothing it could see"
        );
        if is_shared(kind) {
            assert_eq!(
                parent, after,
                "{kind}: the parent must see the child's increment"
            );
        } else {
            assert_eq!(parent, before, "{kind}: the parent must keep its own copy");
        }
    }
}

/// The same traces are caught when the executor commits the matching fault: the replay really
/// compares bytes and layout (a counter-test for the agreement above).
#[test]
fn classic_replay_catches_injected_faults() {
    let dir = tmpdir("classic-inject");
    for kind in KINDS {
        let path = write_file(&dir, &format!("{kind}.trace"), classic(kind));
        let fault = if is_shared(kind) {
            // The child's increment never lands; the parent reads 1 instead of 2.
            "drop-child-write"
        } else {
            "private-as-shared"
        };
        let run = cowcheck(&["replay", path.to_str().unwrap(), "--inject", fault]);
        run.expect_code(1);
        assert!(
            run.stdout.contains("DIVERGENCE"),
            "{kind} with {fault}\n{}",
            run.dump()
        );
    }
}

/// Nested forks, five generations p0 -> p1 -> p2 -> p3 -> p4, each writing its own value into a
/// private and a shared page (anonymous and /dev/zero), each child reading what it inherited,
/// and every generation reading everything at the end.
#[test]
fn nested_forks_write_in_every_generation() {
    const DEPTH: usize = 4;
    let maps = [
        ("m0", "private"),
        ("m1", "shared"),
        ("m2", "private-zero"),
        ("m3", "shared-zero"),
    ];
    let value = |g: usize| 0x10 + g as u8;
    let mut trace = String::from("cowcheck-trace 1\n# five generations, a write in each\n");
    // (op, expected prediction or None for "anything")
    let mut expect: Vec<Option<String>> = Vec::new();
    let mut push = |trace: &mut String, op: String, want: Option<String>| {
        trace.push_str(&op);
        trace.push('\n');
        expect.push(want);
    };
    for (m, kind) in maps {
        push(&mut trace, format!("p0 map {m} {kind} 2"), None);
    }
    for g in 0..=DEPTH {
        if g > 0 {
            push(
                &mut trace,
                format!("p{} fork p{g}", g - 1),
                Some("ok".into()),
            );
            // The child starts with its parent's bytes, whatever the kind.
            for (m, _) in maps {
                push(
                    &mut trace,
                    format!("p{g} read {m} 0[0..8]"),
                    Some(format!("page 0: 0x{:02x}×8", value(g - 1))),
                );
            }
        }
        for (m, _) in maps {
            push(
                &mut trace,
                format!("p{g} write {m} 0[0..8] fill 0x{:02x}", value(g)),
                Some("ok".into()),
            );
        }
        // It sees its own write at once.
        for (m, _) in maps {
            push(
                &mut trace,
                format!("p{g} read {m} 0[0..8]"),
                Some(format!("page 0: 0x{:02x}×8", value(g))),
            );
        }
    }
    // After all forks, p0 writes page 1 (never touched before): shared pages carry it to
    // every descendant, private ones do not (they stay zero there).
    for (m, _) in maps {
        push(
            &mut trace,
            format!("p0 write {m} 1[100..108] fill 0x20"),
            Some("ok".into()),
        );
    }
    for g in (0..=DEPTH).rev() {
        for (m, kind) in maps {
            let page0 = if is_shared(kind) {
                value(DEPTH)
            } else {
                value(g)
            };
            push(
                &mut trace,
                format!("p{g} read {m} 0[0..8]"),
                Some(format!("page 0: 0x{page0:02x}×8")),
            );
            let page1 = if is_shared(kind) || g == 0 {
                0x20
            } else {
                0x00
            };
            push(
                &mut trace,
                format!("p{g} read {m} 1[100..108]"),
                Some(format!("page 1: 0x{page1:02x}×8")),
            );
        }
    }
    // The deepest generation exits first; the others still see the shared bytes it wrote.
    push(&mut trace, format!("p{DEPTH} exit"), Some("ok".into()));
    for (m, kind) in maps {
        let page0 = if is_shared(kind) {
            value(DEPTH)
        } else {
            value(0)
        };
        push(
            &mut trace,
            format!("p0 read {m} 0[0..8]"),
            Some(format!("page 0: 0x{page0:02x}×8")),
        );
    }

    let dir = tmpdir("nested");
    let path = write_file(&dir, "nested.trace", &trace);
    let preds = model(&path, &[]);
    assert_eq!(preds.len(), expect.len());
    for (p, want) in preds.iter().zip(&expect) {
        if let Some(want) = want {
            assert_eq!(
                &p.outcome, want,
                "op {} `{}`\ntrace:\n{trace}",
                p.index, p.op
            );
        }
    }

    let run = cowcheck(&["replay", path.to_str().unwrap()]);
    run.expect_code(0);
    assert!(
        run.stdout.contains(&format!(
            "kernel and model agree on all {} ops",
            expect.len()
        )),
        "{}",
        run.dump()
    );
}

/// Map 4 pages, unmap pages 1 and 2, then touch each page: 0 and 3 still work (and keep their
/// bytes), 1 and 2 kill the process that touches them with SIGSEGV, at the right address.
#[test]
fn partial_unmap_then_access() {
    let dir = tmpdir("partial-unmap");
    for kind in KINDS {
        let trace = format!(
            "cowcheck-trace 1\n\
             p0 map m0 {kind} 4\n\
             p0 write m0 0..4 fill 0x07\n\
             p0 unmap m0 1..3\n\
             p0 fork p1\n\
             p1 read m0 2\n\
             p1 write m0 0 fill 0x08\n\
             p0 read m0 0[0..16]\n\
             p0 read m0 3[0..16]\n\
             p0 write m0 3[0..4] fill 0x09\n\
             p0 read m0 3[0..8]\n\
             p0 fork p2\n\
             p2 write m0 1[0..1] fill 0x01\n\
             p0 read m0 0[4090..4096]\n\
             p0 read m0 2\n"
        );
        let path = write_file(&dir, &format!("{kind}.trace"), &trace);
        let p = model(&path, &[]);
        let segv = |k: usize| {
            assert!(
                p[k].outcome.starts_with("killed by SIGSEGV"),
                "{kind}: op {} `{}` should be killed by SIGSEGV, model says {:?}",
                k + 1,
                p[k].op,
                p[k].outcome
            )
        };
        assert_eq!(p[2].outcome, "ok", "{kind}: unmap");
        segv(4); // p1 read page 2
        assert!(
            p[5].outcome.starts_with("skipped"),
            "{kind}: a dead process does nothing: {:?}",
            p[5]
        );
        assert_eq!(p[6].outcome, "page 0: 0x07×16", "{kind}");
        assert_eq!(p[7].outcome, "page 3: 0x07×16", "{kind}");
        assert_eq!(p[8].outcome, "ok", "{kind}");
        assert_eq!(p[9].outcome, "page 3: 0x09×4 0x07×4", "{kind}");
        segv(11); // p2 write page 1
        assert_eq!(
            p[12].outcome, "page 0: 0x07×6",
            "{kind}: a child's death leaves p0 alone"
        );
        segv(13); // p0 read page 2

        let (code, report, run) = replay_json(&path, &[]);
        assert_eq!(
            code,
            0,
            "{kind}: kernel and model should agree\n{}",
            run.dump()
        );
        assert!(report["divergence"].is_null(), "{kind}: {report}");
        let k = kernel_outcomes(&report);
        let ps = report["page_size"].as_u64().expect("page_size");
        let base = hex_after(&k[0], "mapped at").unwrap_or_else(|| panic!("{kind}: {:?}", k[0]));
        for (op, page) in [(4, 2), (11, 1), (13, 2)] {
            assert!(
                k[op].starts_with("killed by SIGSEGV"),
                "{kind}: kernel op {}: {:?}",
                op + 1,
                k[op]
            );
            assert_eq!(
                hex_after(&k[op], "at page"),
                Some(base + page * ps),
                "{kind}: the fault is at page {page} of the mapping: {:?}",
                k[op]
            );
        }
        for op in [6, 7, 9, 12] {
            assert!(
                k[op].starts_with("read "),
                "{kind}: page 0 and 3 stay readable: {:?}",
                k[op]
            );
        }
    }
}

/// G4's version difference: without the 6.17 multi-VMA move (a kernel that lacks the probed
/// feature), a pure move across two VMAs is EFAULT and nothing moves; with it, it moves.
#[test]
fn a_pure_move_across_vmas_follows_the_probed_feature() {
    use cowcheck::model::{Features, Model};
    use cowcheck::program::outcome::Outcome;
    let trace = "cowcheck-trace 1\n\
                 p0 map m0 private 4\n\
                 p0 protect m0 1 read\n\
                 p0 map m1 private 4\n\
                 p0 remap m0 0..2 2 maymove fixed m1 as m2\n";
    let program = cowcheck::program::trace::parse(trace.as_bytes()).expect("parses");
    let last = |features: Features| {
        let mut model = Model::with_features(4096, features);
        let mut out = Outcome::Skipped;
        for op in &program.ops {
            out = model.apply(op, None).expect("runs");
        }
        out
    };
    assert!(matches!(last(Features::ALL), Outcome::Mapped { .. }));
    let old = Features {
        move_multi_vma: false,
        ..Features::ALL
    };
    assert_eq!(
        last(old),
        Outcome::Failed {
            errno: libc::EFAULT
        }
    );
}

//! Huge-page backings (docs/SEMANTICS.md L1-L5): each model rule is shown to fail when the
//! kernel's side is broken, and the raised page cap is shown to leave classic traces alone.

use cowcheck::model::{Features, Model};
use cowcheck::program::outcome::Outcome;
use cowcheck::program::trace::parse;
use cowcheck::program::{Op, caps};

const PMD: u64 = 2 << 20;

fn ops(trace: &str) -> Vec<Op> {
    parse(trace.as_bytes()).expect("parses").ops
}

/// L1: a kernel that puts a private mapping of a whole PMD off a PMD boundary is caught; one
/// that aligns it, or that places a shared one anywhere, or any other length anywhere, is not.
#[test]
fn l1_an_unaligned_pmd_sized_private_mapping_is_a_divergence() {
    let run = |trace: &str, addr: u64| {
        let mut model = Model::with_features(4096, Features::ALL);
        let op = ops(trace)[0];
        model.step(&op, Some(&Outcome::Mapped { addr }))
    };
    let aligned = 0x7f00_0000_0000 - 4 * PMD;
    let off = aligned + 0x3000;
    assert!(run("cowcheck-trace 1\np0 map m0 private 512\n", aligned).is_ok());
    assert!(run("cowcheck-trace 1\np0 map m0 private 512\n", off).is_err());
    assert!(run("cowcheck-trace 1\np0 map m0 private 1024\n", off).is_err());
    // Private /dev/zero is aligned on 6.18 but not on 6.12.118: not claimed.
    assert!(run("cowcheck-trace 1\np0 map m0 private-zero 1024\n", off).is_ok());
    assert!(run("cowcheck-trace 1\np0 map m0 shared 512\n", off).is_ok());
    assert!(run("cowcheck-trace 1\np0 map m0 private 511\n", off).is_ok());
    assert!(run("cowcheck-trace 1\np0 map m0 private 513\n", off).is_ok());
    // Without the feature (a kernel before 6.7, an emulator) any page is a place.
    let old = Features {
        thp_align: false,
        ..Features::ALL
    };
    let mut model = Model::with_features(4096, old);
    let op = ops("cowcheck-trace 1\np0 map m0 private 512\n")[0];
    assert!(
        model
            .step(&op, Some(&Outcome::Mapped { addr: off }))
            .is_ok()
    );
}

/// L1 for mremap: a private range the kernel moved to a whole PMD must land aligned.
#[test]
fn l1_an_unaligned_mremap_move_to_a_pmd_is_a_divergence() {
    let program =
        ops("cowcheck-trace 1\np0 map m0 private 1\np0 remap m0 0..1 512 maymove as m1\n");
    let run = |to: u64| {
        let mut model = Model::with_features(4096, Features::ALL);
        model
            .step(
                &program[0],
                Some(&Outcome::Mapped {
                    addr: 0x7e00_0000_1000,
                }),
            )
            .expect("maps");
        model.step(&program[1], Some(&Outcome::Mapped { addr: to }))
    };
    assert!(run(0x7d00_0000_0000).is_ok());
    assert!(run(0x7d00_0000_5000).is_err());
}

/// L3: MADV_COLLAPSE never changes contents; its result is one of 0, EINVAL, EAGAIN, ENOMEM,
/// learnt from the kernel; on a NOHUGEPAGE range it is never 0, and EFAULT is never allowed.
#[test]
fn l3_collapse_outcomes() {
    let program = ops("cowcheck-trace 1\n\
         p0 map m0 private 512\n\
         p0 write m0 0..512 fill 0x5a\n\
         p0 advise m0 0..512 collapse\n\
         p0 read m0 0..512\n");
    let failed = |errno| Outcome::Failed { errno };
    for observed in [
        Outcome::Done,
        failed(libc::EINVAL),
        failed(libc::EAGAIN),
        failed(libc::ENOMEM),
    ] {
        let mut model = Model::with_features(4096, Features::ALL);
        model.apply(&program[0], Some(0x7d00_0000_0000)).unwrap();
        model.apply(&program[1], None).unwrap();
        let got = model.step(&program[2], Some(&observed)).unwrap();
        assert_eq!(got, observed, "an allowed result is learnt");
        let read = model.apply(&program[3], None).unwrap();
        let mut fresh = Model::with_features(4096, Features::ALL);
        fresh.apply(&program[0], Some(0x7d00_0000_0000)).unwrap();
        fresh.apply(&program[1], None).unwrap();
        assert_eq!(
            read,
            fresh.apply(&program[3], None).unwrap(),
            "contents kept"
        );
    }
    // A kernel that says EFAULT (or anything else) is not followed.
    let mut model = Model::with_features(4096, Features::ALL);
    model.apply(&program[0], Some(0x7d00_0000_0000)).unwrap();
    let got = model
        .step(&program[2], Some(&failed(libc::EFAULT)))
        .unwrap();
    assert_eq!(got, Outcome::Done);
    // NOHUGEPAGE: a kernel that says 0 is caught (the model says EINVAL).
    let nohuge = ops("cowcheck-trace 1\n\
         p0 map m0 private 512\n\
         p0 advise m0 0..512 nohugepage\n\
         p0 advise m0 0 collapse\n");
    let mut model = Model::with_features(4096, Features::ALL);
    model.apply(&nohuge[0], Some(0x7d00_0000_0000)).unwrap();
    model.apply(&nohuge[1], None).unwrap();
    let got = model.step(&nohuge[2], Some(&Outcome::Done)).unwrap();
    assert_eq!(got, failed(libc::EINVAL));
}

/// L4: a whole aligned PMD of one VMA may be huge; a guard, NOHUGEPAGE, a second protection,
/// or a missing page inside it rules a huge page out; with `advised`, MADV_HUGEPAGE is needed.
#[test]
fn l4_where_a_huge_page_may_be() {
    let base = 0x7d00_0000_0000u64;
    let vpn = base / 4096;
    let model_of = |trace: &str| {
        let mut model = Model::with_features(4096, Features::ALL);
        for (i, op) in ops(trace).iter().enumerate() {
            model.apply(op, (i == 0).then_some(base)).unwrap();
        }
        model
    };
    let p0 = cowcheck::program::ProcId(0);
    let m = model_of("cowcheck-trace 1\np0 map m0 private 512\n");
    assert!(m.huge_possible(p0, vpn + 7, false));
    assert!(!m.huge_possible(p0, vpn + 7, true));
    let m = model_of("cowcheck-trace 1\np0 map m0 private 512\np0 advise m0 0..512 hugepage\n");
    assert!(m.huge_possible(p0, vpn + 7, true));
    let m = model_of("cowcheck-trace 1\np0 map m0 private 512\np0 protect m0 3 read\n");
    assert!(!m.huge_possible(p0, vpn + 7, false));
    let m = model_of("cowcheck-trace 1\np0 map m0 private 512\np0 unmap m0 511\n");
    assert!(!m.huge_possible(p0, vpn, false));
    let m = model_of("cowcheck-trace 1\np0 map m0 private 512\np0 advise m0 9 nohugepage\n");
    assert!(!m.huge_possible(p0, vpn, false));
}

/// The raised cap: a classic trace means what it meant; a map past 64 pages is accepted up to
/// 1024 pages, and such maps together up to `MAX_BIG_PAGES`.
#[test]
fn the_page_cap_admits_pmds_and_bounds_them_together() {
    assert!(caps::MAX_MAP_PAGES as u64 * 4096 >= 2 * PMD);
    assert_eq!(caps::CLASSIC_MAP_PAGES, 64);
    assert!(parse(b"cowcheck-trace 1\np0 map m0 private 1024\n").is_ok());
    assert!(parse(b"cowcheck-trace 1\np0 map m0 private 1025\n").is_err());
    let two = "cowcheck-trace 1\np0 map m0 private 1024\np0 map m1 private 1024\n";
    assert!(parse(two.as_bytes()).is_ok());
    let three = format!("{two}p0 map m2 private 65\n");
    assert!(parse(three.as_bytes()).is_err());
    // Small maps do not count against the big ones.
    let small = format!("{two}p0 map m2 private 64\n");
    assert!(parse(small.as_bytes()).is_ok());
}

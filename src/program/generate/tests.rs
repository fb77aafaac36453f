//! The decoder's own tests: every byte string, of either dialect, decodes to a valid program;
//! campaigns draw every later form and deep trees; raw ops without the extra bits keep the
//! forms they always had.

use super::*;

#[test]
fn every_byte_string_gives_a_valid_program() {
    let mut rng = SplitMix::new(7);
    for len in 0..300 {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let p = from_bytes(&bytes, GenConfig::default());
        assert!(p.validate().is_ok(), "{p:?}");
    }
}

#[test]
fn every_dialect_2_byte_string_gives_a_valid_program() {
    let mut rng = SplitMix::new(11);
    for len in 0..300 {
        let mut bytes = DIALECT_2.to_vec();
        bytes.extend((0..len).map(|_| rng.next_u64() as u8));
        let p = from_bytes(&bytes, GenConfig::default());
        assert!(p.validate().is_ok(), "{p:?}");
    }
}

/// Which later forms of the mmap interface an op takes (`RawOp::extra`).
fn later_forms(op: &Op) -> Vec<&'static str> {
    let mut forms = Vec::new();
    match *op {
        Op::Map { tail, args, .. } | Op::MapAt { tail, args, .. } => {
            if tail != 0 {
                forms.push("map-bytes");
            }
            if args.fd {
                forms.push("fd");
            }
            if !args.offset.is_zero() {
                forms.push(if args.offset.is_aligned() {
                    "offset"
                } else {
                    "offset-unaligned"
                });
            }
            if let Op::MapAt { how, at, .. } = *op {
                if how == PlaceHow::FixedNoReplace {
                    forms.push("fixed-noreplace");
                }
                if at.byte != 0 {
                    forms.push("map-unaligned");
                }
            }
        }
        Op::Unmap { tail, .. } | Op::Protect { tail, .. } if tail != 0 => forms.push("range-bytes"),
        Op::Advise { pages, tail, .. } => {
            if tail != 0 {
                forms.push("range-bytes");
            }
            if pages.is_empty() {
                forms.push("advise-zero");
            }
        }
        Op::Remap {
            old_tail,
            new_tail,
            flags,
            ..
        } => {
            if old_tail != 0 || new_tail != 0 {
                forms.push("remap-bytes");
            }
            if flags.fixed.is_some_and(|a| a.byte != 0) {
                forms.push("remap-unaligned");
            }
        }
        _ => {}
    }
    forms
}

#[test]
fn campaigns_draw_every_later_form() {
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..3000 {
        for op in &random_program(1, i, GenConfig::default()).ops {
            seen.extend(later_forms(op));
        }
    }
    let all = [
        "map-bytes",
        "fd",
        "offset",
        "offset-unaligned",
        "fixed-noreplace",
        "map-unaligned",
        "range-bytes",
        "advise-zero",
        "remap-bytes",
        "remap-unaligned",
    ];
    assert_eq!(seen, all.into_iter().collect());
}

/// Raw ops whose verb has its top two bits clear decode as they did before the later forms
/// existed: the committed fuzz seeds (all of them such) keep their programs.
#[test]
fn raw_ops_without_extra_bits_never_take_a_later_form() {
    let mut rng = SplitMix::new(3);
    for _ in 0..3000 {
        let raws: Vec<RawOp> = (0..40)
            .map(|_| {
                let w = rng.next_u64().to_le_bytes();
                RawOp {
                    verb: w[0] & 63,
                    who: w[1],
                    what: w[2],
                    a: u16::from_le_bytes([w[3], w[4]]),
                    b: u16::from_le_bytes([w[5], w[6]]),
                    c: w[7],
                    d: rng.next_u64() as u8,
                }
            })
            .collect();
        let p = build(&raws, GenConfig::default());
        for op in &p.ops {
            assert!(later_forms(op).is_empty(), "{op}");
        }
    }
}

#[test]
fn campaigns_reach_deep_trees_and_many_live_processes() {
    let mut depth_max = 0;
    let mut live_max = 0;
    for i in 0..2000 {
        let p = random_program(
            1,
            i,
            GenConfig {
                max_ops: 80,
                ..GenConfig::default()
            },
        );
        let mut depth = [0usize; caps::MAX_PROCS];
        let mut live = 1usize;
        for op in &p.ops {
            match op {
                Op::Fork { proc, child } => {
                    depth[child.0 as usize] = depth[proc.0 as usize] + 1;
                    depth_max = depth_max.max(depth[child.0 as usize]);
                    live += 1;
                    live_max = live_max.max(live);
                }
                Op::Exit { .. } => live -= 1,
                _ => {}
            }
        }
    }
    assert!(depth_max >= 4, "deepest tree {depth_max}");
    assert!(live_max >= 8, "most live {live_max}");
}

/// The race kinds that came after dialect 2 (`remap`, `vmsplice`: T13, T14) are drawn by
/// dialect 3 only, so dialect-2 bytes keep their programs; the same bytes under the two
/// prefixes decode alike wherever no later kind is drawn.
#[test]
fn only_dialect_3_draws_the_later_race_kinds() {
    let later = |p: &Program| {
        p.ops.iter().any(|o| {
            matches!(
                o,
                Op::Race {
                    kind: crate::program::RaceKind::Remap | crate::program::RaceKind::Vmsplice,
                    ..
                }
            )
        })
    };
    let (mut in_3, mut same) = (0, 0);
    for i in 0..3000 {
        let bytes = random_program_bytes(1, i, GenConfig::default());
        let body = bytes
            .strip_prefix(DIALECT_4)
            .expect("campaigns draw dialect 4");
        let three = from_bytes(&[DIALECT_3, body].concat(), GenConfig::default());
        let two = from_bytes(&[DIALECT_2, body].concat(), GenConfig::default());
        assert!(!later(&two), "dialect 2 drew a later race kind:\n{two}");
        if later(&three) {
            in_3 += 1;
        } else if three == two {
            same += 1;
        }
    }
    assert!(
        in_3 >= 50,
        "dialect 3 drew a later race kind in {in_3} programs"
    );
    assert!(
        same >= 2500,
        "{same} programs without a later kind decode alike"
    );
}

/// The race kinds that came after dialect 3 (`free`, `pageout`, `fault`: T15-T17) are drawn by
/// dialect 4 only, so dialect-3 bytes keep their programs; the same bytes under the two
/// prefixes decode alike wherever no newer kind is drawn.
#[test]
fn only_dialect_4_draws_the_newest_race_kinds() {
    use crate::program::RaceKind;
    let newest = |p: &Program| {
        p.ops.iter().any(|o| {
            matches!(
                o,
                Op::Race {
                    kind: RaceKind::Free | RaceKind::PageOut | RaceKind::Fault,
                    ..
                }
            )
        })
    };
    let (mut in_4, mut same) = (0, 0);
    let mut kinds = std::collections::HashSet::new();
    for i in 0..3000 {
        let bytes = random_program_bytes(1, i, GenConfig::default());
        let body = bytes
            .strip_prefix(DIALECT_4)
            .expect("campaigns draw dialect 4");
        let four = from_bytes(&bytes, GenConfig::default());
        let three = from_bytes(&[DIALECT_3, body].concat(), GenConfig::default());
        assert!(
            !newest(&three),
            "dialect 3 drew a newer race kind:\n{three}"
        );
        if newest(&four) {
            in_4 += 1;
            for o in &four.ops {
                if let Op::Race { kind, .. } = o {
                    kinds.insert(*kind);
                }
            }
        } else if four == three {
            same += 1;
        }
    }
    assert!(
        in_4 >= 50,
        "dialect 4 drew a newer race kind in {in_4} programs"
    );
    for k in [RaceKind::Free, RaceKind::PageOut, RaceKind::Fault] {
        assert!(kinds.contains(&k), "dialect 4 never drew {k:?}");
    }
    assert!(
        same >= 2400,
        "{same} programs without a newer kind decode alike"
    );
}

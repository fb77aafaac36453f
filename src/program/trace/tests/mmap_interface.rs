//! The forms of the mmap interface as people call it (byte lengths, fd and offset, unaligned
//! addresses): round trips and errors.

use super::*;

/// Lengths in bytes, addresses inside a page, a map's fd and offset, both MAP_FIXED flags and
/// zero-length advice: each reads as written, prints canonically and reads back.
#[test]
fn the_mmap_interface_forms_round_trip() {
    let text = "\
cowcheck-trace 1
p0 map m0 shared 4B
p0 map m1 private 1+4B fd offset 1
p0 map m2 private 3 offset 1B
p0 map m3 private 2 offset 2+4B
p0 map m4 shared-zero 1 fd
p0 map m5 private 1 fixed-noreplace m1+1
p0 map m6 private 1 noreplace m2+4B
p0 map m7 private 2 fixed m2+1+100B fd
p0 unmap m2 0+4B
p0 unmap m2 0..1+4096B
p0 protect m1 1+1B read
p0 advise m2 1..1 dontneed
p0 advise m2 0..2+8B cold
p0 remap m0 0+4B 1+4B maymove as m8
p0 remap m1 0..1+4B 4B maymove fixed m3+1+1B as m9
";
    let program = parse_str(text).expect("parses");
    assert_eq!(program.to_string(), text);
    let (p0, m0, m1, m2) = (ProcId(0), MapId(0), MapId(1), MapId(2));
    assert_eq!(
        program.ops[0],
        Op::Map {
            proc: p0,
            map: m0,
            kind: MapKind::Shared,
            pages: 1,
            tail: 4,
            args: MapArgs::default(),
        }
    );
    assert_eq!(
        program.ops[1],
        Op::Map {
            proc: p0,
            map: m1,
            kind: MapKind::Private,
            pages: 2,
            tail: 4,
            args: MapArgs {
                fd: true,
                offset: Offset { pages: 1, bytes: 0 },
                hugetlb: false,
            },
        }
    );
    assert_eq!(
        program.ops[5],
        Op::MapAt {
            proc: p0,
            map: MapId(5),
            kind: MapKind::Private,
            pages: 1,
            tail: 0,
            args: MapArgs::default(),
            how: PlaceHow::FixedNoReplace,
            at: At::page(m1, 1),
        }
    );
    assert!(matches!(
        program.ops[7],
        Op::MapAt {
            at: At {
                page: 1,
                byte: 100,
                ..
            },
            ..
        }
    ));
    assert_eq!(
        program.ops[9],
        Op::Unmap {
            proc: p0,
            map: m2,
            pages: PageRange { start: 0, end: 2 },
            tail: 4096,
        }
    );
    assert_eq!(
        program.ops[10],
        Op::Protect {
            proc: p0,
            map: m1,
            pages: PageRange { start: 1, end: 2 },
            tail: 1,
            prot: Prot::Read,
        }
    );
    assert_eq!(
        program.ops[11],
        Op::Advise {
            proc: p0,
            map: m2,
            pages: PageRange { start: 1, end: 1 },
            tail: 0,
            advice: Advice::DontNeed,
        }
    );
    assert_eq!(
        program.ops[14],
        Op::Remap {
            proc: p0,
            map: m1,
            old: PageRange { start: 0, end: 2 },
            old_tail: 4,
            new_pages: 1,
            new_tail: 4,
            flags: RemapFlags {
                maymove: true,
                dontunmap: false,
                fixed: Some(At {
                    map: MapId(3),
                    page: 1,
                    byte: 1,
                }),
            },
            result: MapId(9),
        }
    );
    // Loose spellings print canonically: page 0 with bytes, modifiers in any order.
    let loose = "cowcheck-trace 1\np0 map m0 private 0+4B offset 0 fd\np0 map m1 private 1 hint m0+0+1B\np0 unmap m1 0..0+4B\n";
    let canonical = "cowcheck-trace 1\np0 map m0 private 4B fd\np0 map m1 private 1 hint m0+1B\np0 unmap m1 0+4B\n";
    let program = parse_str(loose).expect("parses");
    assert_eq!(program.to_string(), canonical);
    assert_eq!(parse_str(canonical), Ok(program));
}

#[test]
fn the_mmap_interface_errors_point_at_their_token() {
    assert_err(
        &with_map("p0 map m1 private 0B\n"),
        3,
        19,
        "a byte count is at least 1B",
    );
    assert_err(
        &with_map("p0 map m1 private 4097B\n"),
        3,
        19,
        "a length's last page holds 1 to 4096 bytes, not 4097",
    );
    assert_err(
        &with_map("p0 map m1 shared-zero 1 offset 1\n"),
        3,
        25,
        "only anonymous mappings take an offset here, not shared-zero",
    );
    assert_err(
        &with_map("p0 map m1 private 1 offset 4096B\n"),
        3,
        21,
        "an offset's bytes past its pages are 0 to 4095, not 4096",
    );
    assert_err(
        &with_map("p0 map m1 private 1 fd fd\n"),
        3,
        24,
        "fd given twice in one map",
    );
    assert_err(
        &with_map("p0 map m1 private 1 hint m0 fixed m0\n"),
        3,
        29,
        "a placement given twice in one map",
    );
    assert_err(
        &with_map("p0 map m1 private 1 at m0\n"),
        3,
        21,
        "unexpected \"at\" after the length",
    );
    assert_err(
        &with_map("p0 map m1 private 1 fixed m0+4096B\n"),
        3,
        27,
        "an address lies 0 to 4095 bytes into its page, not 4096",
    );
    assert_err(&with_map("p0 unmap m0 1..1\n"), 3, 13, "empty page range");
    assert_err(
        &with_map("p0 advise m0 4..4 cold\n"),
        3,
        14,
        "page 4 is out of range",
    );
    assert_err(&with_map("p0 read m0 0+4B\n"), 3, 12, "expected a span");
    assert_err(
        &with_map("p0 vmsplice m0 0+4B\n"),
        3,
        16,
        "expected a page range",
    );
    assert_err(
        &with_map("p0 protect m0 0..x+4B read\n"),
        3,
        15,
        "expected a page range like 0..4 or 2, or with bytes like 0+4B or 0..1+4B",
    );
}

//! The allocator ops' lines (docs/SEMANTICS.md part 14): round trips, and what the validator
//! refuses (use after free, double free, a block used where a mapping is meant).

use super::*;
use crate::program::{AllocCall, MalloptParam, Tune};

#[test]
fn the_allocator_ops_round_trip() {
    let text = "\
cowcheck-trace 1
p0 malloc m0 200000
p0 calloc m1 5000
p0 write m0 0..3 ramp 0x10
p0 write m0 48[100..200] fill 0xaa
p0 read m1 1
p0 fork p1
p1 free m0
p0 realloc m0 300000 as m2
p0 posix-memalign m3 4096 10000
p0 aligned-alloc m4 64 640
p0 mallopt mmap-threshold 262144
p0 mallopt mmap-max 0
p0 mallopt trim-threshold 131072
p0 malloc-trim 0
p1 exit
p0 free m2
";
    let program = parse_str(text).expect("parses");
    assert_eq!(program.to_string(), text);
    let (p0, m0, m2) = (ProcId(0), MapId(0), MapId(2));
    assert_eq!(
        program.ops[7],
        Op::Alloc {
            proc: p0,
            map: m2,
            call: AllocCall::Realloc { from: m0 },
            size: 300000,
        }
    );
    assert_eq!(
        program.ops[10],
        Op::Tune {
            proc: p0,
            tune: Tune::Mallopt {
                param: MalloptParam::MmapThreshold,
                value: 262144
            }
        }
    );
}

/// Each trace's last line is refused, with this message.
#[test]
fn the_validator_refuses_what_no_program_may_run() {
    let cases = [
        (
            "p0 malloc m0 100\np0 free m0\np0 free m0\n",
            "is not live in p0",
        ),
        (
            "p0 malloc m0 100\np0 free m0\np0 read m0 0\n",
            "is not live in p0",
        ),
        (
            "p0 malloc m0 100\np0 realloc m0 200 as m1\np0 write m0 0 fill 1\n",
            "is not live in p0",
        ),
        (
            "p0 fork p1\np1 malloc m0 100\np0 free m0\n",
            "is not live in p0",
        ),
        ("p0 malloc m0 100\np0 unmap m0 0\n", "unknown mapping m0"),
        (
            "p0 malloc m0 100\np0 map m0 private 1\n",
            "taken by an allocation",
        ),
        ("p0 map m0 private 1\np0 malloc m0 100\n", "already taken"),
        (
            "p0 malloc m0 100\np0 read m0 0[0..101]\n",
            "past the allocation's 100 bytes",
        ),
        ("p0 malloc m0 5000\np0 read m0 0..3\n", "out of range"),
        ("p0 malloc m0 0\n", "1 to"),
        ("p0 posix-memalign m0 24 100\n", "power of two"),
        ("p0 free m0\n", "unknown allocation m0"),
    ];
    for (body, message) in cases {
        let text = format!("cowcheck-trace 1\n{body}");
        let e = parse_str(&text).expect_err(&text);
        assert!(e.message.contains(message), "{text}: {}", e.message);
    }
}

/// A block outlives a free in a relative: the child still holds the parent's block after the
/// parent frees it, and may free it itself.
#[test]
fn a_block_is_live_per_process() {
    let text =
        "cowcheck-trace 1\np0 malloc m0 100\np0 fork p1\np0 free m0\np1 read m0 0\np1 free m0\n";
    parse_str(text).expect("parses");
}

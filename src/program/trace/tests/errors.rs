//! Traces that do not parse: every error names its line and column.

use super::*;

#[test]
fn unknown_verb() {
    let e = err(&with_map("p0 mapp m1 private 1\n"));
    assert_eq!((e.line, e.column), (3, 4));
    assert_eq!(
        e.message,
        "unknown verb \"mapp\"; expected one of map, write, read, fork, exit, unmap, protect, advise, remap, invalid, poke, vmsplice, pipe-read, race, stop, vfork, clone, thread, by, malloc, calloc, realloc, posix-memalign, aligned-alloc, free, mallopt, malloc-trim"
    );
}

#[test]
fn unknown_process() {
    assert_err(
        &with_map("p0 read m0 0\np2 exit\n"),
        4,
        1,
        "unknown process p2: no fork created it",
    );
    assert_err(
        &with_map("p0 fork p1\np1 exit\np1 read m0 0\n"),
        5,
        1,
        "process p1 has already exited",
    );
    assert_err(
        &with_map("q0 exit\n"),
        3,
        1,
        "expected a process handle like p0, found \"q0\"",
    );
}

#[test]
fn unknown_mapping() {
    let e = err(&with_map("p0 read m3 0..4\n"));
    assert_eq!((e.line, e.column), (3, 9));
    assert_eq!(
        e.message,
        "unknown mapping m3: no earlier map op created it"
    );
    assert_err(&with_map("p0 map m0 shared 1\n"), 3, 8, "already taken");
}

#[test]
fn page_out_of_range() {
    assert_err(
        &with_map("p0 write m0 2..5 fill 0x1\n"),
        3,
        13,
        "page range 2..5 is out of range: the mapping has 4 pages",
    );
    assert_err(&with_map("p0\tread m0 4\n"), 3, 12, "out of range");
    assert_err(&with_map("p0 read m0 2..2\n"), 3, 12, "empty page range");
    assert_err(
        &with_map("p0 read m0 1[0..4097]\n"),
        3,
        12,
        "must be non-empty and end at most 4096",
    );
    assert_err(&with_map("p0 unmap m0 3..1\n"), 3, 13, "empty page range");
}

#[test]
fn map_count_out_of_range_points_at_the_count() {
    assert_err(
        &with_map("p0 map m1 private 1025\n"),
        3,
        19,
        "a map takes 1 to 1024 pages, not 1025",
    );
    assert_err(&with_map("p0 map m1 private 0\n"), 3, 19, "not 0");
}

#[test]
fn truncated_lines() {
    let e = err(&with_map("p0 write m0 0..4\n"));
    assert_eq!((e.line, e.column), (3, 17));
    assert_eq!(
        e.message,
        "truncated op: \"p0 write m0 0..4\" needs a pattern (fill 0xHH or ramp 0xHH)"
    );
    assert_err(
        &with_map("p0 write m0 0..4 fill  # no byte\n"),
        3,
        22,
        "truncated op: \"p0 write m0 0..4 fill\" needs a byte value after fill",
    );
    assert_err(&with_map("p0\n"), 3, 3, "needs a verb (one of map, write");
    assert_err(&with_map("p0 map m1\n"), 3, 10, "needs a mapping kind");
    assert_err(&with_map("p0 map m1 shared\n"), 3, 17, "needs a length");
    assert_err(&with_map("p0 read\n"), 3, 8, "needs a mapping handle");
    assert_err(&with_map("p0 read m0\n"), 3, 11, "needs a span");
    assert_err(&with_map("p0 fork\n"), 3, 8, "needs a child process handle");
    assert_err(
        &with_map("p0 unmap m0\n"),
        3,
        12,
        "needs a range (a page range",
    );
}

#[test]
fn bad_numbers_and_shapes() {
    assert_err(
        &with_map("p0 map m1 private four\n"),
        3,
        19,
        "expected a length (pages like 4, bytes like 4B, or both like 1+4B) after the kind, found \"four\"",
    );
    assert_err(
        &with_map("p0 map m1 privat 4\n"),
        3,
        11,
        "unknown mapping kind \"privat\"; expected one of private, shared, private-zero, shared-zero",
    );
    assert_err(
        &with_map("p0 read m0 1..\n"),
        3,
        12,
        "expected a span like 0..4, 2 or 2[100..200], found \"1..\"",
    );
    assert_err(&with_map("p0 read m0 +1\n"), 3, 12, "expected a span");
    assert_err(&with_map("p0 read m0 1[2..3\n"), 3, 12, "expected a span");
    assert_err(
        &with_map("p0 unmap m0 1[0..3]\n"),
        3,
        13,
        "unmap takes whole pages",
    );
    assert_err(
        &with_map("p0 write m0 0 fil 0xaa\n"),
        3,
        15,
        "unknown pattern \"fil\"; expected fill 0xHH or ramp 0xHH",
    );
    assert_err(
        &with_map("p0 write m0 0 fill 0xzz\n"),
        3,
        20,
        "expected a byte value like 0xaa or 170, found \"0xzz\"",
    );
    assert_err(
        &with_map("p0 read mx 0\n"),
        3,
        9,
        "expected a mapping handle like m0",
    );
    assert_err(
        &with_map("p0 fork 1\n"),
        3,
        9,
        "expected a process handle like p1",
    );
}

#[test]
fn overflowing_numbers() {
    assert_err(
        &with_map("p256 exit\n"),
        3,
        1,
        "process handle \"p256\" is too large; the number after p is at most 255",
    );
    assert_err(
        &with_map("p0 read m99999999999999999999999999 0\n"),
        3,
        9,
        "is too large",
    );
    assert_err(&with_map("p0 fork p300\n"), 3, 9, "at most 255");
    assert_err(
        &with_map("p0 read m0 0..65536\n"),
        3,
        12,
        "page 65536 is too large; the largest is 65535",
    );
    assert_err(
        &with_map("p0 read m0 65535\n"),
        3,
        12,
        "a single page is at most 65534",
    );
    assert_err(
        &with_map("p0 read m0 0[0..99999999999]\n"),
        3,
        12,
        "byte offset 99999999999 is too large",
    );
    assert_err(
        &with_map("p0 map m1 shared 70000\n"),
        3,
        18,
        "page count 70000 is too large",
    );
    assert_err(
        &with_map("p0 write m0 0 ramp 0x100\n"),
        3,
        20,
        "byte value 0x100 is too large; a pattern byte is at most 0xff",
    );
    assert_err(&with_map("p0 write m0 0 ramp 256\n"), 3, 20, "at most 0xff");
}

#[test]
fn trailing_token() {
    let e = err(&with_map("p0 read m0 0 x\n"));
    assert_eq!((e.line, e.column), (3, 14));
    assert_eq!(e.message, "trailing token \"x\"");
    assert_err(
        &with_map("p0 exit now # bye\n"),
        3,
        9,
        "trailing token \"now\"",
    );
}

#[test]
fn fork_to_a_taken_handle() {
    assert_err(
        &with_map("p0 fork p1\np1 fork p1\n"),
        4,
        9,
        "process handle p1 is already taken; a fork needs a new handle",
    );
    assert_err(&with_map("p0 fork p0\n"), 3, 9, "p0 is already taken");
}

#[test]
fn header_errors() {
    assert_err("", 1, 1, "empty input");
    assert_err("p0 map m0 private 4\n", 1, 1, "missing header");
    assert_err("\ncowcheck-trace 1\n", 1, 1, "missing header");
    assert_err("cowcheck-trace  1\n", 1, 1, "malformed header");
    assert_err("cowcheck-trace 1 # hi\n", 1, 1, "malformed header");
    let e = err("cowcheck-trace 7\np0 exit\n");
    assert_eq!((e.line, e.column), (1, 16));
    assert_eq!(
        e.message,
        "unsupported trace version 7; this cowcheck reads version 1"
    );
    assert_eq!(
        e.to_string(),
        "line 1, column 16: unsupported trace version 7; this cowcheck reads version 1"
    );
}

#[test]
fn header_alone_is_an_empty_program() {
    assert_eq!(parse_str(HEADER), Ok(Program::default()));
    assert_eq!(parse_str("cowcheck-trace 1\r\n"), Ok(Program::default()));
    assert_eq!(Program::default().to_string(), "cowcheck-trace 1\n");
}

#[test]
fn binary_garbage_is_reported_at_the_first_bad_byte() {
    let mut input = b"cowcheck-trace 1\np0 map m0 private 4\n".to_vec();
    input.extend_from_slice("# é ".as_bytes());
    input.extend_from_slice(&[0xff, 0xfe, 0x00, 0x80]);
    let e = parse(&input).expect_err("garbage");
    assert_eq!((e.line, e.column), (3, 5));
    assert!(e.message.contains("invalid UTF-8 (byte 0xff)"), "{e}");

    let e = parse(&[0xc3]).expect_err("truncated UTF-8 sequence");
    assert_eq!((e.line, e.column), (1, 1));
    assert!(e.message.contains("invalid UTF-8"), "{e}");
}

#[test]
fn nul_byte() {
    let e = parse(b"cowcheck-trace 1\np0 ex\0it\n").expect_err("NUL");
    assert_eq!((e.line, e.column), (2, 6));
    assert!(e.message.contains("NUL byte"), "{e}");
    let e = parse(b"cowcheck-trace 1\n# \0\n").expect_err("NUL in a comment");
    assert_eq!((e.line, e.column), (2, 3));
}

#[test]
fn line_endings_and_lengths() {
    let crlf = "cowcheck-trace 1\r\np0 map m0 private 1\r\np0 exit\r\n";
    assert_eq!(
        parse_str(crlf).map(|p| p.to_string()),
        Ok("cowcheck-trace 1\np0 map m0 private 1\np0 exit\n".to_owned())
    );
    assert_err("cowcheck-trace 1\np0\rexit\n", 2, 3, "carriage return");

    let long = format!("{HEADER}\n#{}\n", "x".repeat(MAX_LINE_BYTES - 1));
    assert!(parse_str(&long).is_ok());
    let too_long = format!("{HEADER}\n#{}\n", "é".repeat(MAX_LINE_BYTES));
    assert_err(
        &too_long,
        2,
        2 + (MAX_LINE_BYTES - 1) / 2,
        "longer than 4096 bytes",
    );
}

#[test]
fn too_many_ops_is_an_error() {
    let mut text = format!("{HEADER}\np0 map m0 private 1\n");
    for _ in 0..caps::MAX_OPS {
        text.push_str("p0 read m0 0\n");
    }
    assert_err(&text, 2 + caps::MAX_OPS, 1, "more than 512 ops");
}

/// A random op over small handles and numbers: often valid where it stands, not always.
fn random_op(rng: &mut Rng) -> Op {
    let proc = ProcId([0, 0, 0, 1, 2, 3][rng.below(6)]);
    let map = MapId([0, 0, 1, 2][rng.below(4)]);
    let page = |rng: &mut Rng| rng.below(5) as u16;
    let range = |rng: &mut Rng| match rng.below(2) {
        0 => {
            let start = page(rng);
            PageRange {
                start,
                end: start + 1,
            }
        }
        _ => PageRange {
            start: page(rng),
            end: page(rng),
        },
    };
    let span = |rng: &mut Rng| match rng.below(3) {
        0 => Span::Bytes {
            page: page(rng),
            start: rng.below(4200) as u16,
            end: rng.below(4200) as u16,
        },
        _ => Span::Pages(range(rng)),
    };
    match rng.below(8) {
        0 => Op::Map {
            proc,
            map,
            kind: MapKind::ALL[rng.below(4)],
            pages: rng.below(70) as u16,
            tail: [0, 0, 4, 4096, 4097][rng.below(5)],
            args: MapArgs {
                fd: rng.below(4) == 0,
                offset: Offset {
                    pages: [0, 0, 0, 1][rng.below(4)],
                    bytes: [0, 0, 0, 1, 4096][rng.below(5)],
                },
                hugetlb: rng.below(8) == 0,
            },
        },
        1 | 2 => Op::Write {
            proc,
            map,
            span: span(rng),
            pattern: [Pattern::Fill, Pattern::Ramp][rng.below(2)](rng.next() as u8),
        },
        3 => Op::Read {
            proc,
            map,
            span: span(rng),
        },
        4 | 5 => Op::Fork {
            proc,
            child: ProcId(rng.below(5) as u8),
        },
        6 => Op::Exit { proc },
        _ => Op::Unmap {
            proc,
            map,
            pages: range(rng),
            tail: [0, 0, 1, 4096][rng.below(4)],
        },
    }
}

/// Trace lines that mostly read back: ops the validator admits, written with random
/// separators, comments and line endings; once in a while an op it rejects.
fn plausible_lines(rng: &mut Rng, out: &mut Vec<u8>) {
    let mut validator = Validator::new();
    for _ in 0..rng.below(24) {
        let line = match rng.below(8) {
            0 => String::new(),
            1 => format!("{}# note {}", [" ", "", "\t"][rng.below(3)], rng.below(9)),
            _ => {
                let mut op = random_op(rng);
                for _ in 0..16 {
                    if validator.clone().admit(&op).is_ok() {
                        break;
                    }
                    op = random_op(rng);
                }
                if validator.admit(&op).is_err() && rng.below(64) != 0 {
                    continue;
                }
                let mut line = String::new();
                for token in op.to_string().split(' ') {
                    line.push_str([" ", "\t", "", "  "][rng.below(4)]);
                    line.push_str(token);
                    line.push_str([" ", " ", "\t"][rng.below(3)]);
                }
                if rng.below(4) == 0 {
                    line.push_str("#inline");
                }
                line
            }
        };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(["\n", "\r\n"][rng.below(2)].as_bytes());
    }
}

/// xorshift64: deterministic, no crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn any_bytes_parse_or_fail_without_panicking() {
    const PIECES: &[&str] = &[
        "cowcheck-trace 1\n",
        "p0",
        "p1",
        "p255",
        "p256",
        " ",
        "\t",
        "\n",
        "\r\n",
        "\r",
        "#",
        "map",
        "write",
        "read",
        "fork",
        "exit",
        "unmap",
        "m0",
        "m1",
        "m31",
        "private",
        "shared-zero",
        "0",
        "1",
        "3",
        "0..4",
        "1..2",
        "2[100..200]",
        "0[0..4096]",
        "..",
        "[",
        "]",
        "fill",
        "ramp",
        "0xaa",
        "0x",
        "99999999999999999999",
        "é",
        "\0",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut parsed, mut deep) = (0, 0);
    for round in 0..6000 {
        let mut input = Vec::new();
        if round % 5 != 0 {
            input.extend_from_slice(b"cowcheck-trace 1\n");
        }
        match round % 3 {
            0 => (0..rng.below(64)).for_each(|_| input.push(rng.next() as u8)),
            1 => (0..rng.below(32))
                .for_each(|_| input.extend_from_slice(PIECES[rng.below(PIECES.len())].as_bytes())),
            _ => {
                plausible_lines(&mut rng, &mut input);
                // Now and then one byte goes bad.
                if !input.is_empty() && rng.below(4) == 0 {
                    let at = rng.below(input.len());
                    input[at] = rng.next() as u8;
                }
            }
        }
        match parse(&input) {
            Ok(program) => {
                parsed += 1;
                if program.ops.len() >= 8 {
                    deep += 1;
                }
                let printed = program.to_string();
                let again = parse_str(&printed).expect("printed traces read back");
                assert_eq!(again, program, "round trip of {printed:?}");
                assert_eq!(again.to_string(), printed);
            }
            Err(e) => {
                assert!(e.line >= 1 && e.column >= 1, "{e}");
                assert!(!e.message.is_empty());
            }
        }
    }
    // Counter-check: the loop is worthless if nothing, or everything, parses.
    assert!(
        (1000..5000).contains(&parsed),
        "{parsed} of 6000 inputs parsed"
    );
    assert!(deep >= 100, "only {deep} parsed programs had 8 ops or more");
}

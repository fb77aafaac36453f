//! Tests of the trace format: round trips, every error message with its position, and random
//! bytes that must parse or fail without a panic.

use super::op_line::{OpLine, tokenize};
use super::*;
use crate::program::{
    Advice, At, Comment, MapArgs, MapId, MapKind, Offset, Op, OpKind, PageRange, Pattern, PlaceHow,
    ProcId, Program, Prot, RemapFlags, Span, Validator, caps,
};

const EVERY_FORM: &str = "\
cowcheck-trace 1
# a comment line
p0 map m0 private 4
p0 map m1 shared 2

p0 map m2 private-zero 1
p0 map m3 shared-zero 64
p0 write m0 0..4 fill 0xaa
p0 write m0 2[100..200] ramp 0x5b #an inline comment
p0 read m0 0..4
p0 read m0 2
p0 read m1 1[0..4096]
p0 fork p1
p1 write m1 0 fill 0x00
p1 exit
p0 unmap m0 1..3
p0 unmap m3 63
#
#  trailing comment with spaces  \t

";

fn err(input: &str) -> TraceError {
    match parse_str(input) {
        Ok(p) => panic!("{input:?} parsed as {p:?}"),
        Err(e) => e,
    }
}

/// Asserts the error's position and that its message contains `needle`.
fn assert_err(input: &str, line: usize, column: usize, needle: &str) {
    let e = err(input);
    assert_eq!(
        (e.line, e.column),
        (line, column),
        "position of {e} for {input:?}"
    );
    assert!(
        e.message.contains(needle),
        "{:?} does not contain {needle:?}",
        e.message
    );
}

fn with_map(body: &str) -> String {
    format!("{HEADER}\np0 map m0 private 4\n{body}")
}

#[test]
fn every_form_round_trips_exactly() {
    let program = parse_str(EVERY_FORM).expect("parses");
    assert_eq!(program.ops.len(), 14);
    assert_eq!(program.to_string(), EVERY_FORM);
    assert_eq!(parse_str(&program.to_string()), Ok(program.clone()));
    assert_eq!(EVERY_FORM.parse::<Program>(), Ok(program));
}

#[test]
fn ops_read_as_written() {
    let program = parse_str(EVERY_FORM).expect("parses");
    let (p0, p1, m0) = (ProcId(0), ProcId(1), MapId(0));
    assert_eq!(
        program.ops[0],
        Op::Map {
            proc: p0,
            map: m0,
            kind: MapKind::Private,
            pages: 4,
            tail: 0,
            args: MapArgs::default(),
        }
    );
    assert_eq!(
        program.ops[5],
        Op::Write {
            proc: p0,
            map: m0,
            span: Span::Bytes {
                page: 2,
                start: 100,
                end: 200
            },
            pattern: Pattern::Ramp(0x5b)
        }
    );
    assert_eq!(
        program.ops[7],
        Op::Read {
            proc: p0,
            map: m0,
            span: Span::Pages(PageRange { start: 2, end: 3 })
        }
    );
    assert_eq!(
        program.ops[9],
        Op::Fork {
            proc: p0,
            child: p1
        }
    );
    assert_eq!(program.ops[11], Op::Exit { proc: p1 });
    assert_eq!(
        program.ops[12],
        Op::Unmap {
            proc: p0,
            map: m0,
            pages: PageRange { start: 1, end: 3 },
            tail: 0,
        }
    );
}

#[test]
fn op_display_is_one_line() {
    let op = Op::Write {
        proc: ProcId(0),
        map: MapId(0),
        span: Span::Bytes {
            page: 2,
            start: 100,
            end: 200,
        },
        pattern: Pattern::Ramp(0x5b),
    };
    assert_eq!(op.to_string(), "p0 write m0 2[100..200] ramp 0x5b");
    let fill = Op::Write {
        proc: ProcId(3),
        map: MapId(1),
        span: Span::Pages(PageRange { start: 0, end: 4 }),
        pattern: Pattern::Fill(10),
    };
    assert_eq!(fill.to_string(), "p3 write m1 0..4 fill 0x0a");
}

#[test]
fn comments_and_blank_lines_are_kept_in_place() {
    let text = "cowcheck-trace 1\n\n# first\np0 map m0 private 1 # on m0\n\n#end\n";
    let program = parse_str(text).expect("parses");
    let comment = |before_op, inline, text: Option<&str>| Comment {
        before_op,
        inline,
        text: text.map(str::to_owned),
    };
    assert_eq!(
        program.comments,
        vec![
            comment(0, false, None),
            comment(0, false, Some(" first")),
            comment(0, true, Some(" on m0")),
            comment(1, false, None),
            comment(1, false, Some("end")),
        ]
    );
    assert_eq!(program.to_string(), text);
}

#[test]
fn loose_input_prints_canonically_and_stays_put() {
    let loose = "cowcheck-trace 1\r\n\t p0  map\tm0 private 04   #  note \r\n   \n  # x\np0 write m0 0..1 fill 170\np0 read m0 0[0..1]";
    let canonical = "cowcheck-trace 1\np0 map m0 private 4 #  note \n\n# x\np0 write m0 0 fill 0xaa\np0 read m0 0[0..1]\n";
    let program = parse_str(loose).expect("parses");
    assert_eq!(program.to_string(), canonical);
    assert_eq!(parse_str(canonical), Ok(program));
}

#[test]
fn built_programs_round_trip() {
    let mut program = Program::new(vec![
        Op::Map {
            proc: ProcId(0),
            map: MapId(0),
            kind: MapKind::SharedZero,
            pages: 3,
            tail: 0,
            args: MapArgs::default(),
        },
        Op::Fork {
            proc: ProcId(0),
            child: ProcId(1),
        },
        Op::Unmap {
            proc: ProcId(1),
            map: MapId(0),
            pages: PageRange { start: 0, end: 3 },
            tail: 0,
        },
    ]);
    assert!(program.validate().is_ok());
    assert_eq!(parse_str(&program.to_string()), Ok(program.clone()));
    program.comments = vec![
        Comment {
            before_op: 1,
            inline: false,
            text: Some("# why".into()),
        },
        Comment {
            before_op: 1,
            inline: true,
            text: Some("child".into()),
        },
        Comment {
            before_op: 3,
            inline: false,
            text: None,
        },
    ];
    assert_eq!(parse_str(&program.to_string()), Ok(program));
}

#[test]
fn odd_comments_still_print_a_trace_that_reads_back() {
    let program = Program {
        expects: Vec::new(),
        ops: vec![Op::Exit { proc: ProcId(0) }],
        comments: vec![
            Comment {
                before_op: 0,
                inline: false,
                text: Some("two\nlines\r\0".into()),
            },
            Comment {
                before_op: 9,
                inline: true,
                text: Some("past the end".into()),
            },
        ],
    };
    let printed = program.to_string();
    assert_eq!(
        printed,
        "cowcheck-trace 1\n#two\u{fffd}lines\u{fffd}\u{fffd}\np0 exit\n#past the end\n"
    );
    let again = parse_str(&printed).expect("printed traces read back");
    assert_eq!(again.to_string(), printed);
}

/// The grammar in this module's doc and README.md's table (the users' copy) name every verb
/// the parser knows, so neither lags behind a new one.
#[test]
fn every_verb_is_in_the_grammar_and_the_readme() {
    let doc = include_str!("../mod.rs");
    let readme = include_str!("../../../../README.md");
    // `end` is written `THREAD end` (op threads, T20).
    let verbs = OpKind::ALL
        .into_iter()
        .filter(|k| !k.is_alloc() && *k != OpKind::End)
        .map(OpKind::name)
        .chain(super::op_line::ALLOC_VERBS);
    assert!(doc.contains("THREAD \"end\"") && readme.contains("| `THREAD end`"));
    for verb in verbs {
        assert!(
            doc.contains(&format!("PROC \"{verb}\"")),
            "the grammar in trace/mod.rs lacks {verb}"
        );
        assert!(
            readme.contains(&format!("| `PROC {verb}")),
            "README.md's grammar table lacks {verb}"
        );
    }
}

/// Every example of README.md's grammar table reads as one op and is written canonically.
#[test]
fn readme_examples_are_canonical_op_lines() {
    let readme = include_str!("../../../../README.md");
    let mut seen = 0;
    for row in readme.lines().filter(|l| l.starts_with("| `PROC ")) {
        let example = row
            .split(" | ")
            .nth(1)
            .and_then(|cell| cell.strip_prefix('`'))
            .and_then(|cell| cell.strip_suffix('`'))
            .unwrap_or_else(|| panic!("no example in {row:?}"));
        let (op, _) = OpLine::new(1, tokenize(example))
            .parse()
            .unwrap_or_else(|e| panic!("README.md's example {example:?}: {e}"));
        assert_eq!(op.to_string(), example);
        seen += 1;
    }
    assert!(
        seen >= OpKind::ALL.len(),
        "only {seen} examples in README.md"
    );
}

/// The example at the top of this module's doc is a trace that parses.
#[test]
fn the_doc_example_parses() {
    let doc = include_str!("../mod.rs");
    let example: String = doc
        .lines()
        .skip_while(|l| *l != "//! ```text")
        .skip(1)
        .take_while(|l| *l != "//! ```")
        .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
        .collect();
    let program = parse_str(&example).unwrap_or_else(|e| panic!("{e}\n{example}"));
    assert!(program.ops.len() >= 10, "{example}");
}

mod alloc;
mod errors;
mod mmap_interface;

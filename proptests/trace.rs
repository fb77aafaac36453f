//! Property runs of the text trace format (`cowcheck::program::trace`): the printer and the
//! parser are inverse to each other, and the parser takes any bytes without panicking.
//!
//! Properties, each checked by one function that takes the printer and parser under test:
//! - [`program_round_trips`]: `parse(print(p)) == p` for generated programs, comments included;
//! - [`trace_round_trips`]: `print(parse(t)) == t` for every printed (canonical) trace `t`;
//! - [`normalises`]: the parser never panics on arbitrary bytes, and whatever it accepts is
//!   stable after one normalisation: `p = parse(b)` gives `parse(print(p)) == p` and
//!   `print(parse(print(p))) == print(p)`.
//!
//! Every property has a counter-test that runs the same function with a deliberately broken
//! side (a printer that drops one character of a handle, a parser that panics) and asserts that
//! the property fails.
//!
//! # Replaying a failure
//!
//! Runs are deterministic: each property has a fixed ChaCha seed (a hash of its name, printed on
//! failure). On a failure:
//! - the failing program is printed as a cowcheck trace and written to
//!   `target/tmp/cowcheck-proptests/<property>.trace` (`cowcheck model FILE` reads it; for
//!   [`normalises`] the raw input bytes are written to `<property>-input.trace`);
//! - proptest persists the failing case's seed in `proptests/regressions/<property>.txt`; the
//!   next `cargo test --release --test proptest_trace` replays it before any new case (commit
//!   the file to keep the case in CI);
//! - `COWCHECK_PROPTEST_CASES=N` (or proptest's own `PROPTEST_CASES=N`) runs N cases instead
//!   of the default, `PROPTEST_RNG_SEED=S` runs another seed.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use common::{Generated, Property, Ran, passed, programs, verdict};
use cowcheck::program::trace::{self, HEADER, MAX_LINE_BYTES, TraceError};
use cowcheck::program::{Comment, Program};
use proptest::prelude::*;

type Printer = dyn Fn(&Program) -> String;
type Parser = dyn Fn(&[u8]) -> Result<Program, TraceError>;

fn print(p: &Program) -> String {
    p.to_string()
}

fn parse(input: &[u8]) -> Result<Program, TraceError> {
    trace::parse(input)
}

/// A text for a message: lines longer than 160 characters are cut, with their length noted.
fn show(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| match line.char_indices().nth(160) {
            Some((cut, _)) => format!("{}… ({} bytes)\n", &line[..cut], line.trim_end().len()),
            None => line.to_string(),
        })
        .collect()
}

/// The first line where two texts differ, for messages.
fn first_difference(a: &str, b: &str) -> String {
    let (mut la, mut lb) = (a.split_inclusive('\n'), b.split_inclusive('\n'));
    for number in 1.. {
        match (la.next(), lb.next()) {
            (None, None) => return "no difference".into(),
            (x, y) if x == y => continue,
            (x, y) => return format!("line {number}: {x:?} vs {y:?}"),
        }
    }
    unreachable!()
}

/// The first op (or the comment list) where two programs differ, for messages.
fn program_difference(a: &Program, b: &Program) -> String {
    if let Some(i) = (0..a.ops.len().max(b.ops.len())).find(|&i| a.ops.get(i) != b.ops.get(i)) {
        return format!("op {i}: {:?} vs {:?}", a.ops.get(i), b.ops.get(i));
    }
    format!("comments: {:?} vs {:?}", a.comments, b.comments)
}

/// `parse(print(p)) == p`.
fn program_round_trips(p: &Program, print: &Printer, parse: &Parser) -> Result<(), String> {
    let text = print(p);
    let q = parse(text.as_bytes()).map_err(|e| {
        format!(
            "the printed program does not parse back: {e}\nprinted:\n{}",
            show(&text)
        )
    })?;
    if &q != p {
        return Err(format!(
            "parse(print(p)) != p: {}\nprinted:\n{}",
            program_difference(p, &q),
            show(&text)
        ));
    }
    Ok(())
}

/// `print(parse(t)) == t` for a canonical trace `t`.
fn trace_round_trips(text: &str, print: &Printer, parse: &Parser) -> Result<(), String> {
    let p = parse(text.as_bytes()).map_err(|e| {
        format!(
            "a printed trace does not parse: {e}\ntrace:\n{}",
            show(text)
        )
    })?;
    let again = print(&p);
    if again != text {
        return Err(format!(
            "print(parse(t)) != t at {}\nt:\n{}",
            first_difference(text, &again),
            show(text)
        ));
    }
    Ok(())
}

/// The parser never panics; what it accepts reads back the same after one normalisation.
fn normalises(input: &[u8], print: &Printer, parse: &Parser) -> Result<(), String> {
    let parsed = catch_unwind(AssertUnwindSafe(|| parse(input)))
        .map_err(|_| "the parser panicked on the input".to_string())?;
    let Ok(p) = parsed else {
        return Ok(());
    };
    let normal = print(&p);
    let reparsed = catch_unwind(AssertUnwindSafe(|| parse(normal.as_bytes()))).map_err(|_| {
        format!(
            "the parser panicked on the normalised trace:\n{}",
            show(&normal)
        )
    })?;
    let q = reparsed.map_err(|e| {
        format!(
            "the input parses but its normalised form does not: {e}\nnormalised:\n{}",
            show(&normal)
        )
    })?;
    if q != p {
        return Err(format!(
            "parse(print(parse(b))) != parse(b): {}\nnormalised:\n{}",
            program_difference(&p, &q),
            show(&normal)
        ));
    }
    let twice = print(&q);
    if twice != normal {
        return Err(format!(
            "normalising twice changes the text at {}\nnormalised:\n{}",
            first_difference(&normal, &twice),
            show(&normal)
        ));
    }
    Ok(())
}

// ---- strategies -------------------------------------------------------------------------------

/// Comment text as the parser can make it: anything but CR, LF and NUL.
fn comment_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ -~\t]{0,24}",
        1 => "[^\n\r\x00]{0,12}",
    ]
}

/// A generated program with comments placed the way the parser places them: in line order,
/// standalone comments and blank lines before an op's inline comment, at most one inline
/// comment per op.
fn commented_programs() -> impl Strategy<Value = Generated> {
    let comment = (any::<u16>(), any::<bool>(), any::<bool>(), comment_text());
    (programs(), proptest::collection::vec(comment, 0..8)).prop_map(|(mut g, raw)| {
        let n = g.program.ops.len();
        let mut comments: Vec<Comment> = raw
            .into_iter()
            .map(|(at, inline, blank, text)| {
                let before_op = at as usize % (n + 1);
                let inline = inline && before_op < n;
                Comment {
                    before_op,
                    inline,
                    text: (inline || !blank).then_some(text),
                }
            })
            .collect();
        // Stable: standalone lines keep their order; each op's inline comment comes last.
        comments.sort_by_key(|c| (c.before_op, c.inline));
        comments.dedup_by(|b, a| a.inline && b.inline && a.before_op == b.before_op);
        g.program.comments = comments;
        g
    })
}

/// Pieces that make traces almost right: tokens of the grammar, numbers at and past the caps,
/// separators, line breaks and bytes that are not text.
const VOCABULARY: &[&str] = &[
    "p0",
    "p1",
    "p2",
    "p3",
    "p15",
    "p31",
    "p32",
    "p255",
    "p256",
    "p",
    "m0",
    "m1",
    "m2",
    "m31",
    "m32",
    "m256",
    "m",
    "map",
    "write",
    "read",
    "fork",
    "exit",
    "unmap",
    "private",
    "shared",
    "private-zero",
    "shared-zero",
    "fill",
    "ramp",
    "0x00",
    "0xff",
    "0XAB",
    "0x100",
    "0x",
    "255",
    "256",
    "0",
    "1",
    "2",
    "4",
    "8",
    "64",
    "65",
    "0..1",
    "0..4",
    "1..3",
    "1..1",
    "3..1",
    "..",
    "0..",
    "2[0..4096]",
    "0[4095..4096]",
    "0[0..4097]",
    "0[5..5]",
    "1[",
    "]",
    "65535",
    "65536",
    "4294967296",
    "00",
    "+1",
    "-1",
    "é",
    "\u{fffd}",
    "#",
    "# c",
    "#x#y",
    " ",
    "\t",
    "\r",
    "\n",
    "\r\n",
    "\0",
    "\u{a0}",
    HEADER,
    "cowcheck-trace",
    "cowcheck-trace 2",
    // The placement, mprotect, madvise and mremap ops.
    "protect",
    "advise",
    "remap",
    "invalid",
    "fixed",
    "noreplace",
    "hint",
    "m0+1",
    "m1+0",
    "m0+64",
    "m0+",
    "+",
    "maymove",
    "dontunmap",
    "as",
    "none",
    "read-write",
    "dontneed",
    "free",
    "dontfork",
    "wipeonfork",
    "guard-install",
    "populate-write",
    "mmap",
    "mremap",
    "zero-length",
    "unaligned",
    "overflow",
];

/// Raw bytes that are not UTF-8 on their own.
const BAD_BYTES: &[&[u8]] = &[
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\xf8\x88\x80\x80\x80",
];

fn piece(sel: u16) -> Vec<u8> {
    let i = sel as usize % (VOCABULARY.len() + BAD_BYTES.len());
    match VOCABULARY.get(i) {
        Some(s) => s.as_bytes().to_vec(),
        None => BAD_BYTES[i - VOCABULARY.len()].to_vec(),
    }
}

/// Edits that keep a trace valid but not canonical: blanks and comments at line ends, CR LF
/// line breaks, blank lines, leading blanks.
const BENIGN: &[&str] = &[" ", "\t", " \t ", "#", " # c", "#x#y", "\r", "\n", "\n# c"];

/// A printed program with a few edits: most keep it valid (blanks, comments, CR LF, leading
/// zeros, a decimal pattern byte), some break it (pieces inserted, bytes deleted or replaced).
fn mutated_traces() -> impl Strategy<Value = Vec<u8>> {
    let edit = (0u8..8, any::<u16>(), any::<u16>());
    (commented_programs(), proptest::collection::vec(edit, 0..4)).prop_map(|(g, edits)| {
        let mut bytes = g.program.to_string().into_bytes();
        for (kind, at, sel) in edits {
            let at = at as usize % (bytes.len() + 1);
            // Line breaks after `at`, to edit at a line's end; token starts, to edit a number.
            let line_end = bytes[at..].iter().position(|&b| b == b'\n').map(|i| at + i);
            let token = bytes[at..]
                .windows(2)
                .position(|w| (w[0] == b' ' || w[0] == b'\n') && (w[1] == b'p' || w[1] == b'm'))
                .map(|i| at + i + 2);
            match kind {
                0 => {
                    bytes.splice(at..at, piece(sel));
                }
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                2 if at < bytes.len() => {
                    bytes.splice(at..at + 1, piece(sel));
                }
                3 | 4 => {
                    let benign = BENIGN[sel as usize % BENIGN.len()].as_bytes();
                    let at = line_end.unwrap_or(bytes.len());
                    bytes.splice(at..at, benign.iter().copied());
                }
                5 => {
                    // p3 -> p03, m1 -> m001: the same handle.
                    if let Some(at) = token {
                        bytes.splice(at..at, std::iter::repeat_n(b'0', 1 + sel as usize % 3));
                    }
                }
                6 => {
                    // fill 0x0a -> fill 10 or fill 0X0A.
                    let found = bytes[at..]
                        .windows(3)
                        .position(|w| w == b" 0x")
                        .map(|i| i + at);
                    let digits = found.and_then(|i| {
                        let hex = std::str::from_utf8(bytes.get(i + 3..i + 5)?).ok()?;
                        Some((i, u8::from_str_radix(hex, 16).ok()?))
                    });
                    if let Some((i, v)) = digits {
                        let new = if sel % 2 == 0 {
                            v.to_string()
                        } else {
                            format!("0X{v:02X}")
                        };
                        bytes.splice(i + 1..i + 5, new.into_bytes());
                    }
                }
                _ => {
                    // Doubled separators inside an op line.
                    if let Some(at) = token {
                        bytes.splice(at - 1..at - 1, *b" \t");
                    }
                }
            }
        }
        bytes
    })
}

/// A header (mostly the right one) and lines of grammar tokens and separators.
fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    let line = (
        proptest::collection::vec((any::<u16>(), 0u8..4), 0..7),
        proptest::option::of("[ -~]{0,8}"),
        any::<bool>(),
    );
    (
        0u8..10,
        proptest::collection::vec(line, 0..12),
        any::<bool>(),
    )
        .prop_map(|(header, lines, final_break)| {
            let mut out = match header {
                0 => b"cowcheck-trace 2".to_vec(),
                1 => Vec::new(),
                _ => HEADER.as_bytes().to_vec(),
            };
            for (tokens, comment, crlf) in lines {
                out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                for (k, (sel, sep)) in tokens.into_iter().enumerate() {
                    if k > 0 || sep == 3 {
                        out.extend_from_slice([" ", "\t", "  ", " \t "][sep as usize].as_bytes());
                    }
                    out.extend(piece(sel));
                }
                if let Some(c) = comment {
                    out.push(b'#');
                    out.extend_from_slice(c.as_bytes());
                }
            }
            if final_break {
                out.push(b'\n');
            }
            out
        })
}

/// Lines at the length limit: an op line of a printed program padded with a comment to
/// `MAX_LINE_BYTES - deficit` bytes, written in one of the non-canonical spellings
/// (a comment right after the op, a decimal pattern byte, extra blanks) or the canonical one.
fn long_lines() -> impl Strategy<Value = Vec<u8>> {
    (programs(), any::<u16>(), 0usize..6, 0u8..4, any::<bool>()).prop_map(
        |(g, which, deficit, style, wide)| {
            let text = g.program.to_string();
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() < 2 {
                lines.push(String::new());
            }
            let at = 1 + which as usize % (lines.len() - 1);
            let mut line = lines[at].clone();
            if style == 1 {
                // fill 0x0a -> fill 10: the printer writes it back three bytes longer.
                if let Some(i) = line.find(" 0x") {
                    let value = u8::from_str_radix(&line[i + 3..i + 5], 16).unwrap_or(0);
                    line.replace_range(i + 1..i + 5, &value.to_string());
                }
            }
            if style == 2 {
                line = format!("\t{}", line.replace(' ', "  "));
            }
            line.push_str(if style == 3 { " #" } else { "#" });
            let target = MAX_LINE_BYTES - deficit;
            // Multi-byte padding puts the limit inside a character sometimes.
            let pad = if wide { 'é' } else { 'x' };
            while line.len() + pad.len_utf8() <= target {
                line.push(pad);
            }
            while line.len() < target {
                line.push('x');
            }
            lines[at] = line;
            let mut out = lines.join("\n");
            out.push('\n');
            out.into_bytes()
        },
    )
}

/// Bytes for the parser. `Debug` (what the regression file and messages show) is the text with
/// escapes, runs of one character written once with a count, so long lines stay readable.
#[derive(Clone)]
struct Input(Vec<u8>);

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = String::from_utf8_lossy(&self.0);
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            let run = chars[i..].iter().take_while(|&&c| c == chars[i]).count();
            let escaped: String = chars[i].escape_debug().collect();
            if run > 8 {
                out.push_str(&format!("{{{escaped}×{run}}}"));
            } else {
                (0..run).for_each(|_| out.push_str(&escaped));
            }
            i += run;
        }
        write!(f, "\"{out}\" ({} bytes)", self.0.len())
    }
}

/// Inputs for the parser: mostly near misses, some long lines, some noise.
fn parser_inputs() -> impl Strategy<Value = Input> {
    prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 0..300),
        4 => mutated_traces(),
        3 => token_soup(),
        1 => long_lines(),
    ]
    .prop_map(Input)
}

// ---- the properties, parameterised by the side under test -----------------------------------

fn run_program_round_trip(
    property: &Property,
    persist: bool,
    printer: &Printer,
    parser: &Parser,
) -> Ran<Generated> {
    property.run(persist, &commented_programs(), |g| {
        verdict(program_round_trips(&g.program, printer, parser))
    })
}

fn run_trace_round_trip(
    property: &Property,
    persist: bool,
    printer: &Printer,
    parser: &Parser,
) -> Ran<Generated> {
    property.run(persist, &commented_programs(), |g| {
        // The trace is printed by the printer under test, so a broken printer makes broken
        // traces and must still be caught.
        verdict(trace_round_trips(&printer(&g.program), printer, parser))
    })
}

/// Runs the normalisation property; also says how many inputs the real parser accepted, so
/// that a strategy that only ever makes garbage is seen.
fn run_normalises(
    property: &Property,
    persist: bool,
    printer: &Printer,
    parser: &Parser,
) -> (Ran<Input>, u32) {
    let accepted = std::cell::Cell::new(0u32);
    let ran = property.run(persist, &parser_inputs(), |input| {
        if catch_unwind(AssertUnwindSafe(|| trace::parse(&input.0))).is_ok_and(|r| r.is_ok()) {
            accepted.set(accepted.get() + 1);
        }
        verdict(normalises(&input.0, printer, parser))
    });
    (ran, accepted.get())
}

/// Panics with the full report if a real run failed.
fn expect_pass<V>(property: &Property, ran: Ran<V>, report: impl FnOnce(&str, &V) -> String) {
    match ran {
        Ran::Passed { cases, elapsed } => passed(property.name, property.seed, cases, elapsed),
        Ran::Failed { reason, value, .. } => panic!("{}", report(&reason, &value)),
    }
}

fn program_report(property: &Property) -> impl FnOnce(&str, &Generated) -> String + '_ {
    move |reason, g| property.failure_report(reason, &[("", &g.program)], "cowcheck model")
}

#[test]
fn printed_programs_parse_back() {
    let property = Property::new("trace_program_round_trip", 5000);
    let ran = run_program_round_trip(&property, true, &print, &parse);
    expect_pass(&property, ran, program_report(&property));
}

#[test]
fn printed_traces_print_back() {
    let property = Property::new("trace_text_round_trip", 5000);
    let ran = run_trace_round_trip(&property, true, &print, &parse);
    expect_pass(&property, ran, program_report(&property));
}

#[test]
fn parser_takes_any_bytes_and_normalises_once() {
    let property = Property::new("trace_normalises", 20000);
    let (ran, accepted) = run_normalises(&property, true, &print, &parse);
    if let Ran::Passed { cases, .. } = ran {
        eprintln!(
            "{}: the parser accepted {accepted} of {cases} inputs",
            property.name
        );
        assert!(
            accepted * 100 >= cases * 10,
            "only {accepted} of {cases} inputs parse; the strategy no longer reaches the \
             parser's accepting paths"
        );
    }
    expect_pass(&property, ran, |reason, input| {
        let bytes = &input.0;
        let path = property.trace_file("-input");
        let _ = std::fs::create_dir_all(path.parent().expect("has a parent"));
        let saved = std::fs::write(&path, bytes);
        format!(
            "property `{}` failed (seed {}): {reason}\ninput ({}): {input:?}\n\
             rerun: the seed is persisted in {} and replays first",
            property.name,
            property.seed,
            match saved {
                Ok(()) => format!("saved to {}; try `cowcheck model` on it", path.display()),
                Err(e) => format!("not saved: {e}"),
            },
            property.regression_file().display()
        )
    });
}

// ---- counter-tests: the same properties with a broken side must fail --------------------------

/// The real printer, then one character of a handle dropped: the last handle of the last op
/// line loses its last digit (`p0 fork p12` prints as `p0 fork p1`).
fn printer_dropping_a_handle_character(p: &Program) -> String {
    let text = p.to_string();
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    let Some(at) = lines.iter().rposition(|l| l.starts_with('p')) else {
        return text;
    };
    let line = lines[at];
    let code_end = line.find('#').unwrap_or(line.len());
    let handle_end = line[..code_end]
        .match_indices(['p', 'm'])
        .filter(|(i, _)| *i == 0 || line.as_bytes()[i - 1] == b' ')
        .filter_map(|(i, _)| {
            let digits = line[i + 1..].find(|c: char| !c.is_ascii_digit())? + i + 1;
            (digits > i + 1).then_some(digits)
        })
        .next_back();
    let Some(end) = handle_end else {
        return text;
    };
    let corrupted = format!("{}{}", &line[..end - 1], &line[end..]);
    lines[at] = &corrupted;
    lines.concat()
}

/// Keeps the deliberate panics of the counter-test (one per shrink step) out of the output;
/// every other panic is reported by the hook that was there before.
fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let deliberate = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.starts_with("deliberate panic"));
            if !deliberate {
                previous(info);
            }
        }));
    });
}

fn parser_that_panics_on_fork(input: &[u8]) -> Result<Program, TraceError> {
    if input.windows(4).any(|w| w == b"fork") {
        panic!("deliberate panic: the input mentions fork");
    }
    trace::parse(input)
}

/// Asserts that a counter-run failed and returns its reason.
fn expect_fail<V: std::fmt::Debug>(property: &Property, ran: Ran<V>) -> (String, V) {
    match ran {
        Ran::Failed {
            reason,
            value,
            elapsed,
        } => {
            eprintln!(
                "{} (counter-test): caught in {:.2} s: {reason}\nminimal input: {value:?}",
                property.name,
                elapsed.as_secs_f64()
            );
            (reason, value)
        }
        Ran::Passed { cases, .. } => panic!(
            "{}: the broken side passed {cases} cases; the property cannot fail",
            property.name
        ),
    }
}

#[test]
fn counter_corrupted_printer_breaks_program_round_trip() {
    let property = Property::new("trace_program_round_trip", 5000);
    let ran = run_program_round_trip(
        &property,
        false,
        &printer_dropping_a_handle_character,
        &parse,
    );
    let (reason, value) = expect_fail(&property, ran);
    assert!(!value.program.ops.is_empty());
    assert!(reason.contains("parse"), "{reason}");
    // The report carries the failing program as a trace that reads back.
    let report = property.failure_report(&reason, &[("counter", &value.program)], "cowcheck model");
    assert!(report.contains(&value.program.to_string()), "{report}");
}

#[test]
fn counter_corrupted_printer_breaks_trace_round_trip() {
    let property = Property::new("trace_text_round_trip", 5000);
    let ran = run_trace_round_trip(
        &property,
        false,
        &printer_dropping_a_handle_character,
        &parse,
    );
    let (reason, _) = expect_fail(&property, ran);
    assert!(
        reason.contains("print(parse(t)) != t") || reason.contains("does not parse"),
        "{reason}"
    );
}

#[test]
fn counter_corrupted_printer_breaks_normalisation() {
    let property = Property::new("trace_normalises", 20000);
    let (ran, _) = run_normalises(
        &property,
        false,
        &printer_dropping_a_handle_character,
        &parse,
    );
    let (reason, input) = expect_fail(&property, ran);
    assert!(
        parse(&input.0).is_ok(),
        "the minimal input must be one the real parser accepts"
    );
    assert!(reason.contains("normalised"), "{reason}");
}

#[test]
fn counter_panicking_parser_is_caught() {
    let property = Property::new("trace_normalises", 20000);
    quiet_deliberate_panics();
    let (ran, _) = run_normalises(&property, false, &print, &parser_that_panics_on_fork);
    let (reason, input) = expect_fail(&property, ran);
    assert!(reason.contains("panicked"), "{reason}");
    assert!(input.0.windows(4).any(|w| w == b"fork"));
}

#[test]
fn counter_printer_corruption_is_what_it_claims() {
    let p: Program = "cowcheck-trace 1\np0 map m0 private 1\np0 fork p12 #c\n"
        .parse()
        .expect("valid");
    assert_eq!(
        printer_dropping_a_handle_character(&p),
        "cowcheck-trace 1\np0 map m0 private 1\np0 fork p1 #c\n"
    );
}

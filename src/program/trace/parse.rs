//! The reader, line by line: the header, the text rules (UTF-8, no NUL, line breaks, line
//! length), comments, blank lines and inline expectations; each op line goes to
//! [`OpLine`], each op to the [`Validator`]. Never panics, whatever the bytes.

use std::str::FromStr;

use super::error::{TraceError, clip, quoted};
use super::op_line::{OpLine, tokenize};
use crate::program::expect::Expect;
use crate::program::{Comment, Program, Validator};

/// The first line of every trace: the format's name and version.
pub const HEADER: &str = "cowcheck-trace 1";

/// The header's first token; what follows it is the version.
const HEADER_NAME: &str = "cowcheck-trace";

/// The longest line the parser accepts, in bytes, without its line break.
pub const MAX_LINE_BYTES: usize = 4096;

/// Parses a trace. Any byte string gives a program or an error, never a panic.
pub fn parse(input: &[u8]) -> Result<Program, TraceError> {
    if input.is_empty() {
        return Err(TraceError::new(
            1,
            1,
            format!("empty input; a trace starts with the header line \"{HEADER}\""),
        ));
    }
    // A final line break ends the last line; it does not start another one.
    let body = input.strip_suffix(b"\n").unwrap_or(input);
    let mut lines = (1..).zip(body.split(|&b| b == b'\n'));

    if let Some((number, raw)) = lines.next() {
        check_header(number, line_text(number, raw)?)?;
    }

    let mut program = Program::default();
    let mut validator = Validator::new();
    for (number, raw) in lines {
        let text = line_text(number, raw)?;
        let (code, comment) = match text.split_once('#') {
            Some((code, comment)) => (code, Some(comment)),
            None => (text, None),
        };
        // `=> EXPECTATION` ends the op part; `expect_at` is the column just past the arrow.
        let (code, expect_text) = match code.split_once("=>") {
            Some((code, rest)) => (code, Some((code.chars().count() + 3, rest))),
            None => (code, None),
        };
        let tokens = tokenize(code);
        if let (true, Some((at, _))) = (tokens.is_empty(), expect_text) {
            return Err(TraceError::new(
                number,
                at - 2,
                "an expectation (=> ...) needs an op before it",
            ));
        }
        if tokens.is_empty() {
            program.comments.push(Comment {
                before_op: program.ops.len(),
                inline: false,
                text: comment.map(str::to_owned),
            });
            continue;
        }
        // `tK OP ...`: the pair `pN by tK`, `pN OP ...` (docs/SEMANTICS.md T21).
        let (by, op, columns) =
            OpLine::new(number, tokens).parse_line(|t| validator.op_threads().owner(t))?;
        if let Some(by) = by {
            validator
                .admit(&by)
                .map_err(|e| TraceError::new(number, columns.of(e.culprit), e.message))?;
            program.ops.push(by);
        }
        validator
            .admit(&op)
            .map_err(|e| TraceError::new(number, columns.of(e.culprit), e.message))?;
        if let Some((at, text)) = expect_text {
            let expect = Expect::parse(text)
                .map_err(|e| TraceError::new(number, at + e.offset, e.message))?;
            expect
                .fits(&op)
                .map_err(|message| TraceError::new(number, at - 2, message))?;
            program.expects.push((program.ops.len(), expect));
        }
        if let Some(text) = comment {
            // The canonical line must fit too, or the printed trace would not read back:
            // normalising can lengthen a line (`fill 10` is `fill 0x0a`, a comment gets its
            // space before the `#`).
            let mut canonical = op.to_string().len() + 2 + text.len();
            if let Some((_, e)) = program
                .expects
                .last()
                .filter(|(i, _)| *i == program.ops.len())
            {
                canonical += 4 + e.to_string().len();
            }
            if canonical > MAX_LINE_BYTES {
                return Err(TraceError::new(
                    number,
                    1,
                    format!(
                        "line is {canonical} bytes once written canonically; at most {MAX_LINE_BYTES} (shorten the comment)"
                    ),
                ));
            }
            program.comments.push(Comment {
                before_op: program.ops.len(),
                inline: true,
                text: Some(text.to_owned()),
            });
        }
        program.ops.push(op);
    }
    Ok(program)
}

/// Parses a trace held in a string.
pub fn parse_str(input: &str) -> Result<Program, TraceError> {
    parse(input.as_bytes())
}

impl FromStr for Program {
    type Err = TraceError;

    fn from_str(s: &str) -> Result<Program, TraceError> {
        parse_str(s)
    }
}

/// The text of one line, without its line break, once it is known to be text the format allows.
fn line_text(number: usize, raw: &[u8]) -> Result<&str, TraceError> {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let invalid_utf8 = std::str::from_utf8(raw).err().map(|e| {
        let at = e.valid_up_to();
        let byte = raw.get(at).copied().unwrap_or_default();
        (
            at,
            format!("invalid UTF-8 (byte 0x{byte:02x}); a trace is UTF-8 text"),
        )
    });
    let nul = raw.iter().position(|&b| b == 0).map(|at| {
        (
            at,
            "NUL byte; a trace is text and never holds NUL".to_owned(),
        )
    });
    let carriage_return = raw.iter().position(|&b| b == b'\r').map(|at| {
        (
            at,
            "carriage return inside a line; lines end in LF or CR LF".to_owned(),
        )
    });
    let too_long = (raw.len() > MAX_LINE_BYTES).then(|| {
        // Point at the character that crosses the limit, not into its middle.
        let mut at = MAX_LINE_BYTES;
        while at > 0 && raw.get(at).is_some_and(|&b| b & 0xc0 == 0x80) {
            at -= 1;
        }
        (at, format!("line is longer than {MAX_LINE_BYTES} bytes"))
    });
    let first_fault = [invalid_utf8, nul, carriage_return, too_long]
        .into_iter()
        .flatten()
        .min_by_key(|&(at, _)| at);
    match first_fault {
        Some((at, message)) => Err(TraceError::new(number, column_at(raw, at), message)),
        None => std::str::from_utf8(raw)
            .map_err(|e| TraceError::new(number, column_at(raw, e.valid_up_to()), "invalid UTF-8")),
    }
}

/// The 1-based character column of byte `at` of a line: one more than the characters that start
/// before it (UTF-8 continuation bytes start none).
fn column_at(raw: &[u8], at: usize) -> usize {
    let before = raw.get(..at).unwrap_or(raw);
    1 + before.iter().filter(|&&b| b & 0xc0 != 0x80).count()
}

fn check_header(number: usize, text: &str) -> Result<(), TraceError> {
    if text == HEADER {
        return Ok(());
    }
    let version = text
        .strip_prefix(HEADER_NAME)
        .and_then(|rest| rest.strip_prefix(' '))
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
    let (column, message) = match version {
        Some(version) => (
            HEADER_NAME.chars().count() + 2,
            format!(
                "unsupported trace version {}; this cowcheck reads version 1",
                clip(version)
            ),
        ),
        None if text.starts_with(HEADER_NAME) => (
            1,
            format!(
                "malformed header {}; the first line must be exactly \"{HEADER}\"",
                quoted(text)
            ),
        ),
        None if text.trim_matches([' ', '\t']).is_empty() => (
            1,
            format!("missing header: the first line must be \"{HEADER}\", not a blank line"),
        ),
        None => (
            1,
            format!(
                "missing header: the first line must be \"{HEADER}\", found {}",
                quoted(text)
            ),
        ),
    };
    Err(TraceError::new(number, column, message))
}

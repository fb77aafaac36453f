//! The text trace format: how a [`Program`] is written down, read back and shown to people.
//!
//! This module owns the parser ([`parse`], [`parse_str`], `Program: FromStr`) and the printer
//! (`Display` for [`Op`] and [`Program`]). It never touches memory or processes. The parser takes
//! arbitrary bytes and never panics: every input is either a [`Program`] that passed the static
//! rules of [`Validator`], or a [`TraceError`] that names the line and column at fault.
//!
//! # Format, version 1
//!
//! ```text
//! cowcheck-trace 1
//! # a comment line
//! p0 map m0 private 4
//! p0 write m0 0..4 fill 0xaa
//! p0 write m0 2[100..200] ramp 0x5b   # an inline comment
//! p0 read m0 0..4
//! p0 read m0 2
//! p0 fork p1
//! p1 exit
//! p0 unmap m0 1..2
//! ```
//!
//! The first line is exactly [`HEADER`]. Every further line is blank, a comment (`#` to the end
//! of the line) or one op, optionally followed by an inline comment. Tokens are separated by
//! spaces or tabs.
//!
//! ```text
//! op      = PROC "map"   MAP KIND PAGES
//!         | PROC "write" MAP SPAN PATTERN
//!         | PROC "read"  MAP SPAN
//!         | PROC "fork"  CHILD
//!         | PROC "exit"
//!         | PROC "unmap" MAP RANGE
//! PROC    = "p" N            N decimal, 0..=255 (p0 is the root process)
//! CHILD   = "p" N
//! MAP     = "m" N
//! KIND    = "private" | "shared" | "private-zero" | "shared-zero"
//! PAGES   = decimal number of pages
//! RANGE   = A ".." B         pages A to B-1 of the mapping
//!         | A                the single page A, the same as A..A+1
//! SPAN    = RANGE
//!         | P "[" A ".." B "]"   bytes A to B-1 of page P
//! PATTERN = "fill" BYTE      every byte is BYTE
//!         | "ramp" BYTE      the byte at mapping offset o is BYTE + o mod 251
//! BYTE    = "0x" HEX | decimal, at most 0xff
//! ```
//!
//! Page numbers and byte offsets are decimal and fit 16 bits. After an op is read, it must pass
//! the static rules of [`Validator`] (handles exist before use, new handles are fresh, ranges
//! lie inside their mapping, the caps hold); a violation is an error at the offending token.
//!
//! An op may end in an inline expectation, `=> EXPECT`, before any comment: what the op must do,
//! checked against both the model and the kernel (see [`crate::program::expect`] for the forms, such as
//! `=> 0xaa`, `=> ramp 0x10`, `=> SIGSEGV maperr`, `=> EINVAL`, `=> ok`). The printer writes it
//! as ` => EXPECT` right after the op; it is kept in [`Program::expects`].
//!
//! The input is UTF-8 text without NUL bytes. Lines end in LF or CR LF, hold at most
//! [`MAX_LINE_BYTES`] bytes, and the last line may lack its line break.
//!
//! # Canonical form
//!
//! The printer writes the canonical form: the header, then one line per op, comment or blank
//! line in order, tokens separated by one space, an inline comment as ` #text` after its op, and
//! `\n` after every line including the last. A single page prints as `A`, other page ranges as
//! `A..B`, byte spans as `P[A..B]`, pattern bytes as two lowercase hex digits (`0x0a`).
//!
//! Comments, with their text verbatim (everything after `#`), and blank lines are kept in
//! [`Program::comments`], so that:
//! - `print(parse(t)) == t` for every canonical trace `t`;
//! - `print(parse(print(parse(t)))) == print(parse(t))` for every trace `t` that parses;
//! - `parse(print(p)) == p` for every program `p` that validates, provided its comments are as
//!   the parser makes them: in line order (a comment or blank line before op `i` has
//!   `before_op == i` and comes before op `i`'s inline comment; those after the last op have
//!   `before_op == ops.len()`), at most one inline comment per op, and texts without line breaks
//!   or NUL that keep every line within [`MAX_LINE_BYTES`]. The printer replaces a CR, LF or NUL
//!   in a comment's text by U+FFFD so that its output always reads back.

use std::fmt;
use std::str::FromStr;

use super::op::{
    Advice, At, BadArg, Comment, Culprit, MapId, MapKind, Op, OpKind, PageRange, Pattern, PlaceHow,
    ProcId, Program, Prot, RemapFlags, Span, Syscall, Validator, Via, caps,
};

/// The first line of every trace: the format's name and version.
pub const HEADER: &str = "cowcheck-trace 1";

/// The header's first token; what follows it is the version.
const HEADER_NAME: &str = "cowcheck-trace";

/// The longest line the parser accepts, in bytes, without its line break.
pub const MAX_LINE_BYTES: usize = 4096;

/// Longest piece of user input quoted back in an error message, in characters.
const MAX_QUOTE_CHARS: usize = 48;

/// Why a trace does not parse, and where: `line` and `column` are 1-based, and `column` counts
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct TraceError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl TraceError {
    fn new(line: usize, column: usize, message: impl Into<String>) -> TraceError {
        TraceError {
            line,
            column,
            message: message.into(),
        }
    }
}

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
        let (op, columns) = OpLine::new(number, tokens).parse()?;
        validator
            .admit(&op)
            .map_err(|e| TraceError::new(number, columns.of(e.culprit), e.message))?;
        if let Some((at, text)) = expect_text {
            let expect = crate::program::expect::Expect::parse(text)
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

/// One token of an op line: its text and the column of its first character.
#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    text: &'a str,
    column: usize,
}

impl Token<'_> {
    /// The column just past the token's last character.
    fn end_column(self) -> usize {
        self.column + self.text.chars().count()
    }
}

fn tokenize(code: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut start = None;
    for (column, (offset, ch)) in (1..).zip(code.char_indices()) {
        let separator = ch == ' ' || ch == '\t';
        match start {
            Some((from, first)) if separator => {
                tokens.push(Token {
                    text: &code[from..offset],
                    column: first,
                });
                start = None;
            }
            None if !separator => start = Some((offset, column)),
            _ => {}
        }
    }
    if let Some((from, first)) = start {
        tokens.push(Token {
            text: &code[from..],
            column: first,
        });
    }
    tokens
}

/// Where each part of a parsed op stands, so that a [`Validator`] complaint points at its token.
#[derive(Clone, Copy, Debug, Default)]
struct Columns {
    proc: usize,
    child: Option<usize>,
    map: Option<usize>,
    span: Option<usize>,
    count: Option<usize>,
}

impl Columns {
    fn of(&self, culprit: Culprit) -> usize {
        let column = match culprit {
            Culprit::Proc => None,
            Culprit::Child => self.child,
            Culprit::Map => self.map,
            Culprit::Span => self.span,
            Culprit::Count => self.count,
        };
        column.unwrap_or(self.proc)
    }
}

/// The tokens of one op line, read left to right.
struct OpLine<'a> {
    line: usize,
    tokens: Vec<Token<'a>>,
    next: usize,
}

impl<'a> OpLine<'a> {
    fn new(line: usize, tokens: Vec<Token<'a>>) -> OpLine<'a> {
        OpLine {
            line,
            tokens,
            next: 0,
        }
    }

    /// Reads the op; the line must hold exactly one.
    fn parse(mut self) -> Result<(Op, Columns), TraceError> {
        let proc_token = self.take("a process handle (like p0)")?;
        let proc = ProcId(self.handle(proc_token, 'p', "process handle", "p0")?);
        let mut columns = Columns {
            proc: proc_token.column,
            ..Columns::default()
        };
        let verbs = OpKind::ALL.map(OpKind::name).join(", ");
        let verb_token = self.take(&format!("a verb (one of {verbs})"))?;
        let verb = OpKind::ALL
            .into_iter()
            .find(|k| k.name() == verb_token.text)
            .ok_or_else(|| {
                self.error(
                    verb_token,
                    format!(
                        "unknown verb {}; expected one of {verbs}",
                        quoted(verb_token.text)
                    ),
                )
            })?;
        let op = match verb {
            OpKind::Map => {
                let map = self.map_handle(&mut columns)?;
                let kind = self.map_kind()?;
                let pages = self.page_count(&mut columns)?;
                match self.tokens.get(self.next).map(|t| t.text) {
                    Some(word @ ("fixed" | "noreplace" | "hint")) => {
                        self.next += 1;
                        let how = match word {
                            "fixed" => PlaceHow::Fixed,
                            "noreplace" => PlaceHow::NoReplace,
                            _ => PlaceHow::Hint,
                        };
                        let at = self.at(&mut columns)?;
                        Op::MapAt {
                            proc,
                            map,
                            kind,
                            pages,
                            how,
                            at,
                        }
                    }
                    _ => Op::Map {
                        proc,
                        map,
                        kind,
                        pages,
                    },
                }
            }
            OpKind::Protect => {
                let map = self.map_handle(&mut columns)?;
                let pages = self.range(&mut columns)?;
                let prot = self.word(
                    "a protection (none, read, read-write, write)",
                    Prot::from_name,
                )?;
                Op::Protect {
                    proc,
                    map,
                    pages,
                    prot,
                }
            }
            OpKind::Advise => {
                let map = self.map_handle(&mut columns)?;
                let pages = self.range(&mut columns)?;
                let names = Advice::ALL.map(Advice::name).join(", ");
                let advice =
                    self.word(&format!("an advice (one of {names})"), Advice::from_name)?;
                Op::Advise {
                    proc,
                    map,
                    pages,
                    advice,
                }
            }
            OpKind::Remap => {
                let map = self.map_handle(&mut columns)?;
                let old = self.range(&mut columns)?;
                let new_pages = self.page_count(&mut columns)?;
                let mut flags = RemapFlags::default();
                loop {
                    let token =
                        self.take("remap flags (maymove, dontunmap, fixed mN+P) and as mN")?;
                    match token.text {
                        "maymove" => flags.maymove = true,
                        "dontunmap" => flags.dontunmap = true,
                        "fixed" => flags.fixed = Some(self.at(&mut columns)?),
                        "as" => break,
                        other => {
                            return Err(self.error(
                                token,
                                format!(
                                    "unknown remap flag {}; expected maymove, dontunmap, fixed mN+P or as mN",
                                    quoted(other)
                                ),
                            ));
                        }
                    }
                }
                let result_token = self.take("the result's mapping handle (like m1)")?;
                columns.map = Some(result_token.column);
                let result = MapId(self.handle(result_token, 'm', "mapping handle", "m1")?);
                Op::Remap {
                    proc,
                    map,
                    old,
                    new_pages,
                    flags,
                    result,
                }
            }
            OpKind::Vmsplice => {
                let map = self.map_handle(&mut columns)?;
                let range = self.range(&mut columns)?;
                if range.end != range.start.wrapping_add(1) {
                    return Err(TraceError::new(
                        self.line,
                        columns.span.unwrap_or(1),
                        "vmsplice takes one page (like 2)",
                    ));
                }
                Op::Vmsplice {
                    proc,
                    map,
                    page: range.start,
                }
            }
            OpKind::PipeRead => Op::PipeRead { proc },
            OpKind::Poke => {
                let via = self.word(
                    "how to write (mem: /proc/self/mem, vm: process_vm_writev)",
                    Via::from_name,
                )?;
                let map = self.map_handle(&mut columns)?;
                let span = self.span(&mut columns)?;
                let pattern = self.pattern()?;
                Op::Poke {
                    proc,
                    map,
                    span,
                    pattern,
                    via,
                }
            }
            OpKind::Invalid => {
                let names = Syscall::ALL.map(Syscall::name).join(", ");
                let call = self.word(&format!("a call (one of {names})"), Syscall::from_name)?;
                let map = self.map_handle(&mut columns)?;
                let bads = BadArg::ALL.map(BadArg::name).join(", ");
                let token_column = self.tokens.get(self.next).map(|t| t.column);
                let bad = self.word(
                    &format!("a bad argument (one of {bads})"),
                    BadArg::from_name,
                )?;
                columns.count = token_column;
                Op::Invalid {
                    proc,
                    map,
                    call,
                    bad,
                }
            }
            OpKind::Write => {
                let map = self.map_handle(&mut columns)?;
                let span = self.span(&mut columns)?;
                let pattern = self.pattern()?;
                Op::Write {
                    proc,
                    map,
                    span,
                    pattern,
                }
            }
            OpKind::Read => {
                let map = self.map_handle(&mut columns)?;
                let span = self.span(&mut columns)?;
                Op::Read { proc, map, span }
            }
            OpKind::Fork => {
                let child_token = self.take("a child process handle (like p1)")?;
                columns.child = Some(child_token.column);
                let child = ProcId(self.handle(child_token, 'p', "process handle", "p1")?);
                Op::Fork { proc, child }
            }
            OpKind::Exit => Op::Exit { proc },
            OpKind::Unmap => {
                let map = self.map_handle(&mut columns)?;
                let range_token = self.take("a page range (like 0..4 or 2)")?;
                columns.span = Some(range_token.column);
                if range_token.text.contains('[') {
                    return Err(self.error(
                        range_token,
                        format!(
                            "unmap takes whole pages (like 0..4 or 2), not the byte span {}",
                            quoted(range_token.text)
                        ),
                    ));
                }
                let pages = parse_range(range_token.text).map_err(|e| {
                    self.syntax_error(range_token, e, "a page range like 0..4 or 2")
                })?;
                Op::Unmap { proc, map, pages }
            }
        };
        if let Some(&extra) = self.tokens.get(self.next) {
            return Err(self.error(extra, format!("trailing token {}", quoted(extra.text))));
        }
        Ok((op, columns))
    }

    /// The next token, or a "truncated op" error saying what `needs` to come next.
    fn take(&mut self, needs: &str) -> Result<Token<'a>, TraceError> {
        match self.tokens.get(self.next) {
            Some(&token) => {
                self.next += 1;
                Ok(token)
            }
            None => {
                let so_far: Vec<&str> = self.tokens.iter().map(|t| t.text).collect();
                let column = self.tokens.last().map_or(1, |t| t.end_column());
                Err(TraceError::new(
                    self.line,
                    column,
                    format!("truncated op: {} needs {needs}", quoted(&so_far.join(" "))),
                ))
            }
        }
    }

    fn error(&self, token: Token<'_>, message: String) -> TraceError {
        TraceError::new(self.line, token.column, message)
    }

    fn syntax_error(&self, token: Token<'_>, error: SyntaxError, expected: &str) -> TraceError {
        let message = match error {
            SyntaxError::Malformed => {
                format!("expected {expected}, found {}", quoted(token.text))
            }
            SyntaxError::TooLarge(message) => message,
        };
        self.error(token, message)
    }

    /// The number of a handle token such as `p3` or `m0`.
    fn handle(
        &self,
        token: Token<'_>,
        prefix: char,
        noun: &str,
        example: &str,
    ) -> Result<u8, TraceError> {
        let number = token
            .text
            .strip_prefix(prefix)
            .ok_or(NumberError::NotNumber)
            .and_then(|digits| parse_number(digits, 10));
        number.map_err(|e| {
            let message = match e {
                NumberError::NotNumber => {
                    format!(
                        "expected a {noun} like {example}, found {}",
                        quoted(token.text)
                    )
                }
                NumberError::TooLarge => format!(
                    "{noun} {} is too large; the number after {prefix} is at most {}",
                    quoted(token.text),
                    u8::MAX
                ),
            };
            self.error(token, message)
        })
    }

    fn map_kind(&mut self) -> Result<MapKind, TraceError> {
        let kinds = MapKind::ALL.map(MapKind::name).join(", ");
        let token = self.take(&format!("a mapping kind (one of {kinds})"))?;
        MapKind::from_name(token.text).ok_or_else(|| {
            let found = quoted(token.text);
            self.error(
                token,
                format!("unknown mapping kind {found}; expected one of {kinds}"),
            )
        })
    }

    fn page_count(&mut self, columns: &mut Columns) -> Result<u16, TraceError> {
        let token = self.take("a page count (like 4)")?;
        columns.count = Some(token.column);
        parse_number(token.text, 10).map_err(|e| {
            let message = match e {
                NumberError::NotNumber => format!(
                    "expected a page count (a decimal number) after the kind, found {}",
                    quoted(token.text)
                ),
                NumberError::TooLarge => format!(
                    "page count {} is too large; a map takes 1 to {} pages",
                    clip(token.text),
                    caps::MAX_MAP_PAGES
                ),
            };
            self.error(token, message)
        })
    }

    /// A keyword from a fixed set.
    fn word<T>(&mut self, needs: &str, from: fn(&str) -> Option<T>) -> Result<T, TraceError> {
        let token = self.take(needs)?;
        from(token.text).ok_or_else(|| {
            self.error(
                token,
                format!("expected {needs}, found {}", quoted(token.text)),
            )
        })
    }

    /// Whole pages `A..B` or `A` (an empty `A..A` reads fine; the validator decides).
    fn range(&mut self, columns: &mut Columns) -> Result<PageRange, TraceError> {
        let token = self.take("a page range (like 0..4 or 2)")?;
        columns.span = Some(token.column);
        parse_range(token.text)
            .map_err(|e| self.syntax_error(token, e, "a page range like 0..4 or 2"))
    }

    /// `mN+P` or `mN`: page P of handle mN's range.
    fn at(&mut self, columns: &mut Columns) -> Result<At, TraceError> {
        let token = self.take("an address like m0+2")?;
        columns.span = Some(token.column);
        let (handle, page) = match token.text.split_once('+') {
            Some((h, p)) => (h, Some(p)),
            None => (token.text, None),
        };
        let map = MapId(self.handle(
            Token {
                text: handle,
                column: token.column,
            },
            'm',
            "mapping handle",
            "m0",
        )?);
        let page = match page {
            Some(p) => {
                field(p, "page").map_err(|e| self.syntax_error(token, e, "an address like m0+2"))?
            }
            None => 0,
        };
        Ok(At { map, page })
    }

    fn map_handle(&mut self, columns: &mut Columns) -> Result<MapId, TraceError> {
        let token = self.take("a mapping handle (like m0)")?;
        columns.map = Some(token.column);
        Ok(MapId(self.handle(token, 'm', "mapping handle", "m0")?))
    }

    fn span(&mut self, columns: &mut Columns) -> Result<Span, TraceError> {
        let token = self.take("a span (like 0..4, 2 or 2[100..200])")?;
        columns.span = Some(token.column);
        parse_span(token.text)
            .map_err(|e| self.syntax_error(token, e, "a span like 0..4, 2 or 2[100..200]"))
    }

    fn pattern(&mut self) -> Result<Pattern, TraceError> {
        let word = self.take("a pattern (fill 0xHH or ramp 0xHH)")?;
        let make: fn(u8) -> Pattern = match word.text {
            "fill" => Pattern::Fill,
            "ramp" => Pattern::Ramp,
            other => {
                return Err(self.error(
                    word,
                    format!(
                        "unknown pattern {}; expected fill 0xHH or ramp 0xHH",
                        quoted(other)
                    ),
                ));
            }
        };
        let needs = format!("a byte value after {} (like 0xaa)", word.text);
        let byte_token = self.take(&needs)?;
        let (digits, radix) = match byte_token
            .text
            .strip_prefix("0x")
            .or_else(|| byte_token.text.strip_prefix("0X"))
        {
            Some(hex) => (hex, 16),
            None => (byte_token.text, 10),
        };
        let byte = parse_number(digits, radix).map_err(|e| {
            let message = match e {
                NumberError::NotNumber => format!(
                    "expected a byte value like 0xaa or 170, found {}",
                    quoted(byte_token.text)
                ),
                NumberError::TooLarge => format!(
                    "byte value {} is too large; a pattern byte is at most 0xff",
                    clip(byte_token.text)
                ),
            };
            self.error(byte_token, message)
        })?;
        Ok(make(byte))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NumberError {
    /// Not digits of the radix (or nothing at all).
    NotNumber,
    /// Digits, but more than the target type holds.
    TooLarge,
}

/// Digits in `radix`, without sign or separators, into whatever integer type the field has.
fn parse_number<T: TryFrom<u32>>(digits: &str, radix: u32) -> Result<T, NumberError> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(NumberError::NotNumber);
    }
    let mut value: u32 = 0;
    for digit in digits.chars().filter_map(|c| c.to_digit(radix)) {
        value = value
            .checked_mul(radix)
            .and_then(|v| v.checked_add(digit))
            .ok_or(NumberError::TooLarge)?;
    }
    T::try_from(value).map_err(|_| NumberError::TooLarge)
}

/// Why a range or span token does not read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SyntaxError {
    /// Not the shape of the token at all.
    Malformed,
    /// The shape is right but a number does not fit; the message says which.
    TooLarge(String),
}

/// A page number or byte offset inside a range or span token.
fn field(digits: &str, what: &str) -> Result<u16, SyntaxError> {
    parse_number(digits, 10).map_err(|e| match e {
        NumberError::NotNumber => SyntaxError::Malformed,
        NumberError::TooLarge => SyntaxError::TooLarge(format!(
            "{what} {} is too large; the largest is {}",
            clip(digits),
            u16::MAX
        )),
    })
}

/// `A..B` or `A`. An empty or reversed range reads fine here; the [`Validator`] rejects it.
fn parse_range(text: &str) -> Result<PageRange, SyntaxError> {
    match text.split_once("..") {
        Some((start, end)) => Ok(PageRange {
            start: field(start, "page")?,
            end: field(end, "page")?,
        }),
        None => {
            let page = field(text, "page")?;
            let end = page.checked_add(1).ok_or_else(|| {
                SyntaxError::TooLarge(format!(
                    "page {page} is too large; a single page is at most {}",
                    u16::MAX - 1
                ))
            })?;
            Ok(PageRange { start: page, end })
        }
    }
}

/// A page range, or `P[A..B]`.
fn parse_span(text: &str) -> Result<Span, SyntaxError> {
    let Some((page, bytes)) = text.split_once('[') else {
        return parse_range(text).map(Span::Pages);
    };
    let (start, end) = bytes
        .strip_suffix(']')
        .and_then(|inner| inner.split_once(".."))
        .ok_or(SyntaxError::Malformed)?;
    Ok(Span::Bytes {
        page: field(page, "page")?,
        start: field(start, "byte offset")?,
        end: field(end, "byte offset")?,
    })
}

/// User input as it appears in a message: quoted, escaped, and clipped if long.
fn quoted(text: &str) -> String {
    format!("{:?}", clip(text))
}

/// At most [`MAX_QUOTE_CHARS`] characters of `text`, with `…` if some were cut.
fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A page range as the trace writes it: `A` for one page, `A..B` otherwise.
struct RangeText(PageRange);

impl fmt::Display for RangeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PageRange { start, end } = self.0;
        if start.checked_add(1) == Some(end) {
            write!(f, "{start}")
        } else {
            write!(f, "{start}..{end}")
        }
    }
}

struct SpanText(Span);

impl fmt::Display for SpanText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Span::Pages(range) => RangeText(range).fmt(f),
            Span::Bytes { page, start, end } => write!(f, "{page}[{start}..{end}]"),
        }
    }
}

struct PatternText(Pattern);

impl fmt::Display for PatternText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Pattern::Fill(byte) => write!(f, "fill 0x{byte:02x}"),
            Pattern::Ramp(byte) => write!(f, "ramp 0x{byte:02x}"),
        }
    }
}

/// One op as a trace line, without the line break.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = self.kind().name();
        match *self {
            Op::Map {
                proc,
                map,
                kind,
                pages,
            } => write!(f, "{proc} {verb} {map} {} {pages}", kind.name()),
            Op::Write {
                proc,
                map,
                span,
                pattern,
            } => write!(
                f,
                "{proc} {verb} {map} {} {}",
                SpanText(span),
                PatternText(pattern)
            ),
            Op::Read { proc, map, span } => write!(f, "{proc} {verb} {map} {}", SpanText(span)),
            Op::Fork { proc, child } => write!(f, "{proc} {verb} {child}"),
            Op::Exit { proc } => write!(f, "{proc} {verb}"),
            Op::Unmap { proc, map, pages } => {
                write!(f, "{proc} {verb} {map} {}", RangeText(pages))
            }
            Op::MapAt {
                proc,
                map,
                kind,
                pages,
                how,
                at,
            } => write!(
                f,
                "{proc} {verb} {map} {} {pages} {} {}",
                kind.name(),
                how.name(),
                AtText(at)
            ),
            Op::Protect {
                proc,
                map,
                pages,
                prot,
            } => write!(
                f,
                "{proc} {verb} {map} {} {}",
                RangeText(pages),
                prot.name()
            ),
            Op::Advise {
                proc,
                map,
                pages,
                advice,
            } => write!(
                f,
                "{proc} {verb} {map} {} {}",
                RangeText(pages),
                advice.name()
            ),
            Op::Remap {
                proc,
                map,
                old,
                new_pages,
                flags,
                result,
            } => {
                // An empty old range (old_size 0) prints as A..A.
                let old_text = if old.start == old.end {
                    format!("{}..{}", old.start, old.end)
                } else {
                    RangeText(old).to_string()
                };
                write!(f, "{proc} {verb} {map} {old_text} {new_pages}")?;
                if flags.maymove {
                    write!(f, " maymove")?;
                }
                if flags.dontunmap {
                    write!(f, " dontunmap")?;
                }
                if let Some(at) = flags.fixed {
                    write!(f, " fixed {}", AtText(at))?;
                }
                write!(f, " as {result}")
            }
            Op::Invalid {
                proc,
                map,
                call,
                bad,
            } => write!(f, "{proc} {verb} {} {map} {}", call.name(), bad.name()),
            Op::Vmsplice { proc, map, page } => write!(f, "{proc} {verb} {map} {page}"),
            Op::PipeRead { proc } => write!(f, "{proc} {verb}"),
            Op::Poke {
                proc,
                map,
                span,
                pattern,
                via,
            } => write!(
                f,
                "{proc} {verb} {} {map} {} {}",
                via.name(),
                SpanText(span),
                PatternText(pattern)
            ),
        }
    }
}

/// `mN+P`, or `mN` for page 0.
struct AtText(At);

impl fmt::Display for AtText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.page {
            0 => write!(f, "{}", self.0.map),
            p => write!(f, "{}+{p}", self.0.map),
        }
    }
}

/// The whole program as a canonical trace: header, ops and comments, `\n` after every line.
impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops = self.ops.len();
        // Lines standing before op i (index ops: after the last op), and op i's inline comments.
        let mut lines_before: Vec<Vec<&Comment>> = vec![Vec::new(); ops + 1];
        let mut inline: Vec<Vec<&Comment>> = vec![Vec::new(); ops];
        for comment in &self.comments {
            let at = comment.before_op.min(ops);
            match inline.get_mut(at) {
                Some(slot) if comment.inline => slot.push(comment),
                _ => lines_before[at].push(comment),
            }
        }
        writeln!(f, "{HEADER}")?;
        for (at, before) in lines_before.iter().enumerate() {
            for comment in before {
                if let Some(text) = &comment.text {
                    write!(f, "#{}", CommentText(clip_to(text, MAX_LINE_BYTES - 1)))?;
                }
                writeln!(f)?;
            }
            if let Some(op) = self.ops.get(at) {
                let mut line = op.to_string();
                if let Some(expect) = self.expect_of(at) {
                    line.push_str(&format!(" => {expect}"));
                }
                for text in inline[at].iter().filter_map(|c| c.text.as_ref()) {
                    // Normalising can lengthen a line (`fill 10` prints as `fill 0x0a`, a
                    // comment gets its space): comments are cut so that every printed line
                    // reads back (MAX_LINE_BYTES), and printing stays idempotent.
                    let room = MAX_LINE_BYTES.saturating_sub(line.len() + 2);
                    line.push_str(&format!(" #{}", CommentText(clip_to(text, room))));
                }
                writeln!(f, "{line}")?;
            }
        }
        Ok(())
    }
}

/// The longest prefix of `text` that fits in `bytes` once printed (line breaks and NULs print
/// as the 3-byte replacement character), cut at a character boundary.
fn clip_to(text: &str, bytes: usize) -> &str {
    let mut used = 0;
    for (i, c) in text.char_indices() {
        let width = if matches!(c, '\n' | '\r' | '\0') {
            char::REPLACEMENT_CHARACTER.len_utf8()
        } else {
            c.len_utf8()
        };
        if used + width > bytes {
            return &text[..i];
        }
        used += width;
    }
    text
}

/// A comment's text, with the characters that would break its line replaced.
struct CommentText<'a>(&'a str);

impl fmt::Display for CommentText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in self.0.split_inclusive(['\n', '\r', '\0']) {
            match part.strip_suffix(['\n', '\r', '\0']) {
                Some(kept) => write!(f, "{kept}{}", char::REPLACEMENT_CHARACTER)?,
                None => f.write_str(part)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                pages: 4
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
                pages: PageRange { start: 1, end: 3 }
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
            },
            Op::Fork {
                proc: ProcId(0),
                child: ProcId(1),
            },
            Op::Unmap {
                proc: ProcId(1),
                map: MapId(0),
                pages: PageRange { start: 0, end: 3 },
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

    #[test]
    fn unknown_verb() {
        let e = err(&with_map("p0 mapp m1 private 1\n"));
        assert_eq!((e.line, e.column), (3, 4));
        assert_eq!(
            e.message,
            "unknown verb \"mapp\"; expected one of map, write, read, fork, exit, unmap, protect, advise, remap, invalid, poke, vmsplice, pipe-read"
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
            &with_map("p0 map m1 private 65\n"),
            3,
            19,
            "a map takes 1 to 64 pages, not 65",
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
        assert_err(&with_map("p0 map m1 shared\n"), 3, 17, "needs a page count");
        assert_err(&with_map("p0 read\n"), 3, 8, "needs a mapping handle");
        assert_err(&with_map("p0 read m0\n"), 3, 11, "needs a span");
        assert_err(&with_map("p0 fork\n"), 3, 8, "needs a child process handle");
        assert_err(&with_map("p0 unmap m0\n"), 3, 12, "needs a page range");
    }

    #[test]
    fn bad_numbers_and_shapes() {
        assert_err(
            &with_map("p0 map m1 private four\n"),
            3,
            19,
            "expected a page count (a decimal number) after the kind, found \"four\"",
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
                1 => (0..rng.below(32)).for_each(|_| {
                    input.extend_from_slice(PIECES[rng.below(PIECES.len())].as_bytes())
                }),
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
}

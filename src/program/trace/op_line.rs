//! One op line, token by token: the verbs and their arguments, read into an [`Op`] with the
//! column of each part so that a [`Validator`](crate::program::Validator) complaint points at its
//! token. Syntax only: whether the op can stand where it is is the validator's to say.

mod alloc;
mod thread_ops;

pub(super) use alloc::ALLOC_VERBS;

use super::error::{TraceError, clip, quoted};
use super::fields::{
    LENGTH_EXAMPLE, NumberError, RANGE_EXAMPLE, SyntaxError, parse_address, parse_extent,
    parse_length, parse_number, parse_offset, parse_range, parse_span,
};
use crate::program::{
    Advice, At, BadArg, Culprit, MapArgs, MapId, MapKind, Offset, Op, OpKind, PageRange, Pattern,
    PlaceHow, ProcId, Prot, RaceKind, RemapFlags, Span, Syscall, ThreadId, Via,
};

/// One token of an op line: its text and the column of its first character.
#[derive(Clone, Copy, Debug)]
pub(super) struct Token<'a> {
    text: &'a str,
    column: usize,
}

impl Token<'_> {
    /// The column just past the token's last character.
    fn end_column(self) -> usize {
        self.column + self.text.chars().count()
    }
}

pub(super) fn tokenize(code: &str) -> Vec<Token<'_>> {
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

/// Where each part of a parsed op stands, so that a validator complaint points at its token.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Columns {
    proc: usize,
    child: Option<usize>,
    map: Option<usize>,
    span: Option<usize>,
    count: Option<usize>,
    args: Option<usize>,
}

impl Columns {
    pub(super) fn of(&self, culprit: Culprit) -> usize {
        let column = match culprit {
            Culprit::Proc => None,
            Culprit::Child => self.child,
            Culprit::Map => self.map,
            Culprit::Span => self.span,
            Culprit::Count => self.count,
            Culprit::Args => self.args,
        };
        column.unwrap_or(self.proc)
    }
}

/// The tokens of one op line, read left to right.
pub(super) struct OpLine<'a> {
    line: usize,
    tokens: Vec<Token<'a>>,
    next: usize,
}

impl<'a> OpLine<'a> {
    pub(super) fn new(line: usize, tokens: Vec<Token<'a>>) -> OpLine<'a> {
        OpLine {
            line,
            tokens,
            next: 0,
        }
    }

    /// Reads the op; the line must hold exactly one.
    pub(super) fn parse(mut self) -> Result<(Op, Columns), TraceError> {
        let proc_token = self.take("a process handle (like p0)")?;
        let proc = ProcId(self.handle(proc_token, 'p', "process handle", "p0")?);
        self.parse_verb(proc, proc_token)
    }

    /// Reads the rest of the op of `proc`, whose handle (or thread's, `thread_ops.rs`) was
    /// `proc_token`.
    fn parse_verb(
        mut self,
        proc: ProcId,
        proc_token: Token<'a>,
    ) -> Result<(Op, Columns), TraceError> {
        let mut columns = Columns {
            proc: proc_token.column,
            ..Columns::default()
        };
        // `end` is a thread's (`tK end`, `thread_ops.rs`), not a process's.
        let verbs = OpKind::ALL
            .into_iter()
            .filter(|k| !k.is_alloc() && *k != OpKind::End)
            .map(OpKind::name)
            .chain(ALLOC_VERBS)
            .collect::<Vec<_>>()
            .join(", ");
        let verb_token = self.take(&format!("a verb (one of {verbs})"))?;
        if ALLOC_VERBS.contains(&verb_token.text) {
            let op = self.alloc_op(proc, verb_token, &mut columns)?;
            return self.finish(op, columns);
        }
        let verb = OpKind::ALL
            .into_iter()
            .filter(|k| !k.is_alloc())
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
                let (pages, tail) = self.length(&mut columns)?;
                let mut place: Option<(PlaceHow, At)> = None;
                let mut args = MapArgs::default();
                let (mut fd, mut offset) = (false, false);
                while let Some(&token) = self.tokens.get(self.next) {
                    let twice = |what: &str| {
                        TraceError::new(
                            self.line,
                            token.column,
                            format!("{what} given twice in one map"),
                        )
                    };
                    if let Some(how) = PlaceHow::from_name(token.text) {
                        if place.is_some() {
                            return Err(twice("a placement"));
                        }
                        self.next += 1;
                        place = Some((how, self.at(&mut columns)?));
                    } else if token.text == "fd" {
                        if fd {
                            return Err(twice("fd"));
                        }
                        self.next += 1;
                        fd = true;
                        args.fd = true;
                        columns.args.get_or_insert(token.column);
                    } else if token.text == "hugetlb" {
                        if args.hugetlb {
                            return Err(twice("hugetlb"));
                        }
                        self.next += 1;
                        args.hugetlb = true;
                        columns.args.get_or_insert(token.column);
                    } else if token.text == "offset" {
                        if offset {
                            return Err(twice("an offset"));
                        }
                        self.next += 1;
                        offset = true;
                        columns.args = Some(token.column);
                        args.offset = self.offset()?;
                    } else {
                        return Err(self.error(
                            token,
                            format!(
                                "unexpected {} after the length; a map takes a placement ({}) and an address, fd, offset N and hugetlb",
                                quoted(token.text),
                                PlaceHow::ALL.map(PlaceHow::name).join(", ")
                            ),
                        ));
                    }
                }
                match place {
                    Some((how, at)) => Op::MapAt {
                        proc,
                        map,
                        kind,
                        pages,
                        tail,
                        args,
                        how,
                        at,
                    },
                    None => Op::Map {
                        proc,
                        map,
                        kind,
                        pages,
                        tail,
                        args,
                    },
                }
            }
            OpKind::Protect => {
                let map = self.map_handle(&mut columns)?;
                let (pages, tail) = self.extent(&mut columns)?;
                let prot = self.word(
                    "a protection (none, read, read-write, write)",
                    Prot::from_name,
                )?;
                Op::Protect {
                    proc,
                    map,
                    pages,
                    tail,
                    prot,
                }
            }
            OpKind::Advise => {
                let map = self.map_handle(&mut columns)?;
                let (pages, tail) = self.extent(&mut columns)?;
                let names = Advice::ALL.map(Advice::name).join(", ");
                let advice =
                    self.word(&format!("an advice (one of {names})"), Advice::from_name)?;
                Op::Advise {
                    proc,
                    map,
                    pages,
                    tail,
                    advice,
                }
            }
            OpKind::Remap => {
                let map = self.map_handle(&mut columns)?;
                let (old, old_tail) = self.extent(&mut columns)?;
                let (new_pages, new_tail) = self.length(&mut columns)?;
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
                    old_tail,
                    new_pages,
                    new_tail,
                    flags,
                    result,
                }
            }
            OpKind::Vmsplice => {
                let map = self.map_handle(&mut columns)?;
                let page = self.one_page(&mut columns, "vmsplice takes one page (like 2)")?;
                Op::Vmsplice { proc, map, page }
            }
            OpKind::PipeRead => Op::PipeRead { proc },
            OpKind::Alloc | OpKind::Free | OpKind::Tune => unreachable!("filtered above"),
            OpKind::Race => {
                let thread = self.thread_handle(&mut columns)?;
                let kind = self.word(
                    "a race kind (write, dontneed, poke, read, protect, unmap, remap, vmsplice, free, pageout, fault)",
                    RaceKind::from_name,
                )?;
                let map = self.map_handle(&mut columns)?;
                let page = self.one_page(&mut columns, "a race takes one page (like 2)")?;
                Op::Race {
                    proc,
                    thread,
                    kind,
                    map,
                    page,
                }
            }
            OpKind::Vfork => {
                // The child's one op (docs/SEMANTICS.md T5): a store, then `_exit`.
                self.word("what the vfork child does: write (a vfork child only stores to memory that exists, then _exits; it maps, unmaps, forks and allocates nothing)", |w| {
                    (w == "write").then_some(())
                })?;
                let map = self.map_handle(&mut columns)?;
                let span = self.span(&mut columns)?;
                let pattern = self.pattern()?;
                Op::Vfork {
                    proc,
                    map,
                    span,
                    pattern,
                }
            }
            OpKind::Stop => Op::Stop {
                proc,
                thread: self.thread_handle(&mut columns)?,
            },
            OpKind::Thread => Op::Thread {
                proc,
                thread: self.thread_handle(&mut columns)?,
            },
            OpKind::By => Op::By {
                proc,
                thread: self.thread_handle(&mut columns)?,
            },
            OpKind::End => {
                return Err(self.error(
                    verb_token,
                    format!("a thread ends by its own line, `tK end` (not `{proc} end`)"),
                ));
            }
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
            // A process in the same address space (docs/SEMANTICS.md T30).
            OpKind::CloneVm => {
                let child_token = self.take("a child process handle (like p1)")?;
                columns.child = Some(child_token.column);
                let child = ProcId(self.handle(child_token, 'p', "process handle", "p1")?);
                Op::CloneVm { proc, child }
            }
            OpKind::Exit => Op::Exit { proc },
            OpKind::Unmap => {
                let map = self.map_handle(&mut columns)?;
                let range_token = self.take(&format!("a range ({RANGE_EXAMPLE})"))?;
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
                let (pages, tail) = parse_extent(range_token.text)
                    .map_err(|e| self.syntax_error(range_token, e, RANGE_EXAMPLE))?;
                Op::Unmap {
                    proc,
                    map,
                    pages,
                    tail,
                }
            }
        };
        self.finish(op, columns)
    }

    /// The op, if nothing follows it on the line.
    fn finish(&self, op: Op, columns: Columns) -> Result<(Op, Columns), TraceError> {
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
            SyntaxError::TooLarge(message) | SyntaxError::Rejected(message) => message,
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

    /// A length: whole pages `N`, bytes `MB`, or both `N+MB` (N pages and M bytes of one more),
    /// as the pages it rounds up to and the bytes of the last one (0: all of it).
    fn length(&mut self, columns: &mut Columns) -> Result<(u16, u16), TraceError> {
        let token = self.take(&format!("a length ({LENGTH_EXAMPLE})"))?;
        columns.count = Some(token.column);
        parse_length(token.text).map_err(|e| {
            let message = match e {
                SyntaxError::Malformed => format!(
                    "expected a length ({LENGTH_EXAMPLE}) after the kind, found {}",
                    quoted(token.text)
                ),
                SyntaxError::TooLarge(m) | SyntaxError::Rejected(m) => m,
            };
            self.error(token, message)
        })
    }

    /// A map's offset: pages `N`, bytes `MB` or both `N+MB`.
    fn offset(&mut self) -> Result<Offset, TraceError> {
        let token = self.take("an offset (like 1, 1B or 1+1B) after offset")?;
        parse_offset(token.text)
            .map_err(|e| self.syntax_error(token, e, "an offset like 1, 1B or 1+1B"))
    }

    /// A range that may end inside a page: `A..B`, `A`, `A+MB` or `A..B+MB`.
    fn extent(&mut self, columns: &mut Columns) -> Result<(PageRange, u16), TraceError> {
        let token = self.take(&format!("a range ({RANGE_EXAMPLE})"))?;
        columns.span = Some(token.column);
        parse_extent(token.text).map_err(|e| self.syntax_error(token, e, RANGE_EXAMPLE))
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

    /// A page range of exactly one page (`2`), else `what` at the range's column.
    fn one_page(&mut self, columns: &mut Columns, what: &str) -> Result<u16, TraceError> {
        let range = self.range(columns)?;
        if range.end != range.start.wrapping_add(1) {
            return Err(TraceError::new(self.line, columns.span.unwrap_or(1), what));
        }
        Ok(range.start)
    }

    /// Whole pages `A..B` or `A` (an empty `A..A` reads fine; the validator decides).
    fn range(&mut self, columns: &mut Columns) -> Result<PageRange, TraceError> {
        let token = self.take("a page range (like 0..4 or 2)")?;
        columns.span = Some(token.column);
        parse_range(token.text)
            .map_err(|e| self.syntax_error(token, e, "a page range like 0..4 or 2"))
    }

    /// `mN+P` or `mN`: page P of handle mN's range; `mN+P+MB` or `mN+MB`: M bytes into it.
    fn at(&mut self, columns: &mut Columns) -> Result<At, TraceError> {
        let token = self.take("an address like m0+2")?;
        columns.span = Some(token.column);
        let (handle, rest) = match token.text.split_once('+') {
            Some((h, rest)) => (h, Some(rest)),
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
        let (page, byte) = match rest {
            Some(rest) => parse_address(rest)
                .map_err(|e| self.syntax_error(token, e, "an address like m0+2 or m0+2+1B"))?,
            None => (0, 0),
        };
        Ok(At { map, page, byte })
    }

    /// A thread handle such as `t0` (its column is the op's `Child` culprit's).
    fn thread_handle(&mut self, columns: &mut Columns) -> Result<ThreadId, TraceError> {
        let token = self.take("a thread handle (like t0)")?;
        columns.child = Some(token.column);
        Ok(ThreadId(self.handle(token, 't', "thread handle", "t0")?))
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

//! The printer: `Display` for [`Op`] (one trace line) and [`Program`] (a whole canonical
//! trace). It writes only the canonical form, and every program it prints reads back.

use std::fmt;

use super::parse::{HEADER, MAX_LINE_BYTES};
use crate::program::{
    AllocCall, At, Comment, MapArgs, Offset, Op, PageRange, Pattern, Program, Span, Tune,
};

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

/// A range that may end inside its last page: `A+MB` or `A..B+MB` (B its last page) when
/// `tail` bytes of the last page are all it covers, else as `RangeText`.
struct ExtentText(PageRange, u16);

impl fmt::Display for ExtentText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ExtentText(PageRange { start, end }, tail) = *self;
        if tail == 0 || end <= start {
            return RangeText(self.0).fmt(f);
        }
        let last = end - 1;
        if last == start {
            write!(f, "{start}+{tail}B")
        } else {
            write!(f, "{start}..{last}+{tail}B")
        }
    }
}

/// A length: `N` whole pages, `MB` within one page, or `N+MB`: N pages and M bytes of one more.
struct LengthText(u16, u16);

impl fmt::Display for LengthText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LengthText(pages, 0) => write!(f, "{pages}"),
            LengthText(0 | 1, tail) => write!(f, "{tail}B"),
            LengthText(pages, tail) => write!(f, "{}+{tail}B", pages - 1),
        }
    }
}

/// A map's `fd` and `offset`, each with its leading space, or nothing.
struct ArgsText(MapArgs);

impl fmt::Display for ArgsText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.fd {
            write!(f, " fd")?;
        }
        match self.0.offset {
            o if o.is_zero() => Ok(()),
            Offset { pages, bytes: 0 } => write!(f, " offset {pages}"),
            Offset { pages: 0, bytes } => write!(f, " offset {bytes}B"),
            Offset { pages, bytes } => write!(f, " offset {pages}+{bytes}B"),
        }?;
        if self.0.hugetlb {
            write!(f, " hugetlb")?;
        }
        Ok(())
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
                tail,
                args,
            } => write!(
                f,
                "{proc} {verb} {map} {} {}{}",
                kind.name(),
                LengthText(pages, tail),
                ArgsText(args)
            ),
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
            Op::Fork { proc, child } | Op::CloneVm { proc, child } => {
                write!(f, "{proc} {verb} {child}")
            }
            Op::Exit { proc } => write!(f, "{proc} {verb}"),
            Op::Unmap {
                proc,
                map,
                pages,
                tail,
            } => {
                write!(f, "{proc} {verb} {map} {}", ExtentText(pages, tail))
            }
            Op::MapAt {
                proc,
                map,
                kind,
                pages,
                tail,
                args,
                how,
                at,
            } => write!(
                f,
                "{proc} {verb} {map} {} {} {} {}{}",
                kind.name(),
                LengthText(pages, tail),
                how.name(),
                AtText(at),
                ArgsText(args)
            ),
            Op::Protect {
                proc,
                map,
                pages,
                tail,
                prot,
            } => write!(
                f,
                "{proc} {verb} {map} {} {}",
                ExtentText(pages, tail),
                prot.name()
            ),
            Op::Advise {
                proc,
                map,
                pages,
                tail,
                advice,
            } => write!(
                f,
                "{proc} {verb} {map} {} {}",
                ExtentText(pages, tail),
                advice.name()
            ),
            Op::Remap {
                proc,
                map,
                old,
                old_tail,
                new_pages,
                new_tail,
                flags,
                result,
            } => {
                write!(
                    f,
                    "{proc} {verb} {map} {} {}",
                    ExtentText(old, old_tail),
                    LengthText(new_pages, new_tail)
                )?;
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
            Op::Alloc {
                proc,
                map,
                call,
                size,
            } => match call {
                AllocCall::Realloc { from } => write!(f, "{proc} realloc {from} {size} as {map}"),
                AllocCall::Memalign { align } | AllocCall::AlignedAlloc { align } => {
                    write!(f, "{proc} {} {map} {align} {size}", call.name())
                }
                _ => write!(f, "{proc} {} {map} {size}", call.name()),
            },
            Op::Free { proc, map } => write!(f, "{proc} free {map}"),
            Op::Tune {
                proc,
                tune: Tune::Mallopt { param, value },
            } => write!(f, "{proc} mallopt {} {value}", param.name()),
            Op::Tune {
                proc,
                tune: Tune::Trim { pad },
            } => write!(f, "{proc} malloc-trim {pad}"),
            Op::Race {
                proc,
                thread,
                kind,
                map,
                page,
            } => write!(f, "{proc} {verb} {thread} {} {map} {page}", kind.name()),
            Op::Stop { proc, thread } => write!(f, "{proc} {verb} {thread}"),
            Op::Thread { proc, thread } | Op::By { proc, thread } => {
                write!(f, "{proc} {verb} {thread}")
            }
            // The process is the thread's owner (`thread_ops.rs`).
            Op::End { thread, .. } => write!(f, "{thread} {verb}"),
            Op::Vfork {
                proc,
                map,
                span,
                pattern,
            } => write!(
                f,
                "{proc} {verb} write {map} {} {}",
                SpanText(span),
                PatternText(pattern)
            ),
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

/// `mN+P`, or `mN` for page 0; `mN+P+MB` (or `mN+MB`) M bytes into the page.
struct AtText(At);

impl fmt::Display for AtText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let At { map, page, byte } = self.0;
        match (page, byte) {
            (0, 0) => write!(f, "{map}"),
            (p, 0) => write!(f, "{map}+{p}"),
            (0, b) => write!(f, "{map}+{b}B"),
            (p, b) => write!(f, "{map}+{p}+{b}B"),
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
            // `pN by tK` and the op after it, `pN OP ...`, are one line, `tK OP ...`
            // (docs/SEMANTICS.md T21), unless something stands between them.
            if by_merges(self, at, &lines_before, &inline) {
                continue;
            }
            if let Some(op) = self.ops.get(at) {
                let mut line = match at.checked_sub(1).map(|b| (b, self.ops[b])) {
                    Some((b, Op::By { thread, .. }))
                        if by_merges(self, b, &lines_before, &inline) =>
                    {
                        let text = op.to_string();
                        let rest = text.split_once(' ').map_or("", |(_, rest)| rest);
                        format!("{thread} {rest}")
                    }
                    _ => op.to_string(),
                };
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

/// Whether op `at` is a `by` printed on one line with the op after it.
fn by_merges(
    p: &Program,
    at: usize,
    lines_before: &[Vec<&Comment>],
    inline: &[Vec<&Comment>],
) -> bool {
    match (p.ops.get(at), p.ops.get(at + 1)) {
        (Some(Op::By { proc, .. }), Some(next)) => {
            next.proc() == *proc
                && crate::program::runs_on_thread(next.kind()).is_none()
                && lines_before[at + 1].is_empty()
                && inline[at].is_empty()
                && p.expect_of(at).is_none()
        }
        _ => false,
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

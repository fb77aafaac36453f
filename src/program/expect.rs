//! Inline expectations: what an op must do, written after `=>` at the end of its trace line.
//!
//! ```text
//! p0 read m0 0 => 0xaa                      every byte read is 0xaa
//! p0 read m0 0..2 => ramp 0x10              the bytes a `ramp 0x10` write stores there
//! p0 read m0 0[0..4] => 0x01 0x00 0x00 0x00 exactly these bytes (a byte span of that length)
//! p1 write m0 3 fill 0x01 => SIGSEGV maperr the process dies by SIGSEGV with SEGV_MAPERR
//! p1 read m0 0 => SIGSEGV                   ... with any si_code (accerr, maperr)
//! p1 read m0 9 => SIGBUS adrerr             SIGBUS, BUS_ADRERR
//! p0 map m0 shared 1 => ok                  the op completed (a map returned an address)
//! p0 unmap m0 0 => EINVAL                   the call returned -1 with this errno
//! p2 read m0 0 => skipped                   the op did not run: its process is not alive
//! ```
//!
//! An expectation is a claim about the semantics, checked on both sides: the model must predict
//! it and the kernel must show it ([`Expect::check`] takes either side's [`Outcome`]). This module
//! is pure data and pure checks: it never touches memory or processes.

use std::fmt;

use crate::program::outcome::{Outcome, digest};
use crate::program::tables::{
    BUS_ADRERR, SEGV_ACCERR, SEGV_MAPERR, SIGBUS, SIGSEGV, code_from_trace_name, code_trace_name,
    errno_from_name, errno_name, signal_name,
};
use crate::program::{Op, Pattern, Span};

/// What one op must do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    /// The op completed: a map returned an address, a read read (anything), any other op
    /// returned success.
    Ok,
    /// The op did not run: its process had exited or died, or its mapping was never made.
    Skipped,
    /// A read: every byte is this value.
    Fill(u8),
    /// A read: the byte at mapping offset `o` is `base + o mod 251`, what `ramp base` stores.
    Ramp(u8),
    /// A read of a byte span: exactly these bytes (two or more; one byte is a `Fill`).
    Bytes(Vec<u8>),
    /// The process died in the op by `signal`, with `si_code == code` if given.
    Signal { signal: i32, code: Option<i32> },
    /// The call returned -1 with this errno.
    Errno(i32),
}

/// Why an expectation does not read: `offset` is the character offset of the culprit inside
/// the text after `=>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectError {
    pub offset: usize,
    pub message: String,
}

/// `0xaa` or `170`, at most 0xff.
fn parse_byte(text: &str) -> Option<u8> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.len() <= 2 => u8::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None if !text.is_empty() && text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse().ok()
        }
        None => None,
    }
}

/// Words of the text with their character offsets.
fn words(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start: Option<(usize, usize)> = None;
    for (chars, (byte, ch)) in text.char_indices().enumerate() {
        let sep = ch == ' ' || ch == '\t';
        match start {
            Some((from, col)) if sep => {
                out.push((col, &text[from..byte]));
                start = None;
            }
            None if !sep => start = Some((byte, chars)),
            _ => {}
        }
    }
    if let Some((from, col)) = start {
        out.push((col, &text[from..]));
    }
    out
}

impl Expect {
    /// Reads the text after `=>`.
    pub fn parse(text: &str) -> Result<Expect, ExpectError> {
        let err = |offset: usize, message: String| ExpectError { offset, message };
        let w = words(text);
        let Some(&(first_at, first)) = w.first() else {
            return Err(err(
                0,
                "missing expectation after \"=>\"; expected a byte (0xaa), ramp 0xHH, bytes, ok, skipped, SIGSEGV, SIGBUS or an errno (EINVAL)".into(),
            ));
        };
        let trailing = |k: usize| -> Result<(), ExpectError> {
            match w.get(k) {
                Some(&(at, t)) => Err(err(at, format!("trailing token {t:?} in the expectation"))),
                None => Ok(()),
            }
        };
        let expect = match first {
            "ok" => {
                trailing(1)?;
                Expect::Ok
            }
            "skipped" => {
                trailing(1)?;
                Expect::Skipped
            }
            "ramp" => {
                let &(at, b) = w.get(1).ok_or_else(|| {
                    err(
                        first_at + 4,
                        "ramp needs a byte value (like ramp 0x10)".into(),
                    )
                })?;
                let b = parse_byte(b).ok_or_else(|| {
                    err(at, format!("expected a byte value like 0x10, found {b:?}"))
                })?;
                trailing(2)?;
                Expect::Ramp(b)
            }
            "SIGSEGV" | "SIGBUS" => {
                let signal = if first == "SIGSEGV" { SIGSEGV } else { SIGBUS };
                let code = match w.get(1) {
                    None => None,
                    Some(&(at, c)) => {
                        let names: Vec<&str> = [SEGV_MAPERR, SEGV_ACCERR, BUS_ADRERR]
                            .into_iter()
                            .filter_map(|code| code_trace_name(signal, code))
                            .collect();
                        Some(code_from_trace_name(signal, c).ok_or_else(|| {
                            err(
                                at,
                                format!(
                                    "unknown si_code {c:?} for {first}; expected {}",
                                    names.join(" or ")
                                ),
                            )
                        })?)
                    }
                };
                trailing(if code.is_some() { 2 } else { 1 })?;
                Expect::Signal { signal, code }
            }
            "errno" => {
                let &(at, n) = w.get(1).ok_or_else(|| {
                    err(first_at + 5, "errno needs a number (like errno 22)".into())
                })?;
                let n: i32 = n
                    .parse()
                    .ok()
                    .filter(|n| (1..4096).contains(n))
                    .ok_or_else(|| {
                        err(
                            at,
                            format!("expected an errno number from 1 to 4095, found {n:?}"),
                        )
                    })?;
                trailing(2)?;
                Expect::Errno(n)
            }
            name if name.starts_with('E')
                && name.len() > 1
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) =>
            {
                let e = errno_from_name(name).ok_or_else(|| {
                    err(
                        first_at,
                        format!(
                            "unknown errno {name:?}; known: {}",
                            crate::program::tables::ERRNOS
                                .iter()
                                .map(|(n, _)| *n)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                trailing(1)?;
                Expect::Errno(e)
            }
            _ => {
                let mut bytes = Vec::with_capacity(w.len());
                for &(at, t) in &w {
                    bytes.push(parse_byte(t).ok_or_else(|| {
                        err(
                            at,
                            format!(
                                "unknown expectation {t:?}; expected a byte (0xaa), ramp 0xHH, bytes, ok, skipped, SIGSEGV, SIGBUS or an errno (EINVAL)"
                            ),
                        )
                    })?);
                }
                match bytes.as_slice() {
                    [b] => Expect::Fill(*b),
                    _ => Expect::Bytes(bytes),
                }
            }
        };
        Ok(expect)
    }

    /// Whether the expectation can apply to `op` at all (a content expectation needs a read; a
    /// byte list needs a byte span of its length). The message says why not.
    pub fn fits(&self, op: &Op) -> Result<(), String> {
        let span = match op {
            Op::Read { span, .. } => Some(*span),
            // A pipe read takes one whole page out of the pipe.
            Op::PipeRead { .. } => Some(crate::program::Span::Pages(crate::program::PageRange {
                start: 0,
                end: 1,
            })),
            _ => None,
        };
        match (self, span) {
            (Expect::Fill(_) | Expect::Ramp(_) | Expect::Bytes(_), None) => Err(format!(
                "a content expectation ({self}) needs a read op, not {}",
                op.kind().name()
            )),
            (Expect::Bytes(b), Some(Span::Bytes { start, end, .. })) if b.len() != (end - start) as usize => Err(format!(
                "{} bytes expected but the span holds {}",
                b.len(),
                end - start
            )),
            (Expect::Bytes(_), Some(Span::Pages(_))) => Err(
                "a list of bytes needs a byte span like 0[0..4]; for whole pages write one byte (every byte) or ramp 0xHH".into(),
            ),
            _ => Ok(()),
        }
    }

    /// The bytes a content expectation claims for page `page` of the read's span (bytes
    /// `range` of that page), or `None` for other expectations.
    pub fn expected_bytes(
        &self,
        page: u16,
        range: std::ops::Range<usize>,
        page_size: usize,
    ) -> Option<Vec<u8>> {
        let origin = page as usize * page_size;
        Some(match self {
            Expect::Fill(b) => vec![*b; range.len()],
            Expect::Ramp(b) => range
                .map(|i| Pattern::Ramp(*b).byte_at(origin + i))
                .collect(),
            Expect::Bytes(v) => v.clone(),
            _ => return None,
        })
    }

    /// The digests a read must report under a content expectation, one per page.
    pub fn expected_digests(&self, op: &Op, page_size: usize) -> Option<Vec<u64>> {
        let span = match op {
            Op::Read { span, .. } => *span,
            // One whole page; a ramp counts offsets from the start of that page.
            Op::PipeRead { .. } => {
                crate::program::Span::Pages(crate::program::PageRange { start: 0, end: 1 })
            }
            _ => return None,
        };
        span.page_range()
            .pages()
            .map(|page| {
                self.expected_bytes(page, span.bytes_in_page(page_size), page_size)
                    .map(|b| digest(&b))
            })
            .collect()
    }

    /// Checks one side's outcome of `op` (the model's prediction or the kernel's observation).
    /// The error says what was expected and what happened instead.
    pub fn check(&self, op: &Op, outcome: &Outcome, page_size: usize) -> Result<(), String> {
        let holds = match (self, outcome) {
            (
                Expect::Ok,
                Outcome::Mapped { .. }
                | Outcome::Done
                | Outcome::Read { .. }
                | Outcome::Allocated { .. },
            ) => true,
            (Expect::Skipped, Outcome::Skipped) => true,
            (Expect::Fill(_) | Expect::Ramp(_) | Expect::Bytes(_), Outcome::Read { digests }) => {
                self.expected_digests(op, page_size).as_ref() == Some(digests)
            }
            (Expect::Signal { signal, code }, Outcome::Killed { death, .. }) => {
                death.signal == *signal && code.is_none_or(|c| c == death.code)
            }
            (Expect::Errno(e), Outcome::Failed { errno }) => e == errno,
            _ => false,
        };
        if holds {
            Ok(())
        } else {
            Err(format!(
                "expected {}, got {}",
                self.describe(),
                crate::program::outcome::describe_outcome(outcome)
            ))
        }
    }

    /// The expectation in words, for reports.
    pub fn describe(&self) -> String {
        match self {
            Expect::Ok => "success".into(),
            Expect::Skipped => "skipped (process not alive)".into(),
            Expect::Fill(b) => format!("every byte 0x{b:02x}"),
            Expect::Ramp(b) => format!("the bytes of ramp 0x{b:02x}"),
            Expect::Bytes(v) => format!(
                "bytes {}",
                v.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Expect::Signal { .. } => format!("death by {self}"),
            Expect::Errno(e) => format!(
                "failure with {} ({})",
                errno_name(*e).unwrap_or("errno"),
                nix::errno::Errno::from_raw(*e).desc()
            ),
        }
    }
}

/// The canonical text, as it follows `=> ` in a trace.
impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Ok => f.write_str("ok"),
            Expect::Skipped => f.write_str("skipped"),
            Expect::Fill(b) => write!(f, "0x{b:02x}"),
            Expect::Ramp(b) => write!(f, "ramp 0x{b:02x}"),
            Expect::Bytes(v) => {
                for (i, b) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "0x{b:02x}")?;
                }
                Ok(())
            }
            Expect::Signal { signal, code } => {
                match signal_name(*signal) {
                    Some(name) => f.write_str(name)?,
                    None => write!(f, "signal {signal}")?,
                }
                match code.map(|c| (c, code_trace_name(*signal, c))) {
                    Some((_, Some(name))) => write!(f, " {name}"),
                    Some((c, None)) => write!(f, " code {c}"),
                    None => Ok(()),
                }
            }
            Expect::Errno(e) => match errno_name(*e) {
                Some(name) => f.write_str(name),
                None => write!(f, "errno {e}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::outcome::Death;
    use crate::program::{MapId, PageRange, ProcId};

    fn read(span: Span) -> Op {
        Op::Read {
            proc: ProcId(0),
            map: MapId(0),
            span,
        }
    }

    #[test]
    fn every_form_round_trips() {
        for text in [
            "ok",
            "skipped",
            "0xaa",
            "ramp 0x10",
            "0x01 0x00 0x00 0x00",
            "SIGSEGV",
            "SIGSEGV maperr",
            "SIGSEGV accerr",
            "SIGBUS",
            "SIGBUS adrerr",
            "EINVAL",
            "ENOMEM",
            "errno 200",
        ] {
            let e = Expect::parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(e.to_string(), text);
        }
        assert_eq!(Expect::parse("  170 "), Ok(Expect::Fill(0xaa)));
    }

    #[test]
    fn errors_point_at_the_culprit() {
        let e = Expect::parse("SIGSEGV bogus").expect_err("bad code");
        assert_eq!(e.offset, 8);
        assert!(e.message.contains("maperr or accerr"), "{}", e.message);
        assert_eq!(Expect::parse("").expect_err("empty").offset, 0);
        assert_eq!(Expect::parse("ok now").expect_err("trailing").offset, 3);
        assert!(
            Expect::parse("EWHAT")
                .expect_err("errno")
                .message
                .contains("unknown errno")
        );
        assert!(Expect::parse("0x100").is_err());
        assert!(Expect::parse("ramp").is_err());
    }

    #[test]
    fn content_needs_a_read_and_bytes_need_a_matching_span() {
        let exit = Op::Exit { proc: ProcId(0) };
        assert!(Expect::Fill(0).fits(&exit).is_err());
        assert!(Expect::Ok.fits(&exit).is_ok());
        let span = Span::Bytes {
            page: 0,
            start: 0,
            end: 4,
        };
        assert!(Expect::Bytes(vec![1, 2, 3, 4]).fits(&read(span)).is_ok());
        assert!(Expect::Bytes(vec![1, 2, 3]).fits(&read(span)).is_err());
        assert!(
            Expect::Bytes(vec![1, 2])
                .fits(&read(Span::Pages(PageRange::new(0, 1))))
                .is_err()
        );
    }

    #[test]
    fn checks_accept_the_right_outcome_and_reject_others() {
        let ps = 4096;
        let op = read(Span::Pages(PageRange::new(1, 3)));
        let page = |b: u8| digest(&vec![b; ps]);
        let aa = Outcome::Read {
            digests: vec![page(0xaa), page(0xaa)],
        };
        assert!(Expect::Fill(0xaa).check(&op, &aa, ps).is_ok());
        assert!(Expect::Ok.check(&op, &aa, ps).is_ok());
        // Counter-checks: a wrong byte, one page off, or a death are all caught.
        assert!(Expect::Fill(0xab).check(&op, &aa, ps).is_err());
        let half = Outcome::Read {
            digests: vec![page(0xaa), page(0)],
        };
        assert!(Expect::Fill(0xaa).check(&op, &half, ps).is_err());
        let death = Outcome::Killed {
            death: Death {
                signal: SIGSEGV,
                code: SEGV_MAPERR,
                page: 0,
            },
            digests: vec![],
        };
        assert!(Expect::Fill(0xaa).check(&op, &death, ps).is_err());
        assert!(
            Expect::parse("SIGSEGV")
                .unwrap()
                .check(&op, &death, ps)
                .is_ok()
        );
        assert!(
            Expect::parse("SIGSEGV maperr")
                .unwrap()
                .check(&op, &death, ps)
                .is_ok()
        );
        assert!(
            Expect::parse("SIGSEGV accerr")
                .unwrap()
                .check(&op, &death, ps)
                .is_err()
        );
        assert!(
            Expect::parse("SIGBUS")
                .unwrap()
                .check(&op, &death, ps)
                .is_err()
        );
        assert!(
            Expect::Errno(libc::EINVAL)
                .check(
                    &op,
                    &Outcome::Failed {
                        errno: libc::EINVAL
                    },
                    ps
                )
                .is_ok()
        );
        assert!(
            Expect::Errno(libc::EINVAL)
                .check(
                    &op,
                    &Outcome::Failed {
                        errno: libc::ENOMEM
                    },
                    ps
                )
                .is_err()
        );
        assert!(Expect::Skipped.check(&op, &Outcome::Done, ps).is_err());
    }

    #[test]
    fn ramp_counts_from_the_start_of_the_mapping() {
        let ps = 4096;
        let op = read(Span::Bytes {
            page: 1,
            start: 0,
            end: 2,
        });
        let want: Vec<u8> = (0..2).map(|i| Pattern::Ramp(7).byte_at(ps + i)).collect();
        let o = Outcome::Read {
            digests: vec![digest(&want)],
        };
        assert!(Expect::Ramp(7).check(&op, &o, ps).is_ok());
        assert!(Expect::Bytes(want).check(&op, &o, ps).is_ok());
        let at_zero: Vec<u8> = (0..2).map(|i| Pattern::Ramp(7).byte_at(i)).collect();
        assert!(Expect::Bytes(at_zero).check(&op, &o, ps).is_err());
    }
}

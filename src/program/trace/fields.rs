//! The fields inside an op line's tokens: numbers, page ranges, byte spans, lengths that may
//! end inside a page, offsets and the page-and-byte part of an address, each read from its
//! token's text. Shapes and number sizes only: whether a value can stand is the validator's to
//! say.

use super::error::clip;
use crate::program::{Offset, PageRange, Span, caps};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NumberError {
    /// Not digits of the radix (or nothing at all).
    NotNumber,
    /// Digits, but more than the target type holds.
    TooLarge,
}

/// Digits in `radix`, without sign or separators, into whatever integer type the field has.
pub(super) fn parse_number<T: TryFrom<u32>>(digits: &str, radix: u32) -> Result<T, NumberError> {
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
pub(super) enum SyntaxError {
    /// Not the shape of the token at all.
    Malformed,
    /// The shape is right but a number does not fit; the message says which.
    TooLarge(String),
    /// The shape is right but the value is not allowed; the message says why.
    Rejected(String),
}

/// How the trace writes a length and a range that may end inside a page, for messages.
pub(super) const LENGTH_EXAMPLE: &str = "pages like 4, bytes like 4B, or both like 1+4B";
pub(super) const RANGE_EXAMPLE: &str =
    "a page range like 0..4 or 2, or with bytes like 0+4B or 0..1+4B";

/// `M` of `MB`: a byte count of a length or an address, at least 1.
fn byte_field(digits: &str) -> Result<u16, SyntaxError> {
    let bytes = field(digits, "byte count")?;
    if bytes == 0 {
        return Err(SyntaxError::Rejected(
            "a byte count is at least 1B; write whole pages without B".into(),
        ));
    }
    Ok(bytes)
}

/// One more page after `pages`, for a length or range whose bytes reach into it.
fn and_one(pages: u16) -> Result<u16, SyntaxError> {
    pages.checked_add(1).ok_or_else(|| {
        SyntaxError::TooLarge(format!(
            "page {pages} is too large here; with bytes after it, at most {}",
            u16::MAX - 1
        ))
    })
}

/// `N`, `MB` or `N+MB`, as (pages rounded up, bytes of the last page or 0).
pub(super) fn parse_length(text: &str) -> Result<(u16, u16), SyntaxError> {
    let Some(bytes) = text.strip_suffix('B') else {
        return parse_number(text, 10).map(|n| (n, 0)).map_err(|e| match e {
            NumberError::NotNumber => SyntaxError::Malformed,
            NumberError::TooLarge => SyntaxError::TooLarge(format!(
                "page count {} is too large; a map takes 1 to {} pages",
                clip(text),
                caps::MAX_MAP_PAGES
            )),
        });
    };
    match bytes.split_once('+') {
        Some((pages, bytes)) => Ok((and_one(field(pages, "page count")?)?, byte_field(bytes)?)),
        None => Ok((1, byte_field(bytes)?)),
    }
}

/// `N`, `MB` or `N+MB`, as an offset (not rounded).
pub(super) fn parse_offset(text: &str) -> Result<Offset, SyntaxError> {
    let Some(bytes) = text.strip_suffix('B') else {
        return Ok(Offset {
            pages: field(text, "page count")?,
            bytes: 0,
        });
    };
    match bytes.split_once('+') {
        Some((pages, bytes)) => Ok(Offset {
            pages: field(pages, "page count")?,
            bytes: byte_field(bytes)?,
        }),
        None => Ok(Offset {
            pages: 0,
            bytes: byte_field(bytes)?,
        }),
    }
}

/// What follows `mN+` in an address: `P`, `P+MB` or `MB`, as (page, byte).
pub(super) fn parse_address(text: &str) -> Result<(u16, u16), SyntaxError> {
    let Some(bytes) = text.strip_suffix('B') else {
        return Ok((field(text, "page")?, 0));
    };
    match bytes.split_once('+') {
        Some((page, bytes)) => Ok((field(page, "page")?, byte_field(bytes)?)),
        None => Ok((0, byte_field(bytes)?)),
    }
}

/// A page range, or one that ends inside a page: `A+MB` (M bytes from page A) or `A..B+MB`
/// (pages A to B-1 and M bytes of page B), as (the pages it rounds up to, M or 0).
pub(super) fn parse_extent(text: &str) -> Result<(PageRange, u16), SyntaxError> {
    let Some(inner) = text.strip_suffix('B') else {
        return parse_range(text).map(|r| (r, 0));
    };
    let (start, end) = match inner.split_once("..") {
        Some((start, end)) => (field(start, "page")?, end),
        None => {
            let (start, _) = inner.split_once('+').ok_or(SyntaxError::Malformed)?;
            (field(start, "page")?, inner)
        }
    };
    let (last, bytes) = end.split_once('+').ok_or(SyntaxError::Malformed)?;
    let end = and_one(field(last, "page")?)?;
    Ok((PageRange { start, end }, byte_field(bytes)?))
}

/// A page number or byte offset inside a range or span token.
pub(super) fn field(digits: &str, what: &str) -> Result<u16, SyntaxError> {
    parse_number(digits, 10).map_err(|e| match e {
        NumberError::NotNumber => SyntaxError::Malformed,
        NumberError::TooLarge => SyntaxError::TooLarge(format!(
            "{what} {} is too large; the largest is {}",
            clip(digits),
            u16::MAX
        )),
    })
}

/// `A..B` or `A`. An empty or reversed range reads fine here; the validator rejects it.
pub(super) fn parse_range(text: &str) -> Result<PageRange, SyntaxError> {
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
pub(super) fn parse_span(text: &str) -> Result<Span, SyntaxError> {
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

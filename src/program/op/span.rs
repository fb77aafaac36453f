//! What an op touches inside a mapping (page ranges, byte spans) and the bytes a write stores
//! (patterns). Counted from the mapping's first page, never as addresses.

/// Pages `[start, end)` of a mapping, counted from the mapping's first page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageRange {
    pub start: u16,
    pub end: u16,
}

impl PageRange {
    pub fn new(start: u16, end: u16) -> PageRange {
        debug_assert!(start < end);
        PageRange { start, end }
    }
    pub fn len(self) -> u16 {
        self.end - self.start
    }
    pub fn is_empty(self) -> bool {
        self.end <= self.start
    }
    pub fn pages(self) -> std::ops::Range<u16> {
        self.start..self.end
    }
}

/// What a `write` or `read` touches: whole pages, or a byte range inside one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Span {
    Pages(PageRange),
    /// Bytes `[start, end)` of page `page`; `end <= caps::MAX_BYTE_OFFSET`.
    Bytes {
        page: u16,
        start: u16,
        end: u16,
    },
}

impl Span {
    /// The pages the span touches, in the order the executor touches them (ascending).
    pub fn page_range(self) -> PageRange {
        match self {
            Span::Pages(r) => r,
            Span::Bytes { page, .. } => PageRange::new(page, page + 1),
        }
    }
    /// Byte range touched inside page `page` (which must be in `page_range()`), for a page size.
    pub fn bytes_in_page(self, page_size: usize) -> std::ops::Range<usize> {
        match self {
            Span::Pages(_) => 0..page_size,
            Span::Bytes { start, end, .. } => start as usize..end as usize,
        }
    }
}

/// The bytes a `write` stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Every byte is the value.
    Fill(u8),
    /// The byte at offset `o` from the start of the mapping is `base + o mod 251`: neighbouring
    /// pages differ, so a page that lands at the wrong offset is seen.
    Ramp(u8),
}

impl Pattern {
    /// The byte stored at mapping byte offset `offset`.
    #[inline]
    pub fn byte_at(self, offset: usize) -> u8 {
        match self {
            Pattern::Fill(b) => b,
            Pattern::Ramp(b) => b.wrapping_add((offset % 251) as u8),
        }
    }
}

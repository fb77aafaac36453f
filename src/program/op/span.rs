//! What an op touches inside a mapping (page ranges, byte spans), lengths that end inside a
//! page (tails) and the bytes a write stores (patterns). Counted from the mapping's first page,
//! never as addresses.

use super::caps;

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

/// The length in bytes of `pages` pages of `page_size` bytes whose last page is cut after
/// `tail` bytes (0: the whole page). A tail is at most [`caps::MAX_BYTE_OFFSET`] bytes, the
/// smallest page size Linux has, so that a length rounds up to `pages` whole pages on every page
/// size, as mmap, munmap, mprotect, madvise and mremap round it (docs/SEMANTICS.md A9).
pub fn tail_len(pages: u16, tail: u16, page_size: usize) -> usize {
    debug_assert!(tail <= caps::MAX_BYTE_OFFSET);
    match (pages, tail) {
        (0, _) | (_, 0) => pages as usize * page_size,
        _ => (pages as usize - 1) * page_size + tail as usize,
    }
}

/// An offset in bytes: `pages` whole pages and then `bytes` more (less than
/// [`caps::MAX_BYTE_OFFSET`], so that an offset with bytes is unaligned on every page size).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Offset {
    pub pages: u16,
    pub bytes: u16,
}

impl Offset {
    pub fn is_zero(self) -> bool {
        self.pages == 0 && self.bytes == 0
    }
    /// Whether the offset is a whole number of pages.
    pub fn is_aligned(self) -> bool {
        self.bytes == 0
    }
    /// The offset in bytes, for a page size.
    pub fn in_bytes(self, page_size: usize) -> u64 {
        self.pages as u64 * page_size as u64 + self.bytes as u64
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

    /// Fills `bytes` with what is stored at mapping byte offsets `offset..`: `bytes[i]` is
    /// `byte_at(offset + i)`, without a division a byte.
    pub fn fill(self, bytes: &mut [u8], offset: usize) {
        match self {
            Pattern::Fill(b) => bytes.fill(b),
            Pattern::Ramp(b) => {
                let mut r = (offset % 251) as u8;
                for x in bytes {
                    *x = b.wrapping_add(r);
                    r = if r == 250 { 0 } else { r + 1 };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    /// `fill` stores what `byte_at` says, across the ramp's wrap at 251 and from any offset.
    #[test]
    fn fill_is_byte_at() {
        for pattern in [Pattern::Fill(0x5a), Pattern::Ramp(0), Pattern::Ramp(200)] {
            for offset in [0usize, 1, 250, 251, 4096, 12345] {
                let mut bytes = vec![0u8; 1000];
                pattern.fill(&mut bytes, offset);
                for (i, &b) in bytes.iter().enumerate() {
                    assert_eq!(
                        b,
                        pattern.byte_at(offset + i),
                        "{pattern:?} at {offset}+{i}"
                    );
                }
            }
        }
    }
}

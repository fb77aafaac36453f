//! The text trace format: how a [`Program`] is written down, read back and shown to people.
//!
//! This module owns the parser ([`parse()`], [`parse_str`], `Program: FromStr`) and the printer
//! (`Display` for [`Op`] and [`Program`]). It never touches memory or processes. The parser takes
//! arbitrary bytes and never panics: every input is either a [`Program`] that passed the static
//! rules of [`Validator`], or a [`TraceError`] that names the line and column at fault.
//!
//! - `parse`: the reader, line by line (header, text rules, comments, expectations).
//! - `op_line`: one op line, token by token, into an [`Op`].
//! - `fields`: what a token holds: numbers, ranges, spans, lengths, offsets, addresses.
//! - `error`: [`TraceError`] and how input is quoted back in messages.
//! - `print`: the printer, the canonical form.
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
//! p0 read m0 3                        => 0xaa
//! p0 fork p1
//! p1 protect m0 0..2 read
//! p1 poke mem m0 0 fill 0x01
//! p1 exit
//! p0 unmap m0 1..2
//! ```
//!
//! The first line is exactly [`HEADER`]. Every further line is blank, a comment (`#` to the end
//! of the line) or one op, optionally followed by an inline expectation and an inline comment.
//! Tokens are separated by spaces or tabs. The grammar, for every verb of
//! [`OpKind::ALL`](crate::program::OpKind::ALL) (README.md's table says the same for users):
//!
//! ```text
//! line    = [ op [ "=>" EXPECT ] ] [ "#" TEXT ]
//! op      = PROC "map"       MAP KIND LENGTH { PLACE AT | "fd" | "offset" OFFSET }
//!         | PROC "write"     MAP SPAN PATTERN
//!         | PROC "read"      MAP SPAN
//!         | PROC "fork"      CHILD
//!         | PROC "exit"
//!         | PROC "unmap"     MAP EXTENT
//!         | PROC "protect"   MAP EXTENT PROT
//!         | PROC "advise"    MAP EXTENT ADVICE
//!         | PROC "remap"     MAP EXTENT LENGTH { REMAPFLAG } "as" MAP
//!         | PROC "invalid"   CALL MAP BAD
//!         | PROC "poke"      VIA MAP SPAN PATTERN
//!         | PROC "vmsplice"  MAP PAGE
//!         | PROC "pipe-read"
//!         | PROC "malloc"    MAP BYTES          the allocator ops (op/alloc.rs): MAP names
//!         | PROC "calloc"    MAP BYTES          a block; BYTES, ALIGN and VALUE decimal
//!         | PROC "realloc"   MAP BYTES "as" MAP
//!         | PROC "posix-memalign" MAP ALIGN BYTES
//!         | PROC "aligned-alloc"  MAP ALIGN BYTES
//!         | PROC "free"      MAP
//!         | PROC "mallopt"   ("mmap-threshold" | "mmap-max" | "trim-threshold") VALUE
//!         | PROC "malloc-trim" BYTES
//!         | PROC "race"      THREAD RACE MAP PAGE
//!         | PROC "stop"      THREAD
//!         | PROC "vfork"     "write" MAP SPAN PATTERN   a vfork child stores, then _exits
//!         | PROC "clone"     CHILD             a process in PROC's address space (CLONE_VM)
//!         | PROC "thread"    THREAD             an op thread (T20), waiting for ops
//!         | PROC "by"        THREAD             the next op, PROC's, is THREAD's
//!         | THREAD op-after-PROC                 = PROC "by" THREAD, then PROC op-after-PROC
//!         | THREAD "end"                         the op thread returns and is joined
//! PROC    = "p" N            N decimal, 0..=255 (p0 is the root process)
//! THREAD  = "t" N            a racing thread of PROC (a race names a new one)
//! RACE    = "write"          store 1, 2, 3, ... into the page's last 8 bytes until stopped
//! CHILD   = "p" N            the new process
//! MAP     = "m" N            after "map" and "as": the new mapping
//! KIND    = "private" | "shared" | "private-zero" | "shared-zero"
//! LENGTH  = PAGES            whole pages (a map's size; a remap's new size)
//!         | M "B"            M bytes, 1 to 4096: one page, cut after M bytes
//!         | PAGES "+" M "B"  PAGES pages and M bytes of one more
//! PAGES   = decimal number of pages
//! PLACE   = "fixed"          MAP_FIXED: exactly at AT, replacing what is there
//!         | "noreplace"      MAP_FIXED_NOREPLACE: exactly at AT, or EEXIST
//!         | "fixed-noreplace" MAP_FIXED|MAP_FIXED_NOREPLACE: as noreplace
//!         | "hint"           AT as a hint, without MAP_FIXED
//! AT      = MAP "+" P        page P of MAP's range
//!         | MAP              the same as MAP+0
//!         | MAP "+" P "+" M "B"  M bytes (1 to 4095) into page P: an unaligned address
//!         | MAP "+" M "B"    the same as MAP+0+MB
//! OFFSET  = PAGES | M "B" | PAGES "+" M "B"   mmap's offset (M 1 to 4095: unaligned)
//! RANGE   = A ".." B         pages A to B-1 of the mapping
//!         | A                the single page A, the same as A..A+1
//! EXTENT  = RANGE
//!         | A "+" M "B"      M bytes (1 to 4096) from page A: page A, cut after M bytes
//!         | A ".." B "+" M "B"   pages A to B-1 and M bytes of page B
//! PAGE    = RANGE            of exactly one page: A (or A..A+1)
//! SPAN    = RANGE
//!         | P "[" A ".." B "]"   bytes A to B-1 of page P
//!                            (of a block: units of 4096 bytes from its first byte)
//! PATTERN = "fill" BYTE      every byte is BYTE
//!         | "ramp" BYTE      the byte at mapping offset o is BYTE + o mod 251
//! BYTE    = ("0x" | "0X") HEX | decimal, at most 0xff
//! PROT    = "none" | "read" | "read-write" | "write"
//! ADVICE  = "dontneed" | "free" | "remove" | "dontfork" | "dofork" | "wipeonfork"
//!         | "keeponfork" | "populate-read" | "populate-write" | "cold" | "pageout"
//!         | "guard-install" | "guard-remove" | "hugepage" | "nohugepage"
//! REMAPFLAG = "maymove"      MREMAP_MAYMOVE
//!         | "dontunmap"      MREMAP_DONTUNMAP
//!         | "fixed" AT       MREMAP_FIXED at AT
//! CALL    = "mmap" | "munmap" | "mprotect" | "madvise" | "mremap"
//! BAD     = "zero-length" | "unaligned" | "overflow"
//!         | "unknown-advice" (madvise only) | "unknown-prot" (mprotect only)
//!         | "unknown-flags" (mremap only)
//! VIA     = "mem"            pwrite on /proc/self/mem (a forced write)
//!         | "vm"             process_vm_writev on itself
//! EXPECT  = see crate::program::expect: "0xaa", "ramp 0x10", "SIGSEGV maperr", "EINVAL", "ok", ...
//! ```
//!
//! Handle numbers are decimal and fit 8 bits; page numbers, byte offsets and page counts are
//! decimal and fit 16 bits (a single page `A` at most 65534); no signs. Remap flags come in any
//! order before `as`; a map's placement, `fd` and `offset` come in any order after its length,
//! each at most once.
//!
//! Lengths are what mmap, munmap, mprotect, madvise and mremap take, in bytes: a length with
//! `M B` is not a whole number of pages, and the call rounds it up to the whole pages it
//! reaches (docs/SEMANTICS.md A9). As M is at most 4096, the smallest page size, a length
//! reaches the same pages on every page size (`4B` is one page, `1+4B` two), and the
//! validator counts those pages. A map's `fd` passes the program's /dev/zero descriptor
//! (opened once by the root before the first op, inherited, never closed) instead of -1 to an
//! anonymous map, which Linux ignores, and maps it for a /dev/zero kind; without `fd` a
//! /dev/zero map opens /dev/zero for itself and closes it right after the mmap (A10, C4).
//! `offset` is mmap's offset, for anonymous kinds only. An EXTENT's empty range `A..A` (A
//! inside the mapping) is a length of 0, for `advise` and for a remap's old size only.
//!
//! After an op is read, it must pass the static rules of [`Validator`]; a violation is an error
//! at the offending token:
//! - the process exists (`p0`, or a fork made it) and has not exited; a `fork`'s CHILD, a
//!   `map`'s MAP and a `remap`'s result (after `as`) are handles never used before; at most 32
//!   process handles, 16 processes alive at once, 32 mapping handles and 512 ops ([`caps`]);
//! - every other MAP was made by an earlier `map` or `remap`, and a RANGE, EXTENT, SPAN or PAGE
//!   lies inside the pages that made it (not empty; a byte span ends at most at byte 4096),
//!   except an `advise`'s EXTENT and a remap's old EXTENT, which may be empty, `A..A` (a length
//!   of 0) with A inside;
//! - a `map` or `remap` makes 1 to 64 pages (a LENGTH's pages, counting the one its bytes
//!   reach); a `map`'s AT page lies inside AT's mapping and the new pages, from there, within
//!   it; likewise a `remap`'s `fixed AT`; an AT lies less than 4096 bytes into its page;
//! - a LENGTH's or EXTENT's bytes are 1 to 4096, an OFFSET's bytes 1 to 4095, and only
//!   `private` and `shared` maps take an offset;
//! - an `invalid` call's BAD is one that applies to its CALL (as marked above).
//!
//! An op may end in an inline expectation, `=> EXPECT`, before any comment: what the op must do,
//! checked against both the model and the kernel (see [`crate::program::expect`] for the forms,
//! such as `=> 0xaa`, `=> ramp 0x10`, `=> SIGSEGV maperr`, `=> EINVAL`, `=> ok`); it must fit its
//! op (content expectations need a read). The printer writes it as ` => EXPECT` right after the
//! op; it is kept in [`Program::expects`].
//!
//! The input is UTF-8 text without NUL bytes. Lines end in LF or CR LF, hold at most
//! [`MAX_LINE_BYTES`] bytes, and the last line may lack its line break.
//!
//! # Canonical form
//!
//! The printer writes the canonical form: the header, then one line per op, comment or blank
//! line in order, tokens separated by one space, an inline comment as ` #text` after its op, and
//! `\n` after every line including the last. A single page prints as `A`, other page ranges as
//! `A..B` (a remap's empty old range as `A..A`), an extent with bytes as `A+MB` or `A..B+MB`
//! (B its last page), a length as `N`, `MB` (one page) or `N+MB`, byte spans as `P[A..B]`, an
//! address `mN+0` as `mN` (with bytes `mN+MB` or `mN+P+MB`), an offset of 0 not at all, a
//! map's placement before `fd` and `offset`, pattern bytes as two lowercase hex digits
//! (`0x0a`), remap flags once each in the order `maymove dontunmap fixed AT`.
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

mod error;
mod fields;
mod op_line;
mod parse;
mod print;
#[cfg(test)]
mod tests;

pub use error::TraceError;
pub use parse::{HEADER, MAX_LINE_BYTES, parse, parse_str};

#[cfg(doc)]
use crate::program::{Op, Program, Validator, caps};

//! The allocator ops' lines (docs/SEMANTICS.md part 14):
//!
//! ```text
//! p0 malloc m0 200000                 m0 = malloc(200000)
//! p0 calloc m1 4096                   m1 = calloc(1, 4096)
//! p0 realloc m0 300000 as m2          m2 = realloc(m0, 300000); m0 is freed
//! p0 posix-memalign m3 4096 5000      posix_memalign(&m3, 4096, 5000)
//! p0 aligned-alloc m4 64 1000         m4 = aligned_alloc(64, 1000)
//! p0 free m0                          free(m0)
//! p0 mallopt mmap-threshold 262144    mallopt(M_MMAP_THRESHOLD, 262144) (also mmap-max,
//!                                     trim-threshold)
//! p0 malloc-trim 0                    malloc_trim(0)
//! ```
//!
//! Sizes are in bytes. A `write` or `read` of an allocation handle names units of 4096 bytes
//! from the block's first byte (`op/alloc.rs`).

use super::super::error::{TraceError, quoted};
use super::super::fields::{NumberError, parse_number};
use super::{Columns, OpLine, Token};
use crate::program::{AllocCall, MalloptParam, MapId, Op, ProcId, Tune};

/// The allocator verbs, as a trace writes them.
pub(in crate::program::trace) const ALLOC_VERBS: [&str; 8] = [
    "malloc",
    "calloc",
    "realloc",
    "posix-memalign",
    "aligned-alloc",
    "free",
    "mallopt",
    "malloc-trim",
];

impl<'a> OpLine<'a> {
    /// The rest of an allocator op's line after its verb.
    pub(super) fn alloc_op(
        &mut self,
        proc: ProcId,
        verb: Token<'a>,
        columns: &mut Columns,
    ) -> Result<Op, TraceError> {
        Ok(match verb.text {
            "free" => Op::Free {
                proc,
                map: self.map_handle(columns)?,
            },
            "mallopt" => {
                let names = MalloptParam::ALL.map(MalloptParam::name).join(", ");
                let token = self.tokens.get(self.next).map(|t| t.column);
                columns.args = token;
                let param = self.word(
                    &format!("a mallopt parameter (one of {names})"),
                    MalloptParam::from_name,
                )?;
                let value = self.bytes_number("a value", columns)?;
                Op::Tune {
                    proc,
                    tune: Tune::Mallopt { param, value },
                }
            }
            "malloc-trim" => Op::Tune {
                proc,
                tune: Tune::Trim {
                    pad: self.bytes_number("a pad in bytes", columns)?,
                },
            },
            "realloc" => {
                let from = self.map_handle(columns)?;
                let size = self.bytes_number("a size in bytes", columns)?;
                let token = self.take("as and the result's handle (like as m1)")?;
                if token.text != "as" {
                    return Err(self.error(
                        token,
                        format!(
                            "expected as mN after realloc's size, found {}",
                            quoted(token.text)
                        ),
                    ));
                }
                let result = self.take("the result's handle (like m1)")?;
                columns.map = Some(result.column);
                let map = MapId(self.handle(result, 'm', "handle", "m1")?);
                Op::Alloc {
                    proc,
                    map,
                    call: AllocCall::Realloc { from },
                    size,
                }
            }
            _ => {
                let map = self.map_handle(columns)?;
                let call = match verb.text {
                    "malloc" => AllocCall::Malloc,
                    "calloc" => AllocCall::Calloc,
                    "posix-memalign" => AllocCall::Memalign {
                        align: self.bytes_number("an alignment", columns)?,
                    },
                    _ => AllocCall::AlignedAlloc {
                        align: self.bytes_number("an alignment", columns)?,
                    },
                };
                if call.align().is_some() {
                    columns.args = columns.count;
                }
                let size = self.bytes_number("a size in bytes", columns)?;
                Op::Alloc {
                    proc,
                    map,
                    call,
                    size,
                }
            }
        })
    }

    /// A decimal number of bytes.
    fn bytes_number(&mut self, what: &str, columns: &mut Columns) -> Result<u32, TraceError> {
        let token = self.take(what)?;
        columns.count = Some(token.column);
        parse_number(token.text, 10).map_err(|e| {
            self.error(
                token,
                match e {
                    NumberError::NotNumber => {
                        format!(
                            "expected {what} (a decimal number), found {}",
                            quoted(token.text)
                        )
                    }
                    NumberError::TooLarge => {
                        format!("{what} {} is too large", quoted(token.text))
                    }
                },
            )
        })
    }
}

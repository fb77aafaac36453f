//! Decoding a request's words (`Request::decode`, the other way of `Request::encode` in
//! `request.rs`, whose header gives the layout): a reader that takes the words in order and
//! checks each, so that a malformed request names the word that is wrong (`BadRequest`).

use super::alloc::{alloc_call_of, tune_of};
use super::codes::*;
use super::request::{BadRequest, Barrier, ByteRange, REQ_WORDS, Request, verb};
use crate::program::{MapArgs, MapId, PageRange, RemapFlags};

/// Reads a request's words in order, each checked.
pub(super) struct Words<'a> {
    pub(super) w: &'a [u64; REQ_WORDS],
    pub(super) next: usize,
}

impl Words<'_> {
    #[inline]
    pub(super) fn take<T>(&mut self, f: impl FnOnce(u64) -> Option<T>) -> Result<T, BadRequest> {
        let word = self.next;
        let value = *self.w.get(word).ok_or(BadRequest { word, value: 0 })?;
        self.next += 1;
        f(value).ok_or(BadRequest { word, value })
    }

    #[inline]
    pub(super) fn map(&mut self) -> Result<MapId, BadRequest> {
        self.take(map_of)
    }

    #[inline]
    pub(super) fn u16(&mut self) -> Result<u16, BadRequest> {
        self.take(|w| u16::try_from(w).ok())
    }

    #[inline]
    pub(super) fn u32(&mut self) -> Result<u32, BadRequest> {
        self.take(|w| u32::try_from(w).ok())
    }

    #[inline]
    pub(super) fn flag(&mut self) -> Result<bool, BadRequest> {
        self.take(flag_of)
    }

    /// A length word: pages and the bytes of the last one.
    #[inline]
    pub(super) fn length(&mut self) -> Result<(u16, u16), BadRequest> {
        self.take(len_of)
    }

    /// A first page and a length word (empty allowed, then without a tail).
    #[inline]
    pub(super) fn extent(&mut self) -> Result<(PageRange, u16), BadRequest> {
        let start = self.u16()?;
        let (len, tail) = self.length()?;
        let end = start.checked_add(len).ok_or(BadRequest {
            word: self.next - 1,
            value: len as u64,
        })?;
        Ok((PageRange { start, end }, tail))
    }

    /// A map's fd flag and offset.
    #[inline]
    pub(super) fn args(&mut self) -> Result<MapArgs, BadRequest> {
        let (fd, hugetlb) = self.take(map_flags_of)?;
        Ok(MapArgs {
            fd,
            offset: self.take(offset_of)?,
            hugetlb,
        })
    }

    /// A first page and a length (empty allowed).
    #[inline]
    pub(super) fn pages(&mut self) -> Result<PageRange, BadRequest> {
        let start = self.u16()?;
        let len = self.u16()?;
        let end = start.checked_add(len).ok_or(BadRequest {
            word: self.next - 1,
            value: len as u64,
        })?;
        Ok(PageRange { start, end })
    }

    #[inline]
    pub(super) fn bytes(&mut self) -> Result<ByteRange, BadRequest> {
        let start = self.u32()?;
        let end = self.u32()?;
        if end < start {
            return Err(BadRequest {
                word: self.next - 1,
                value: end as u64,
            });
        }
        Ok(ByteRange { start, end })
    }

    #[inline]
    pub(super) fn barrier(&mut self) -> Result<Barrier, BadRequest> {
        Ok(Barrier {
            serial: self.u32()?,
            mask: self.u32()?,
            next: self.u32()?,
            late: self.u32()?,
        })
    }

    /// MREMAP_* bits, then the fixed target's word.
    #[inline]
    pub(super) fn remap_flags(&mut self) -> Result<RemapFlags, BadRequest> {
        let word = self.next;
        let bits = self.take(Some)?;
        let fixed = self.take(Some)?;
        remap_flags_of(bits, fixed).ok_or(BadRequest { word, value: bits })
    }

    /// Every word after the arguments must be 0.
    #[inline]
    pub(super) fn end(self) -> Result<(), BadRequest> {
        match self.w[self.next.min(REQ_WORDS)..]
            .iter()
            .position(|&w| w != 0)
        {
            None => Ok(()),
            Some(i) => Err(BadRequest {
                word: self.next + i,
                value: self.w[self.next + i],
            }),
        }
    }
}

/// A thread handle's index (below `MAX_THREADS`).
fn thread_of(w: u64) -> Option<u8> {
    (w < crate::program::MAX_THREADS as u64).then_some(w as u8)
}

impl Request {
    /// The request these words carry; an error for anything `encode` never makes.
    #[inline]
    pub fn decode(w: &[u64; REQ_WORDS]) -> Result<Request, BadRequest> {
        let mut r = Words { w, next: 1 };
        let req = match w[0] {
            verb::MAP => {
                let kind = r.take(kind_of)?;
                let (pages, tail) = r.length()?;
                Request::Map {
                    kind,
                    pages,
                    tail,
                    creates: r.map()?,
                    args: r.args()?,
                }
            }
            verb::MAP_AT => {
                let kind = r.take(kind_of)?;
                let (pages, tail) = r.length()?;
                Request::MapAt {
                    kind,
                    pages,
                    tail,
                    creates: r.map()?,
                    at: r.take(at_of)?,
                    how: r.take(how_of)?,
                    args: r.args()?,
                }
            }
            verb::WRITE => Request::Write {
                map: r.map()?,
                pages: r.pages()?,
                bytes: r.bytes()?,
                pattern: r.take(pattern_of)?,
            },
            verb::VFORK => Request::Vfork {
                map: r.map()?,
                pages: r.pages()?,
                bytes: r.bytes()?,
                pattern: r.take(pattern_of)?,
            },
            verb::READ => Request::Read {
                map: r.map()?,
                pages: r.pages()?,
                bytes: r.bytes()?,
            },
            verb::POKE => Request::Poke {
                map: r.map()?,
                pages: r.pages()?,
                bytes: r.bytes()?,
                pattern: r.take(pattern_of)?,
                via: r.take(via_of)?,
            },
            verb::UNMAP => {
                let map = r.map()?;
                let (pages, tail) = r.extent()?;
                Request::Unmap { map, pages, tail }
            }
            verb::PROTECT => {
                let map = r.map()?;
                let (pages, tail) = r.extent()?;
                Request::Protect {
                    map,
                    pages,
                    tail,
                    prot: r.take(prot_of)?,
                }
            }
            verb::ADVISE => {
                let map = r.map()?;
                let (pages, tail) = r.extent()?;
                Request::Advise {
                    map,
                    pages,
                    tail,
                    advice: r.take(advice_of)?,
                }
            }
            verb::REMAP => {
                let map = r.map()?;
                let (old, old_tail) = r.extent()?;
                let (new_pages, new_tail) = r.length()?;
                Request::Remap {
                    map,
                    old,
                    old_tail,
                    new_pages,
                    new_tail,
                    creates: r.map()?,
                    flags: r.remap_flags()?,
                }
            }
            verb::INVALID => Request::Invalid {
                map: r.map()?,
                call: r.take(call_of)?,
                bad: r.take(bad_of)?,
            },
            verb::VMSPLICE => Request::Vmsplice { at: r.take(at_of)? },
            verb::PIPE_READ => Request::PipeRead,
            verb::RACE => Request::Race {
                at: r.take(at_of)?,
                kind: r.take(crate::program::RaceKind::from_code)?,
                thread: r.take(thread_of)?,
            },
            verb::STOP => Request::Stop {
                thread: r.take(thread_of)?,
            },
            verb::THREAD => Request::Thread {
                thread: r.take(thread_of)?,
            },
            verb::BY => Request::By {
                thread: r.take(thread_of)?,
            },
            verb::END => Request::End {
                thread: r.take(thread_of)?,
            },
            verb::FORK => Request::Fork {
                child: r.take(proc_of)?,
                direct_reads: r.flag()?,
                barrier: r.barrier()?,
            },
            verb::CLONE_VM => Request::CloneVm {
                child: r.take(proc_of)?,
                direct_reads: r.flag()?,
                barrier: r.barrier()?,
            },
            verb::PREPARE_CLONES => Request::PrepareClones,
            verb::EXIT => Request::Exit { pass: r.u32()? },
            verb::SNAPSHOT => Request::Snapshot {
                direct_reads: r.flag()?,
                barrier: r.barrier()?,
                smaps: r.flag()?,
            },
            verb::DUMP => Request::Dump { at: r.take(at_of)? },
            verb::SPAWN_ROOT => Request::SpawnRoot,
            verb::AWAIT => Request::Await { turn: r.u32()? },
            verb::PASS => Request::Pass { turn: r.u32()? },
            verb::ALLOC => {
                let (call, size, creates) = (r.take(Some)?, r.u32()?, r.map()?);
                let (from, align) = (r.take(Some)?, r.take(Some)?);
                Request::Alloc {
                    call: alloc_call_of(call, from, align).ok_or(BadRequest {
                        word: 1,
                        value: call,
                    })?,
                    size,
                    creates,
                }
            }
            verb::FREE => Request::Free { map: r.map()? },
            verb::TUNE => {
                let (what, value) = (r.take(Some)?, r.take(Some)?);
                Request::Tune {
                    tune: tune_of(what, value).ok_or(BadRequest {
                        word: 1,
                        value: what,
                    })?,
                }
            }
            value => return Err(BadRequest { word: 0, value }),
        };
        r.end()?;
        Ok(req)
    }
}

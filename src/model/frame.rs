//! Backing frames: the model's physical pages. Private pages of a forked process share a frame
//! with the parent until one side writes (copy-on-write); shared objects own their frames and
//! every mapper writes them in place. Frames are explicit, not just values, so that a later
//! physical channel (/proc/PID/pagemap PFNs) can be compared with them. Frames never decide
//! when a write may go in place: the model's fault handling (`memory.rs`) does.

use crate::program::outcome::{all_zero, digest};

/// A frame number. `FrameId::ZERO` is the shared zero page: what an untouched private page reads
/// (docs/SEMANTICS.md A6); it is never written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameId(pub u32);

impl FrameId {
    pub const ZERO: FrameId = FrameId(0);
}

#[derive(Clone, Debug)]
struct Frame {
    bytes: Box<[u8]>,
    /// References from page-table entries and shared objects.
    refs: u32,
    /// Cached digest of `bytes`, recomputed lazily after a write.
    digest: Option<u64>,
}

/// All frames, with reference counts and a free list.
#[derive(Clone, Debug)]
pub struct Frames {
    page_size: usize,
    frames: Vec<Frame>,
    free: Vec<u32>,
}

impl Frames {
    pub fn new(page_size: usize) -> Frames {
        let zero = Frame {
            bytes: vec![0u8; page_size].into_boxed_slice(),
            refs: 0,
            digest: None,
        };
        Frames {
            page_size,
            frames: vec![zero],
            free: Vec::new(),
        }
    }

    pub fn bytes(&self, f: FrameId) -> &[u8] {
        &self.frames[f.0 as usize].bytes
    }

    /// Whether every byte of the frame is zero. Compares 64-byte blocks at a time (the
    /// compiler makes each block one vector OR), not byte by byte: the physical channel asks it
    /// of every page of a PMD that may be huge at every view (I21).
    pub fn is_zero(&self, f: FrameId) -> bool {
        all_zero(&self.frames[f.0 as usize].bytes)
    }

    pub fn refs(&self, f: FrameId) -> u32 {
        self.frames[f.0 as usize].refs
    }

    pub fn digest(&mut self, f: FrameId) -> u64 {
        let frame = &mut self.frames[f.0 as usize];
        *frame.digest.get_or_insert_with(|| digest(&frame.bytes))
    }

    /// Number of frames in use, the zero page excluded.
    pub fn in_use(&self) -> usize {
        self.frames.len() - 1 - self.free.len()
    }

    /// A new frame holding a copy of `from`, with one reference.
    pub fn copy_of(&mut self, from: FrameId) -> FrameId {
        let bytes = self.frames[from.0 as usize].bytes.clone();
        let digest = self.frames[from.0 as usize].digest;
        let frame = Frame {
            bytes,
            refs: 1,
            digest,
        };
        match self.free.pop() {
            Some(i) => {
                self.frames[i as usize] = frame;
                FrameId(i)
            }
            None => {
                self.frames.push(frame);
                FrameId(self.frames.len() as u32 - 1)
            }
        }
    }

    pub fn take(&mut self, f: FrameId) {
        if f != FrameId::ZERO {
            self.frames[f.0 as usize].refs += 1;
        }
    }

    pub fn release(&mut self, f: FrameId) {
        if f == FrameId::ZERO {
            return;
        }
        let frame = &mut self.frames[f.0 as usize];
        debug_assert!(frame.refs > 0, "release of a free frame");
        frame.refs -= 1;
        if frame.refs == 0 {
            frame.bytes = Box::new([]);
            frame.digest = None;
            self.free.push(f.0);
        }
    }

    /// Writable bytes of a frame. The caller decides that writing in place is right: the
    /// frame is the writer's alone, or its own page that a pipe also refers to (vmsplice),
    /// or a shared object's page.
    pub fn bytes_mut(&mut self, f: FrameId) -> &mut [u8] {
        debug_assert!(f != FrameId::ZERO, "the zero page is never written");
        let frame = &mut self.frames[f.0 as usize];
        frame.digest = None;
        &mut frame.bytes
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }
}

//! The slots: one shared mapping, made by the executor before the zygote, holding per process
//! handle (and for the zygote) a request area, a progress block, a reply area and a page copy
//! buffer, and after them the tree's board (`turn`). This file owns their layout, a worker's
//! views of its own slot (`SlotWords`), and the coordinator's window on all of them
//! (`SlotsView`). A process only ever writes its own slot.

use std::ffi::c_void;
use std::sync::atomic::AtomicU32;

use super::turn::{Board, Turn};
use crate::kernel::protocol::reply::PAYLOAD_WORD;
use crate::kernel::protocol::{REPLY_HEAD, REPLY_PAYLOAD, REQ_WORDS};

/// The per-process buffers of every process of a tree: one slot per process handle (and one
/// for the zygote), in one shared anonymous mapping made by the executor before the zygote.
/// A slot holds the process's request area, its reply area and its page copy buffer.
/// Shared, because a private buffer is copy-on-write after every fork in both processes, and
/// every process writes these first thing: a private copy buffer was a quarter of all page
/// faults of a bench run (perf record -e page-faults: 43 of ~190 per program, in
/// _copy_to_iter), and the private reply and request buffers cost ~2 more per process per
/// fork. A process only ever writes its own slot, and processes of different programs never
/// use a slot at once: a finished tree is killed before the next program starts, the spare
/// root (slot 0) receives and replies only once its program has started, and the zygote has a
/// slot of its own. A page after the slots is the tree's board (`Turn`, `Board`). The mapping
/// is made with the mmap system call itself, out of an interposed libc's reach; where even that
/// fails, the executor refuses to start (the turns need shared memory).
#[derive(Clone)]
pub(super) struct ProcSlots {
    base: *mut u8,
    slot_len: usize,
    slots: usize,
    pub(super) slot: usize,
    copy_len: usize,
    /// The turn word (`Turn`), on a page after the slots; null without shared memory.
    pub(super) turn: *const AtomicU32,
}

/// Requests one message may carry.
pub const MAX_BATCH: usize = 64;
/// Words of a slot's request area.
const REQUEST_AREA: usize = MAX_BATCH * REQ_WORDS;
/// Words of a slot's progress block, after the request area: word 0 is how many replies the
/// reply area holds that are built and not sent yet (so that the coordinator can still read
/// them from a worker it killed as hung, and name the op that hung; `SlotsView`).
pub(super) const PROGRESS_WORDS: usize = 8;
/// Words of a slot's reply area.
pub const REPLY_AREA: usize = REPLY_HEAD + REPLY_PAYLOAD;
/// The zygote's slot, after the process handles' slots.
pub(super) const ZYGOTE_SLOT: usize = crate::program::caps::MAX_PROCS;

/// The coordinator's window on the slots (the mapping is shared with every worker): after it
/// killed a worker as hung, the replies that worker had built but not sent.
#[derive(Clone, Copy)]
pub struct SlotsView {
    base: *mut u8,
    slot_len: usize,
    slots: usize,
    pub turn: Turn,
}

impl SlotsView {
    /// The tree's board.
    pub fn board(&self) -> Board {
        Board(self.turn.0 as *mut u8)
    }

    /// The replies that the worker of process handle `proc` had built and not sent, as the
    /// words of one message. Only meaningful once that worker runs no more (killed).
    pub fn unsent(&self, proc: usize) -> Vec<u64> {
        if self.slots <= proc {
            return Vec::new();
        }
        // SAFETY: slot `proc` lies inside the mapping; its progress block and reply area are
        // read with volatile loads, as another process wrote them (it has stopped).
        unsafe {
            let slot = self.base.add(proc * self.slot_len) as *const u64;
            let n = std::ptr::read_volatile(slot.add(REQUEST_AREA)) as usize;
            let area = slot.add(REQUEST_AREA + PROGRESS_WORDS);
            let mut at = 0usize;
            for _ in 0..n {
                if at + REPLY_HEAD > REPLY_AREA {
                    break;
                }
                let payload = std::ptr::read_volatile(area.add(at + PAYLOAD_WORD)) as usize;
                if at + REPLY_HEAD + payload > REPLY_AREA {
                    break;
                }
                at += REPLY_HEAD + payload;
            }
            (0..at)
                .map(|i| std::ptr::read_volatile(area.add(i)))
                .collect()
        }
    }
}

/// A run of u64 words inside a slot, seen as a slice.
pub(super) struct SlotWords {
    pub(super) ptr: *mut u64,
    len: usize,
}

impl std::ops::Deref for SlotWords {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        // SAFETY: `ptr..ptr+len` lies inside this process's slot (`ProcSlots::requests`,
        // `progress`, `reply`), which lives as long as the process and is written by no other
        // process while this one runs (see `ProcSlots`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::ops::DerefMut for SlotWords {
    fn deref_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in `deref`; the request and reply areas of a slot do not overlap, and
        // `&mut self` keeps this view unique within the process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl ProcSlots {
    pub(super) fn new(page_size: usize) -> ProcSlots {
        let words = (REQUEST_AREA + PROGRESS_WORDS + REPLY_AREA) * 8;
        let copy_len = COPY_PAGES * page_size;
        let slot_len = words.div_ceil(page_size) * page_size + copy_len;
        let slots = ZYGOTE_SLOT + 1;
        // Harness memory, not an op of the program: made with the mmap system call itself,
        // so that an interposed libc under test (which may make shared mappings private, map
        // more, or dirty them) cannot break the harness's own shared memory.
        // SAFETY: a fresh mapping, owned by this area for the process's life.
        let p = unsafe {
            libc::syscall(
                libc::SYS_mmap,
                std::ptr::null_mut::<c_void>(),
                slot_len * slots + page_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        } as *mut c_void;
        if p == libc::MAP_FAILED || (p as isize) < 0 {
            // No shared memory: one private slot, leaked for the process's life (u64 words,
            // so that the request and reply areas are aligned), and no turns, which the
            // executor sees (`Turn::works`) and refuses to start.
            let words = vec![0u64; slot_len / 8];
            return ProcSlots {
                base: Box::leak(words.into_boxed_slice()).as_mut_ptr() as *mut u8,
                slot_len,
                slots: 1,
                slot: 0,
                copy_len,
                turn: std::ptr::null(),
            };
        }
        ProcSlots {
            base: p as *mut u8,
            slot_len,
            slots,
            slot: 0,
            copy_len,
            // SAFETY: the page after the last slot, inside the mapping.
            turn: unsafe { (p as *mut u8).add(slot_len * slots) } as *const AtomicU32,
        }
    }

    /// The slot of the process with this handle number (or `ZYGOTE_SLOT`).
    pub(super) fn take_slot(&mut self, proc: usize) {
        self.slot = proc % self.slots;
    }

    fn slot_base(&self) -> *mut u8 {
        // SAFETY: `slot < slots`, so the offset stays inside the mapping.
        unsafe { self.base.add(self.slot * self.slot_len) }
    }

    pub(super) fn requests(&self) -> SlotWords {
        SlotWords {
            ptr: self.slot_base() as *mut u64,
            len: REQUEST_AREA,
        }
    }

    pub(super) fn progress(&self) -> SlotWords {
        SlotWords {
            // SAFETY: the progress block follows the request area inside the slot.
            ptr: unsafe { (self.slot_base() as *mut u64).add(REQUEST_AREA) },
            len: PROGRESS_WORDS,
        }
    }

    pub(super) fn reply(&self) -> SlotWords {
        SlotWords {
            // SAFETY: the reply area follows the progress block inside the slot.
            ptr: unsafe { (self.slot_base() as *mut u64).add(REQUEST_AREA + PROGRESS_WORDS) },
            len: REPLY_AREA,
        }
    }

    /// What the coordinator may read of every slot.
    pub(super) fn view(&self) -> SlotsView {
        SlotsView {
            base: self.base,
            slot_len: self.slot_len,
            slots: self.slots,
            turn: Turn(self.turn),
        }
    }

    /// The slot's page copy buffer.
    pub(super) fn buf(&mut self) -> &mut [u8] {
        // SAFETY: the copy buffer is the slot's last `copy_len` bytes, inside the mapping;
        // only this process writes it while its tree runs (see the type's comment), and
        // `&mut self` keeps the slice unique within the process.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.slot_base().add(self.slot_len - self.copy_len),
                self.copy_len,
            )
        }
    }
}

/// Pages copied per `process_vm_readv` call in a snapshot.
pub(super) const COPY_PAGES: usize = 16;

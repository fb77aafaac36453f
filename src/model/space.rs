//! Address spaces at page granularity. Each mapped page is one entry; what a VMA is (and how the
//! kernel merges or splits them) is not modelled, since it is not observable beyond the
//! normalised layout (SEMANTICS §1: "Do not assert VMA counts or boundaries").

use std::collections::BTreeMap;

use super::frame::FrameId;
use crate::program::MapKind;

/// A shared object's number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjId(pub u32);

/// What a page-table entry points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageBacking {
    /// A private page: its own frame, or a frame shared copy-on-write with fork relatives.
    Private(FrameId),
    /// Page `index` of a shared object.
    Object { obj: ObjId, index: u32 },
}

/// One mapped page of one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pte {
    pub kind: MapKind,
    pub prot: u8,
    pub backing: PageBacking,
}

/// The mapped pages of one process, keyed by virtual page number.
#[derive(Clone, Debug, Default)]
pub struct AddressSpace {
    pub ptes: BTreeMap<u64, Pte>,
}

impl AddressSpace {
    pub fn get(&self, vpn: u64) -> Option<&Pte> {
        self.ptes.get(&vpn)
    }

    pub fn get_mut(&mut self, vpn: u64) -> Option<&mut Pte> {
        self.ptes.get_mut(&vpn)
    }

    /// Whether any page of `[vpn, vpn + n)` is mapped.
    pub fn any_mapped(&self, vpn: u64, n: u64) -> bool {
        self.ptes.range(vpn..vpn + n).next().is_some()
    }

    /// Removes `[vpn, vpn + n)`, returning what was there.
    pub fn remove_range(&mut self, vpn: u64, n: u64) -> Vec<Pte> {
        let keys: Vec<u64> = self.ptes.range(vpn..vpn + n).map(|(k, _)| *k).collect();
        keys.into_iter()
            .filter_map(|k| self.ptes.remove(&k))
            .collect()
    }
}

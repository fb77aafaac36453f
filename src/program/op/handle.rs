//! Handles: processes (`p0`, `p1`, ...) and mappings (`m0`, ...), and addresses named by a
//! handle, a page and perhaps a byte inside it (`m0+2`, `m0+2+1B`). Handles are names in a program, never raw addresses: nothing here
//! knows where a mapping lies.

use std::fmt;

/// A process handle; `p0` is the root of the program's process tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcId(pub u8);

/// A mapping handle: the range one `map` op returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MapId(pub u8);

/// A thread handle, `t0`, `t1`, ...: named once by the `race` that starts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(pub u8);

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

impl ProcId {
    pub const ROOT: ProcId = ProcId(0);
}

impl fmt::Display for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

impl fmt::Display for MapId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// An address named by a handle and a page inside its range, `m0+2`, and perhaps `byte` bytes
/// into that page, `m0+2+1B`: an unaligned address (`byte` is less than
/// [`caps::MAX_BYTE_OFFSET`](super::caps::MAX_BYTE_OFFSET), so it is unaligned on every page
/// size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct At {
    pub map: MapId,
    pub page: u16,
    pub byte: u16,
}

impl At {
    /// Page `page` of `map`, aligned.
    pub fn page(map: MapId, page: u16) -> At {
        At { map, page, byte: 0 }
    }
}

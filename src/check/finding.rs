//! What a campaign yields: its running totals and its findings (divergences, shrunk and
//! explained). Data only; `campaign` makes them, `report` prints them.

use std::time::Duration;

use crate::check::{Divergence, PageDiff};
use crate::program::{OpKind, Program};

/// Running totals.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub programs: u64,
    pub ops: u64,
    pub forks: u64,
    /// Forks made inside a racing window (a thread of the forking process racing).
    pub racing_forks: u64,
    /// clone(CLONE_VM) children made.
    pub clones: u64,
    /// Races started, by kind (`RaceKind::ALL`'s order).
    pub races: [u64; crate::program::RaceKind::ALL.len()],
    /// Forks made inside each kind's racing windows (same order).
    pub racing_forks_by_kind: [u64; crate::program::RaceKind::ALL.len()],
    /// Ops run by op threads, and the forks among them (docs/SEMANTICS.md T21, T22).
    pub thread_ops: u64,
    pub thread_forks: u64,
    pub pages_compared: u64,
    pub snapshots: u64,
    /// Pages whose physical facts (pagemap words) were checked.
    pub physical_pages: u64,
    pub elapsed: Duration,
    /// Programs in which each op kind ran at least once, indexed like `OpKind::ALL`.
    pub programs_with: [u64; OpKind::ALL.len()],
    /// Semantic cells reached (see `coverage`).
    pub cells: crate::check::coverage::CellSet,
    /// Programs that agreed once the runtime's own regions were set aside
    /// (`check::Options::own_regions`), which they showed.
    pub with_own_regions: u64,
}

/// A divergence, shrunk and explained.
#[derive(Clone, Debug)]
pub struct Finding {
    /// Index of the program in the campaign (with the seed, it regenerates the original).
    pub index: u64,
    pub original: Program,
    pub shrunk: Program,
    pub divergence: Divergence,
    pub signature: String,
    pub pages: Vec<PageDiff>,
    /// Programs that diverged this way (`--keep-going`).
    pub count: u64,
    /// In how many of `runs` runs of the original program it diverged this way (the first run
    /// and its reruns): `seen < runs` is a nondeterministic divergence, reported as such.
    pub seen: u32,
    pub runs: u32,
}

impl Finding {
    /// Whether the divergence did not show in every run of its program.
    pub fn nondeterministic(&self) -> bool {
        self.seen < self.runs
    }

    /// What makes two findings the same: the divergence's signature and the shrunk trace's
    /// shape.
    pub fn key(&self) -> String {
        format!("{} | {}", self.signature, self.shrunk.shape())
    }
}

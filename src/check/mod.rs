//! Check: holds a program's kernel run against the model and says where they part.
//!
//! - `compare`: the one comparison (op outcomes, snapshots), its `Divergence` and `Verdict`.
//! - `coverage`: the semantic cells a program reaches (op x mapping kind x page state x sharing).
//! - `physical`: the physical channel (pagemap words) against the model's frames; `accounting`
//!   (mincore) and `smaps` (per-region sums) are its accounting halves; `hugetlb_phys` the runs
//!   of a hugetlb huge page's PFNs.
//! - `shrink`: delta debugging of a diverging program, with the comparison as its oracle.
//!
//! It imports the vocabulary (`program`) and the model, never the kernel side or a front end:
//! a kernel run reaches it as `program::outcome::KernelRun`, data only.

#![forbid(unsafe_code)]

mod accounting;
pub mod compare;
pub mod coverage;
pub mod expectations;
pub mod finding;
mod hugetlb_phys;
pub mod physical;
pub mod race_windows;
pub mod shrink;
mod smaps;

pub use compare::*;
pub use coverage::CoverageSink;

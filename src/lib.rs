//! cowcheck: model-based checking of Linux anonymous memory across `fork`.
//!
//! `MAP_PRIVATE|MAP_ANONYMOUS` memory is copy-on-write across fork: from the fork on, neither
//! side sees the other's writes. `MAP_SHARED|MAP_ANONYMOUS` memory is one object that every
//! process mapping it sees, writes included. Both start zero-filled, and mappings of /dev/zero
//! behave the same. cowcheck generates programs of map, write, read, fork, exit and unmap ops,
//! runs each on the real kernel in a real process tree, runs it on a reference model, and
//! reports the first difference as a minimal, replayable trace.
//!
//! The flow is one way:
//!
//! ```text
//! program (ops, text trace, generators)
//!     |                          |
//!     v                          v
//! model::Model              kernel::Executor -- process tree of workers (real fork, real mmap)
//! (what may be)             (what is)
//!      \                        /
//!       v                      v
//!   check::compare -> Divergence -> shrink -> report (trace file, side-by-side bytes)
//! front ends: the `cowcheck` CLI (campaign), proptests/, tests/
//! ```
//!
//! Layers, each importing only those before it (`tests/layers.rs` checks it):
//!
//! - [`program`]: the vocabulary: ops, traces, generators, observations, expectations, the
//!   target's features and the errno/signal/advice tables;
//! - [`model`]: the reference semantics, a file per syscall family; [`kernel`]: the executor
//!   and its workers, where all `unsafe` code lives (the two never import each other);
//! - [`check`]: comparison, coverage, shrinking, expectations, findings;
//! - [`report`]: text, JSON and the C reproducer;
//! - front ends: [`campaign`], [`trial`], [`corpus`], [`bench`], [`env`], [`files`],
//!   [`limits`] and the CLI (`main.rs`).
//!
//! The rules of the model are in `docs/SEMANTICS.md`, each with its source and scenarios.

pub mod bench;
pub mod campaign;
pub mod check;
pub mod corpus;
pub mod env;
pub mod files;
pub mod kernel;
pub mod limits;
pub mod model;
pub mod program;
pub mod report;
pub mod trial;

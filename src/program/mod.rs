//! Programs and the vocabulary every layer shares. Nothing here makes a syscall.
//!
//! - `op`: the op language (processes, mappings, spans, ops) and `Program`.
//! - `trace`: its text format, the one format of the CLI, corpus, fuzz artifacts and reports.
//! - `generate`: random programs for `cowcheck run`, proptest and the fuzzer.
//! - `outcome`: what an op did and what a process looks like (observations), and `KernelRun`.
//! - `expect`: inline expectations (`=> 0xaa`) of traces.
//! - `features`: what the target supports.
//! - `physical`: the physical channel's words (pagemap) and which of its parts ran.
//! - `tables`: errno, signal, `si_code` and `madvise` numbers, one table each.

#![forbid(unsafe_code)]

pub mod expect;
pub mod features;
pub mod generate;
pub mod op;
pub mod outcome;
pub mod physical;
pub mod runtime_regions;
pub mod tables;
pub mod trace;

pub use op::*;

//! The kernel side: runs programs for real. All `unsafe` of the project lives under here.
//!
//! - `client`: the front's handle on an executor process (never forks workers).
//! - `executor`: the executor process, coordinator of one process tree per program.
//! - `worker`: the loop every process of the tree runs (raw loads, stores and fork).
//! - `hugetlb_pool`: the run's share of the hugetlb pool, always given back; the hugetlb probe.
//! - `maps`: /proc/self/maps without allocation.
//! - `probe`: what the kernel under us supports, found by trying.
//! - `protocol`: wire formats (typed requests and replies, frames), and nothing else.
//! - `vm`: `--kernel IMAGE`, the executor inside a VM booted with that kernel (qemu), and the
//!   init that starts it in the guest.
//!
//! It uses only the vocabulary (`crate::program`): never the model, the checker, the reports
//! or a front end.

pub mod client;
pub mod clone_vm_probe;
pub mod cpus;
pub mod executor;
pub mod hugetlb_pool;
pub mod malloc_probe;
pub mod maps;
pub mod probe;
pub mod protocol;
pub mod vm;
pub mod worker;

pub use client::{Executor, ExecutorConfig, HarnessError};
pub use protocol::{DumpRequest, KernelRun};

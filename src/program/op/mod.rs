//! The op language: pure data, no I/O. It never makes a syscall, never knows an address, and
//! never says how an op is written down (that is [`trace`](crate::program::trace)'s) or what it
//! does (the model's and the executor's).
//!
//! A program is a list of ops over abstract handles: processes (`p0`, the root, and the children
//! that `fork` creates) and mappings (`m0`, ... created by `map`). A mapping handle names the
//! address range that its `map` returned; a process that forked after the map inherits it at the
//! same address. Ops never carry raw addresses, so a program replays on any run.
//!
//! - `caps`: the hard limits of a program.
//! - `handle`: process and mapping handles, and addresses named by a handle (`m0+2`).
//! - `span`: page ranges, byte spans and write patterns.
//! - `args`: the words ops take (mapping kinds, protections, advice, placement, remap flags, bad
//!   calls, poke routes).
//! - `ops`: the [`Op`] enum and its verbs, [`OpKind`].
//! - `program`: [`Program`] and its trace comments.
//! - `validate`: the static rules, [`Validator`].
//! - `alloc`: the allocator ops' words and allocation handles (malloc, free, mallopt).
//! - `thread`: racing threads' handles, kinds and rules (docs/SEMANTICS.md T1).
//! - `clone_vm`: what a program with a `clone(CLONE_VM)` child leaves out (T34).
//! - `thread_ops`: op threads' rules (`p0 thread t1`, `t1 write ...`; T20).
//!
//! Every public name is re-exported here and from [`crate::program`].

pub mod caps;

mod alloc;
mod args;
mod clone_vm;
mod handle;
mod ops;
mod program;
mod span;
mod thread;
mod thread_ops;
mod validate;

pub use alloc::*;
pub use args::*;
pub use clone_vm::*;
pub use handle::*;
pub use ops::*;
pub use program::*;
pub use span::*;
pub use thread::*;
pub use thread_ops::*;
pub use validate::*;

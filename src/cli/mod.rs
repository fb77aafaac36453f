//! The commands of the CLI, each a thin front over the library: it chooses programs, starts
//! executors, prints. Argument parsing and the shared helpers are in `main.rs`.

pub(crate) mod inspect;
pub(crate) mod matrix;
pub(crate) mod run;
pub(crate) mod tools;

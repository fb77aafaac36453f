//! Programs: the op language (`op`), its text trace format (`trace`) and the generators that
//! make random programs for `cowcheck run`, proptest and the fuzzer (`gen`).

pub mod generate;
pub mod op;
pub mod trace;

pub use op::*;

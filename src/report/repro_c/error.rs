//! Why a C reproducer could not be generated or compiled. This module owns the error type only.

/// Why [`generate`](super::generate) or [`build`](super::build) failed.
#[derive(Debug, thiserror::Error)]
pub enum ReproError {
    #[error(
        "op {index} ({op}): the C reproducer cannot express `{kind}` ops yet (it knows {known}); nothing was written"
    )]
    Unsupported {
        index: usize,
        op: String,
        kind: &'static str,
        known: String,
    },
    #[error("the trace is not a valid program: op {index}: {message}")]
    Invalid { index: usize, message: String },
    #[error("the model cannot run the trace: {0}")]
    Model(String),
    #[error("cannot run the C compiler `{cc}`: {source}")]
    Spawn { cc: String, source: std::io::Error },
    #[error("`{command}` failed ({status}):\n{stderr}")]
    Compile {
        command: String,
        status: String,
        stderr: String,
    },
}

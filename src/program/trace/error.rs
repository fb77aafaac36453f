//! What a parse error says and where: [`TraceError`], and how user input is quoted back in a
//! message. Only the parser makes these.

/// Longest piece of user input quoted back in an error message, in characters.
const MAX_QUOTE_CHARS: usize = 48;

/// Why a trace does not parse, and where: `line` and `column` are 1-based, and `column` counts
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct TraceError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl TraceError {
    pub(super) fn new(line: usize, column: usize, message: impl Into<String>) -> TraceError {
        TraceError {
            line,
            column,
            message: message.into(),
        }
    }
}

/// User input as it appears in a message: quoted, escaped, and clipped if long.
pub(super) fn quoted(text: &str) -> String {
    format!("{:?}", clip(text))
}

/// At most [`MAX_QUOTE_CHARS`] characters of `text`, with `…` if some were cut.
pub(super) fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

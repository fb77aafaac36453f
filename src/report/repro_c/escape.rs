//! Text from outside the generator (a trace's comments, its file name) made safe to put into C
//! source: inside a block comment, or as a string literal. Whatever the text, the C it lands in
//! compiles with `-Werror` and means what the generator meant: no text can end a comment, open
//! one, splice lines, form a trigraph, or show the reader something other than what the compiler
//! sees. Pure functions over strings.

use std::fmt::Write as _;

/// One line of `text` for the inside of a C block comment (`/* ... */`).
///
/// The scheme keeps ordinary text as it is and is lossless: every backslash in the result begins
/// one of these escapes, and nothing else changes.
/// - `\u{HEX}` stands for the character U+HEX. It is used for a backslash itself (`\u{5c}`, so
///   that no line can end in a backslash, which would splice the next line into this one), for
///   control characters (the C0 set but tab, DEL, the C1 set), for the Unicode line and paragraph separators, and
///   for invisible formatting characters: the bidirectional controls (U+202A–U+202E,
///   U+2066–U+2069, the marks U+200E, U+200F, U+061C), zero-width characters, the soft hyphen and
///   the byte order mark. These could make an editor show text the compiler does not see (GCC
///   rejects an unpaired one under `-Werror=bidi-chars`).
/// - `\/` stands for a `/` right after a `*`, and `\*` for a `*` right after a `/`: no `*/` can
///   end the comment early, no `/*` can open a nested one (`-Werror=comment`).
/// - `\?` stands for a `?` right after a `?`: no trigraph can form (`??/` is a backslash, so a
///   line splice, under `-std=c11`).
///
/// Any other character (all other Unicode included) passes through. The caller keeps the result
/// apart from a neighbouring `/`, `*` or `?` (a space or a line break between them).
pub fn comment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev = None;
    for c in text.chars() {
        match (prev, c) {
            (_, '\\') => out.push_str("\\u{5c}"),
            (Some('*'), '/') => out.push_str("\\/"),
            (Some('/'), '*') => out.push_str("\\*"),
            (Some('?'), '?') => out.push_str("\\?"),
            (_, c) if hidden(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            (_, c) => out.push(c),
        }
        prev = Some(c);
    }
    out
}

/// `text` as a C string literal, quotes included: `"` and `\` escaped, a line feed as `\n`, a
/// carriage return or NUL as a space, every `?` as `\?` (no trigraph), and the characters
/// [`comment`] writes as `\u{...}` as octal escapes of their UTF-8 bytes. Other UTF-8 passes
/// through.
pub fn string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' | '\0' => out.push(' '),
            '?' => out.push_str("\\?"),
            c if hidden(c) || c == '\t' => {
                for b in c.encode_utf8(&mut [0; 4]).bytes() {
                    let _ = write!(out, "\\{b:03o}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Characters written as escapes: controls (but tab), line and paragraph separators, and the
/// invisible formatting characters (bidirectional controls and marks, zero-width characters,
/// soft hyphen, byte order mark, interlinear annotation marks).
fn hidden(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inverse of [`comment`], to show that the scheme loses nothing.
    fn uncomment(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('u') => {
                    assert_eq!(chars.next(), Some('{'));
                    let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    let n = u32::from_str_radix(&hex, 16).expect("hex");
                    out.push(char::from_u32(n).expect("a character"));
                }
                Some(c @ ('/' | '*' | '?')) => out.push(c),
                other => panic!("unknown escape {other:?} in {s:?}"),
            }
        }
        out
    }

    #[test]
    fn comments_cannot_end_open_splice_or_hide() {
        let cases = [
            ("x */ y", "x *\\/ y"),
            ("scenarios/*/x.trace", "scenarios/\\*\\/x.trace"),
            ("a /*/ b", "a /\\*\\/ b"),
            ("what??/", "what?\\?/"),
            ("???=", "?\\?\\?="),
            ("ends in \\", "ends in \\u{5c}"),
            ("C:\\dir", "C:\\u{5c}dir"),
            ("rlo \u{202e} lone", "rlo \\u{202e} lone"),
            (
                "esc \u{1b}[31m bell \u{7} del \u{7f} nel \u{85}",
                "esc \\u{1b}[31m bell \\u{7} del \\u{7f} nel \\u{85}",
            ),
            (
                "tab\tstays, ×, é, 🦀, \u{fffd}",
                "tab\tstays, ×, é, 🦀, \u{fffd}",
            ),
            (
                "zw\u{200b}j bom\u{feff} ls\u{2028}",
                "zw\\u{200b}j bom\\u{feff} ls\\u{2028}",
            ),
        ];
        for (text, want) in cases {
            let got = comment(text);
            assert_eq!(got, want, "{text:?}");
            assert_eq!(uncomment(&got), text);
        }
    }

    #[test]
    fn no_text_escapes_the_comment() {
        // Every string over a nasty alphabet, up to length 4: the result never holds `*/`, `/*`,
        // `??`, a backslash at its end, or a hidden character, and it decodes back.
        let alphabet = ['*', '/', '?', '\\', 'a', ' ', '\u{202e}', '\u{1}', '='];
        let mut level = vec![String::new()];
        let mut texts = level.clone();
        for _ in 0..4 {
            level = level
                .iter()
                .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                .collect();
            texts.extend(level.iter().cloned());
        }
        for text in &texts {
            let c = comment(text);
            assert!(
                !c.contains("*/") && !c.contains("/*") && !c.contains("??"),
                "{text:?} -> {c:?}"
            );
            assert!(!c.ends_with('\\'), "{text:?}");
            assert!(!c.chars().any(hidden), "{text:?}");
            assert_eq!(&uncomment(&c), text);
        }
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("a\"b\\c??/"), "\"a\\\"b\\\\c\\?\\?/\"");
        assert_eq!(string("x\ny\r\0"), "\"x\\ny  \"");
        assert_eq!(string("rlo \u{202e}!"), "\"rlo \\342\\200\\256!\"");
        assert_eq!(string("t\tz"), "\"t\\011z\"");
        assert_eq!(string("0x00×4096 …"), "\"0x00×4096 …\"");
    }
}

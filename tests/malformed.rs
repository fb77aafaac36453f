//! Malformed traces: `cowcheck model` and `cowcheck replay` both refuse them with exit status 2
//! and one error line naming the file, the line and the column at fault; never a panic.

mod common;

use common::*;

const HEADER: &str = "cowcheck-trace 1\n";

/// Runs `model` and `replay` on `bytes` and checks the error names `line L, column C` and says
/// `what`. Returns the error line of `model`.
fn assert_rejected(name: &str, bytes: &[u8], line: usize, column: usize, what: &str) -> String {
    let dir = tmpdir(name);
    let path = write_file(&dir, "bad.trace", bytes);
    let mut first = String::new();
    for sub in ["model", "replay"] {
        let run = cowcheck(&[sub, path.to_str().unwrap()]);
        let error = run.expect_usage_error();
        let at = format!("line {line}, column {column}:");
        assert!(
            error.contains(&at),
            "{name}: `cowcheck {sub}` should point at {at:?}, said {error:?}"
        );
        assert!(
            error.contains(what),
            "{name}: `cowcheck {sub}` should say {what:?}, said {error:?}"
        );
        assert!(
            error.contains("bad.trace"),
            "{name}: `cowcheck {sub}` should name the file, said {error:?}"
        );
        assert!(
            !run.stdout.contains("kernel and model agree") && !run.stdout.contains("=>"),
            "{name}: nothing may run or be predicted\n{}",
            run.dump()
        );
        if first.is_empty() {
            first = error;
        }
    }
    first
}

/// Input without the `cowcheck-trace ` prefix. The CLI either refuses it like any malformed
/// trace (exit 2, line and column), or, since fuzz artifacts became loadable, decodes it as a
/// fuzz artifact; then it must say so on stderr rather than run something silently. Never a
/// panic, and never a status other than 0, 1 or 2.
fn assert_refused_or_announced(name: &str, bytes: &[u8], line: usize, column: usize, what: &str) {
    let dir = tmpdir(name);
    let path = write_file(&dir, "bad.trace", bytes);
    for sub in ["model", "replay"] {
        let run = cowcheck(&[sub, path.to_str().unwrap()]);
        run.no_panic();
        match run.code() {
            2 => {
                let error = run.expect_usage_error();
                let at = format!("line {line}, column {column}:");
                assert!(
                    error.contains(&at),
                    "{name}: `cowcheck {sub}` should point at {at:?}, said {error:?}"
                );
                assert!(
                    error.contains(what),
                    "{name}: `cowcheck {sub}` should say {what:?}, said {error:?}"
                );
            }
            0 | 1 => assert!(
                run.stderr.contains("no trace header"),
                "{name}: `cowcheck {sub}` accepted input without a trace header and did not say so\n{}",
                run.dump()
            ),
            other => panic!(
                "{name}: `cowcheck {sub}` exit status {other}\n{}",
                run.dump()
            ),
        }
    }
}

fn trace(body: &str) -> Vec<u8> {
    format!("{HEADER}{body}").into_bytes()
}

#[test]
fn unknown_verb() {
    assert_rejected(
        "unknown-verb",
        &trace("p0 map m0 private 1\np0 frob m0 0\n"),
        3,
        4,
        "unknown verb \"frob\"",
    );
}

#[test]
fn unknown_process_handle() {
    // p3 was never forked.
    assert_rejected(
        "unknown-proc",
        &trace("p0 map m0 private 1\np3 read m0 0\n"),
        3,
        1,
        "unknown process p3",
    );
    // A fork's child handle that is already taken.
    assert_rejected("taken-proc", &trace("p0 fork p1\np0 fork p1\n"), 3, 9, "p1");
}

#[test]
fn unknown_mapping_handle() {
    assert_rejected(
        "unknown-map",
        &trace("p0 map m0 private 1\np0 read m5 0\n"),
        3,
        9,
        "unknown mapping m5",
    );
    // After a comment line, in a write: the line count includes the comment.
    assert_rejected(
        "unknown-map-write",
        &trace("p0 map m0 shared 2\n# m1 never mapped\np0 write m1 0 fill 0x01\n"),
        4,
        10,
        "unknown mapping m1",
    );
}

#[test]
fn page_out_of_range() {
    assert_rejected(
        "page-out-of-range",
        &trace("p0 map m0 private 2\np0 read m0 2\n"),
        3,
        12,
        "out of range",
    );
    assert_rejected(
        "range-out-of-range",
        &trace("p0 map m0 shared 2\np0 write m0 1..3 fill 0x01\n"),
        3,
        13,
        "out of range",
    );
    assert_rejected(
        "unmap-out-of-range",
        &trace("p0 map m0 private-zero 4\np0 unmap m0 4\n"),
        3,
        13,
        "out of range",
    );
    assert_rejected(
        "bytes-out-of-range",
        &trace("p0 map m0 private 1\np0 read m0 0[0..5000]\n"),
        3,
        12,
        "4096",
    );
    assert_rejected(
        "too-many-pages",
        &trace("p0 map m0 private 1025\n"),
        2,
        19,
        "1025",
    );
}

#[test]
fn truncated_line() {
    // A write without its pattern.
    assert_rejected(
        "truncated-write",
        &trace("p0 map m0 private 2\np0 write m0 0\n"),
        3,
        14,
        "truncated",
    );
    // A pattern without its byte.
    assert_rejected(
        "truncated-fill",
        &trace("p0 map m0 private 2\np0 write m0 0 fill\n"),
        3,
        19,
        "truncated",
    );
    // A map without its kind and size.
    assert_rejected("truncated-map", &trace("p0 map m0\n"), 2, 10, "truncated");
    // The file itself cut short in the middle of a token (no final line break).
    assert_rejected(
        "cut-file",
        &trace("p0 map m0 private 2\np0 write m0 0..2 fi"),
        3,
        18,
        "\"fi\"",
    );
}

#[test]
fn wrong_header() {
    assert_rejected(
        "version-2",
        b"cowcheck-trace 2\np0 map m0 private 1\n",
        1,
        16,
        "version 2",
    );
    assert_rejected(
        "version-x",
        b"cowcheck-trace x\np0 map m0 private 1\n",
        1,
        1,
        "header",
    );
    assert_rejected("trailing-space", b"cowcheck-trace 1 \n", 1, 1, "header");
    assert_rejected(
        "version-1-twice",
        b"cowcheck-trace 1 1\np0 map m0 private 1\n",
        1,
        1,
        "header",
    );
    // A second header line is an op line that does not start with a process handle.
    assert_rejected(
        "header-twice",
        b"cowcheck-trace 1\ncowcheck-trace 1\n",
        2,
        1,
        "process handle",
    );
}

/// No header at all. See [`assert_refused_or_announced`]: the trace parser refuses these on
/// line 1, column 1, but the CLI may take them for fuzz artifacts.
#[test]
fn missing_header() {
    assert_refused_or_announced(
        "bare-name",
        b"cowcheck-trace\np0 map m0 private 1\n",
        1,
        1,
        "header",
    );
    assert_refused_or_announced(
        "no-header",
        b"p0 map m0 private 1\np0 read m0 0\n",
        1,
        1,
        "header",
    );
    assert_refused_or_announced("hello", b"hello\n", 1, 1, "header");
    assert_refused_or_announced("empty", b"", 1, 1, "empty");
}

#[test]
fn binary_garbage_is_refused_at_the_first_bad_byte() {
    // Garbage that cannot start a UTF-8 character, followed by random bytes.
    let bad_starts = [0x80u8, 0xbf, 0xc0, 0xc1, 0xf5, 0xfe, 0xff];
    let mut rng = Rng::new(0xC0FFEE);
    for case in 0..12 {
        let len = 1 + rng.below(300) as usize;
        let mut garbage: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        garbage[0] = bad_starts[case % bad_starts.len()];
        // As the whole file (no header): refused on line 1, column 1, or taken for a fuzz
        // artifact, and said so.
        assert_refused_or_announced(&format!("garbage-{case}"), &garbage, 1, 1, "UTF-8");
        // After a valid header and op: refused on line 3, column 1.
        let mut after = trace("p0 map m0 private 1\n");
        after.extend_from_slice(&garbage);
        assert_rejected(&format!("garbage-after-{case}"), &after, 3, 1, "UTF-8");
        // In the middle of an op: the column is that of the bad byte.
        let mut inside = trace("p0 map m0 private 1\np0 read ");
        inside.extend_from_slice(&garbage);
        assert_rejected(&format!("garbage-inside-{case}"), &inside, 3, 9, "UTF-8");
    }
    // A NUL byte inside an otherwise valid op.
    assert_rejected(
        "nul",
        &trace("p0 map m0 private 1\np0 read m0 0\0\n"),
        3,
        13,
        "NUL",
    );
    // A JPEG header where the trace should be.
    assert_refused_or_announced(
        "jpeg",
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01",
        1,
        1,
        "UTF-8",
    );
    // Garbage right after the header's name, where the version belongs.
    let mut version = b"cowcheck-trace ".to_vec();
    version.extend_from_slice(b"\xff\xfe\n");
    assert_rejected("garbage-version", &version, 1, 16, "UTF-8");
}

/// Deterministic "token soup": lines made of words of the trace language in random order,
/// random numbers and stray bytes. Whatever `model` makes of them, it ends with 0 or with 2 and
/// one error line that names a line and a column, never with a panic.
#[test]
fn token_soup_never_panics() {
    let words = [
        "p0",
        "p1",
        "p2",
        "p255",
        "p256",
        "m0",
        "m1",
        "m31",
        "m32",
        "map",
        "write",
        "read",
        "fork",
        "exit",
        "unmap",
        "private",
        "shared",
        "private-zero",
        "shared-zero",
        "fill",
        "ramp",
        "0",
        "1",
        "2",
        "64",
        "65",
        "0..1",
        "0..2",
        "1..1",
        "2..1",
        "0[0..4]",
        "0[4..4]",
        "0[0..4097]",
        "0x00",
        "0xff",
        "0x100",
        "255",
        "256",
        "99999999999999999999",
        "#",
        "#x",
        "\t",
        "..",
        "[",
        "]",
        "é",
        "cowcheck-trace",
        "-1",
        "0x",
        "1[",
    ];
    let dir = tmpdir("token-soup");
    let mut rng = Rng::new(7);
    let mut refused = 0;
    for case in 0..40 {
        let mut text = if rng.below(8) == 0 {
            String::new()
        } else {
            HEADER.to_string()
        };
        for _ in 0..1 + rng.below(8) {
            for _ in 0..rng.below(7) {
                text.push_str(rng.pick(&words));
                text.push(if rng.below(10) == 0 { '\t' } else { ' ' });
            }
            text.push_str(if rng.below(6) == 0 { "\r\n" } else { "\n" });
        }
        let mut bytes = text.into_bytes();
        if rng.below(5) == 0 {
            let at = rng.below(bytes.len() as u64 + 1) as usize;
            bytes.insert(at, rng.byte());
        }
        let path = write_file(&dir, &format!("soup-{case}.trace"), &bytes);
        let run = cowcheck(&["model", path.to_str().unwrap()]);
        run.no_panic();
        match run.code() {
            0 => {}
            2 => {
                let error = run.expect_usage_error();
                assert!(
                    error.contains("line ") && error.contains(", column "),
                    "case {case}: the error should name a line and column: {error:?}\ninput: {:?}",
                    String::from_utf8_lossy(&bytes)
                );
                refused += 1;
            }
            other => panic!("case {case}: exit status {other}\n{}", run.dump()),
        }
    }
    assert!(
        refused > 20,
        "token soup should mostly be refused; only {refused} of 40 were"
    );
}

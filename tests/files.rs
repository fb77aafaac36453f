//! The files cowcheck reads and writes, treated as a tool run by root in a shared directory must
//! treat them: findings never written through a planted link or over another file, a finding
//! that cannot be saved still printed, input only from bounded regular files, and a corpus
//! directory read once whatever links it holds.

mod common;

use std::os::unix::fs::symlink;
use std::time::Duration;

use common::*;

/// Names are predictable (seed and program index), so an unprivileged user can plant links
/// where a campaign will save; none of them is followed, and nothing is overwritten.
#[test]
fn planted_links_are_never_written_through() {
    let dir = tmpdir("links");
    let victim = write_file(&dir, "victim", "precious\n");
    let out = dir.join("out");
    std::fs::create_dir(&out).expect("out dir");
    for index in 0..20 {
        for ext in ["trace", "c"] {
            symlink(
                &victim,
                out.join(format!("cowcheck-divergence-1-{index}.{ext}")),
            )
            .expect("plant a link");
        }
    }
    // A dangling link, which O_CREAT alone would create a file through.
    let dangling = dir.join("dangling-target");
    symlink(&dangling, out.join("cowcheck-divergence-1-0-1.trace")).expect("dangling link");
    let run = cowcheck(&[
        "run",
        "--cases",
        "20",
        "--seed",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--inject",
        "private-as-shared",
    ]);
    run.expect_code(1);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!dangling.exists(), "the dangling link was followed");
    let saved = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("saved to "))
        .unwrap_or_else(|| panic!("no saved path\n{}", run.dump()))
        .to_string();
    let meta = std::fs::symlink_metadata(&saved).expect("saved file");
    assert!(meta.file_type().is_file(), "{saved} is not a regular file");
    assert!(
        std::fs::read_to_string(&saved)
            .unwrap()
            .starts_with("cowcheck-trace 1\n")
    );

    // shrink's default FILE.shrunk.trace, and repro-c -o FILE, with links planted there.
    let trace = write_file(&dir, "private.trace", PRIVATE);
    symlink(&victim, dir.join("private.trace.shrunk.trace")).expect("plant");
    let run = cowcheck(&[
        "shrink",
        trace.to_str().unwrap(),
        "--inject",
        "private-as-shared",
    ]);
    run.expect_code(1);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(
        dir.join("private.trace.shrunk-1.trace").is_file(),
        "{}",
        run.dump()
    );
    let c = dir.join("repro.c");
    symlink(&victim, &c).expect("plant");
    let run = cowcheck(&[
        "repro-c",
        trace.to_str().unwrap(),
        "-o",
        c.to_str().unwrap(),
    ]);
    run.expect_code(0);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let meta = std::fs::symlink_metadata(&c).expect("written");
    assert!(
        meta.file_type().is_file(),
        "-o replaces the link with the file"
    );
}

/// `--out` where nothing can be created is refused before the campaign starts (not after it
/// found something); the same for shrink's output.
#[test]
fn an_unwritable_out_is_refused_at_start() {
    let started = std::time::Instant::now();
    let run = cowcheck(&[
        "run",
        "--time",
        "60",
        "--out",
        "/proc",
        "--inject",
        "private-as-shared",
    ]);
    let err = run.expect_usage_error();
    assert!(err.contains("--out /proc"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "refused late");
    assert!(!run.stdout.contains("DIVERGENCE"), "{}", run.dump());

    let dir = tmpdir("unwritable");
    let trace = write_file(&dir, "private.trace", PRIVATE);
    let run = cowcheck(&[
        "shrink",
        trace.to_str().unwrap(),
        "--out",
        "/proc/shrunk.trace",
        "--inject",
        "private-as-shared",
    ]);
    let err = run.expect_usage_error();
    assert!(err.contains("/proc"), "{err}");
}

/// Input is a regular file of bounded size: a device, a FIFO without a writer, a directory or
/// an oversized file is one clear error at once, never a read until memory runs out or for ever.
#[test]
fn only_bounded_regular_files_are_read() {
    let dir = tmpdir("input");
    let fifo = dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
    let big = dir.join("big.trace");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(17 << 20))
        .expect("a sparse 17 MiB file");
    let quick = Duration::from_secs(20);
    for (verb, path, says) in [
        ("model", "/dev/zero", "a device"),
        ("model", fifo.to_str().unwrap(), "a FIFO"),
        ("replay", fifo.to_str().unwrap(), "a FIFO"),
        ("decode", "/dev/zero", "a device"),
        ("model", dir.to_str().unwrap(), "a directory"),
        ("model", big.to_str().unwrap(), "16 MiB"),
    ] {
        let run = cowcheck_with(&[verb, path], quick);
        let err = run.expect_usage_error();
        assert!(err.contains(says), "{verb} {path}: {err}");
    }
}

/// A corpus with links to its own directories runs every scenario once, and ends.
#[test]
fn corpus_reads_each_directory_once() {
    let dir = tmpdir("corpus-loops");
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).expect("sub");
    write_file(
        &sub,
        "one.trace",
        "cowcheck-trace 1\n# source: docs/SEMANTICS.md B2\np0 map m0 private 1\np0 read m0 0 => 0x00\n",
    );
    symlink(".", sub.join("self")).expect("self link");
    symlink("..", sub.join("up")).expect("up link");
    symlink(&sub, dir.join("again")).expect("link to a sibling");
    let run = cowcheck_with(
        &["corpus", "--tap", dir.to_str().unwrap()],
        Duration::from_secs(60),
    );
    run.expect_code(0);
    assert!(run.stdout.contains("1..1\n"), "{}", run.dump());
}

/// A finding that cannot be saved (the filesystem fills up while writing it) is printed in full
/// before the error, and no partial file is left. Needs root to mount a tiny tmpfs; skips
/// otherwise.
#[test]
fn a_finding_that_cannot_be_saved_is_printed_and_no_partial_file_left() {
    let dir = tmpdir("full");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4k", "tmpfs"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("note: cannot mount a tmpfs here (not root?); skipping");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(dir.clone());
    // Fill the filesystem so that the probe at start still succeeds (an empty file) but a
    // trace does not fit.
    let _ = std::fs::write(dir.join("filler"), vec![0u8; 64 << 10]);
    let run = cowcheck(&[
        "run",
        "--cases",
        "20",
        "--seed",
        "1",
        "--jobs",
        "1",
        "--out",
        dir.to_str().unwrap(),
        "--inject",
        "private-as-shared",
    ]);
    run.expect_code(2);
    assert!(
        run.stdout
            .contains("the finding could not be saved; its trace in full:")
            && run.stdout.contains("cowcheck-trace 1\n"),
        "{}",
        run.dump()
    );
    assert!(
        run.stderr.contains("cannot save the finding"),
        "{}",
        run.dump()
    );
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "filler")
        .collect();
    assert!(left.is_empty(), "partial files left: {left:?}");
}

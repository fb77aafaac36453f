//! The files the front ends read and write, handled as a tool run by root in a shared
//! directory must handle them:
//!
//! - input (traces, fuzz artifacts) must be a regular file of at most `MAX_INPUT_BYTES`; it is
//!   opened without blocking (a FIFO with no writer, a device, `/dev/zero` are refused at once,
//!   never read until memory runs out or forever);
//! - output is created exclusively: never through a symbolic link, never over an existing file
//!   (`O_CREAT | O_EXCL | O_NOFOLLOW`); a name that exists gets a fresh one (`-1`, `-2`, ...);
//!   a file the user names with `-o` is written beside itself and renamed over it (a rename
//!   replaces a link, it never writes through one); a partial file is removed when writing fails.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The largest trace or artifact cowcheck reads: 16 MiB. The largest program the generator or
/// the fuzzer makes is a few KiB; a trace of `program::caps::MAX_OPS` ops is well under 1 MiB.
pub const MAX_INPUT_BYTES: u64 = 16 << 20;

/// Reads a trace or an artifact: a regular file, at most `MAX_INPUT_BYTES`.
pub fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    // O_NONBLOCK: opening a FIFO without a writer would otherwise wait for one for ever.
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "cannot read {shown}: it is {what}; cowcheck reads traces and artifacts from regular files only"
        ));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(format!(
            "cannot read {shown}: {} bytes is more than the {} MiB a trace or artifact may have",
            meta.len(),
            MAX_INPUT_BYTES >> 20
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(format!(
            "cannot read {shown}: it grew past the {} MiB a trace or artifact may have",
            MAX_INPUT_BYTES >> 20
        ));
    }
    Ok(bytes)
}

/// Creates `path` exclusively: fails if anything (a file, a link, a dangling link) is there.
fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Writes a new file `dir/stem.ext`, or `dir/stem-N.ext` with the first N that is free, and
/// returns its path. Nothing existing is followed or overwritten; a partial file is removed.
pub fn save_fresh(dir: &Path, stem: &str, ext: &str, contents: &[u8]) -> Result<PathBuf, String> {
    for n in 0..1000u32 {
        let name = if n == 0 {
            format!("{stem}.{ext}")
        } else {
            format!("{stem}-{n}.{ext}")
        };
        let path = dir.join(name);
        match create_new(&path) {
            Ok(file) => return write_all_or_remove(file, &path, contents).map(|()| path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            // ELOOP: a link is there (O_NOFOLLOW); take another name.
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
        }
    }
    Err(format!(
        "cannot create {stem}.{ext} in {}: 1000 names taken",
        dir.display()
    ))
}

/// Writes `path` as the user named it (`-o FILE`): into a fresh file beside it, then renamed
/// over it, so that a link at `path` is replaced, never written through.
pub fn save_as(path: &Path, contents: &[u8]) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| format!("cannot write {}: not a file name", path.display()))?;
    let stem = format!(".{}.cowcheck-tmp", name.to_string_lossy());
    let tmp = save_fresh(dir, &stem, &std::process::id().to_string(), contents)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

fn write_all_or_remove(mut file: File, path: &Path, contents: &[u8]) -> Result<(), String> {
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    written.map_err(|e| {
        drop(file);
        let _ = std::fs::remove_file(path);
        format!("cannot write {}: {e}", path.display())
    })
}

/// Checks, before a campaign starts, that findings can be saved in `dir`: it exists, is a
/// directory, and a file can be created and removed there.
pub fn check_output_dir(dir: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("--out {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("--out {}: not a directory", dir.display()));
    }
    let probe = save_fresh(
        dir,
        &format!(".cowcheck-probe-{}", std::process::id()),
        "tmp",
        b"",
    )
    .map_err(|e| {
        format!(
            "--out {}: findings could not be saved there ({e})",
            dir.display()
        )
    })?;
    std::fs::remove_file(&probe).map_err(|e| format!("--out {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cowcheck-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    }

    #[test]
    fn a_planted_link_is_neither_followed_nor_clobbered() {
        let d = scratch("link");
        let victim = d.join("victim");
        std::fs::write(&victim, "precious").expect("victim");
        std::os::unix::fs::symlink(&victim, d.join("out.trace")).expect("link");
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("out-1.trace")).expect("dangling");
        let path = save_fresh(&d, "out", "trace", b"finding").expect("saved");
        assert_eq!(path, d.join("out-2.trace"));
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "precious"
        );
        assert!(!d.join("nowhere").exists(), "a dangling link was followed");
        // -o FILE over a link replaces the link, not its target.
        save_as(&d.join("out.trace"), b"named").expect("saved as");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "precious"
        );
        assert_eq!(
            std::fs::read_to_string(d.join("out.trace")).expect("out"),
            "named"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let e = read_input(Path::new("/dev/zero")).expect_err("a device");
        assert!(e.contains("a device"), "{e}");
        let d = scratch("input");
        let fifo = d.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
        let e = read_input(&fifo).expect_err("a FIFO");
        assert!(e.contains("a FIFO"), "{e}");
        let e = read_input(&d).expect_err("a directory");
        assert!(e.contains("a directory"), "{e}");
        let big = d.join("big");
        let f = File::create(&big).expect("big");
        f.set_len(MAX_INPUT_BYTES + 1).expect("sparse");
        let e = read_input(&big).expect_err("too big");
        assert!(e.contains("16 MiB"), "{e}");
        std::fs::write(d.join("ok"), b"cowcheck-trace 1\n").expect("ok");
        assert_eq!(
            read_input(&d.join("ok")).expect("read"),
            b"cowcheck-trace 1\n"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}

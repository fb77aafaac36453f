//! Compiling a reproducer with the system's C compiler (`--build`). This module runs `cc` on a
//! file that is already written; it never generates C.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::ReproError;

/// The compiler flags a reproducer must pass cleanly with.
pub const CFLAGS: &[&str] = &[
    "-std=gnu11",
    "-O1",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pthread",
];

/// Compiles a reproducer with the system's C compiler (`$CC`, else `cc`) and [`CFLAGS`].
pub fn build(c_file: &Path, binary: &Path) -> Result<(), ReproError> {
    let cc = std::env::var("CC")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "cc".into());
    let mut words = cc.split_whitespace();
    let program = words.next().unwrap_or("cc").to_string();
    let mut cmd = Command::new(&program);
    cmd.args(words)
        .args(CFLAGS)
        .arg("-o")
        .arg(binary)
        .arg(c_file);
    let command = format!(
        "{cc} {} -o {} {}",
        CFLAGS.join(" "),
        binary.display(),
        c_file.display()
    );
    let output = cmd.output().map_err(|source| ReproError::Spawn {
        cc: cc.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(ReproError::Compile {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Where `--build` puts the binary for a C file: the same path without `.c`.
pub fn binary_path(c_file: &Path) -> PathBuf {
    if c_file.extension().is_some_and(|e| e == "c") {
        c_file.with_extension("")
    } else {
        let mut s = c_file.as_os_str().to_owned();
        s.push(".bin");
        PathBuf::from(s)
    }
}

//! Kernel images for `--kernel`: a bzImage/vmlinuz as given, or a Debian `linux-image-*.deb`
//! unpacked once (`dpkg-deb -x`) into the cache; the kernel's release (read from the bzImage
//! header, never guessed from a file name) and where its modules are; the cache directory.
//!
//! It only reads images and writes under the cache directory: it never boots anything.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Overrides the cache directory (default `$XDG_CACHE_HOME/cowcheck`, else
/// `$HOME/.cache/cowcheck`).
pub const CACHE_VAR: &str = "COWCHECK_CACHE_DIR";

/// The cache: `debs/` (what `scripts/fetch-kernel.sh` downloads), `kernels/` (unpacked
/// .debs), `initramfs/` (built initramfs images), `consoles/` (consoles of failed boots) and
/// the KVM verdicts (`accel-<boot id>`).
pub fn cache_dir() -> PathBuf {
    let nonempty = |v: &str| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = nonempty(CACHE_VAR) {
        return dir;
    }
    if let Some(dir) = nonempty("XDG_CACHE_HOME") {
        return dir.join("cowcheck");
    }
    if let Some(home) = nonempty("HOME") {
        return home.join(".cache").join("cowcheck");
    }
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    std::env::temp_dir().join(format!("cowcheck-cache-{uid}"))
}

/// The newest Debian kernel package in the cache's `debs/` (by file name, which for Debian
/// kernels orders by ABI number): what the tests boot when `COWCHECK_TEST_KERNEL` is not set.
pub fn cached_deb() -> Option<PathBuf> {
    cached_debs().pop()
}

/// Every Debian kernel image package in the cache's `debs/`, oldest first: `matrix`'s kernels
/// when none is given.
pub fn cached_debs() -> Vec<PathBuf> {
    let dir = cache_dir().join("debs");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut debs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            // The image itself, not the meta-package (linux-image-cloud-amd64_*.deb is empty).
            name.starts_with("linux-image-")
                && name.ends_with(".deb")
                && name.split('_').next().is_some_and(|n| {
                    n.chars()
                        .nth("linux-image-".len())
                        .is_some_and(|c| c.is_ascii_digit())
                })
                && !name.contains("-dbg")
        })
        .collect();
    debs.sort_by_key(|p| version_key(&p.file_name().unwrap_or_default().to_string_lossy()));
    debs
}

/// Numbers of a name in order, so that `6.1.0-57` sorts after `6.1.0-9`.
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(0))
        .collect()
}

/// A kernel ready to boot.
#[derive(Clone, Debug)]
pub struct Image {
    /// The bzImage to pass to `-kernel`.
    pub vmlinuz: PathBuf,
    /// The release the image says it is (`6.1.0-57-cloud-amd64`), if its header tells.
    pub release: Option<String>,
    /// `lib/modules/<release>`, if found beside the image (or in the package).
    pub modules: Option<PathBuf>,
}

/// Resolves `--kernel PATH`: a .deb is unpacked into the cache (once), anything else is taken
/// as a bzImage.
pub fn resolve(path: &Path) -> Result<Image, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("--kernel {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("--kernel {}: not a file", path.display()));
    }
    if path.extension().is_some_and(|e| e == "deb") {
        let root = unpack_deb(path, &meta)?;
        return from_package(path, &root);
    }
    let release = release_of(path)?;
    let modules = release.as_deref().and_then(|rel| {
        let dir = path.parent().unwrap_or(Path::new("."));
        [
            dir.join("../lib/modules").join(rel),
            dir.join("../usr/lib/modules").join(rel),
            PathBuf::from("/lib/modules").join(rel),
        ]
        .into_iter()
        .find(|d| d.join("modules.order").is_file() || d.join("kernel").is_dir())
    });
    Ok(Image {
        vmlinuz: path.to_path_buf(),
        release,
        modules,
    })
}

/// The image and modules of an unpacked kernel package.
fn from_package(deb: &Path, root: &Path) -> Result<Image, String> {
    let boot = root.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
        })
        .ok_or_else(|| {
            format!(
                "--kernel {}: the package has no boot/vmlinuz-*: is it a linux-image package?",
                deb.display()
            )
        })?;
    let release = release_of(&vmlinuz)?;
    let modules = release.as_deref().and_then(|rel| {
        [
            root.join("lib/modules").join(rel),
            root.join("usr/lib/modules").join(rel),
        ]
        .into_iter()
        .find(|d| d.is_dir())
    });
    Ok(Image {
        vmlinuz,
        release,
        modules,
    })
}

/// Unpacks a .deb into `kernels/<name>-<size>-<mtime>/` under the cache, once; concurrent
/// unpacks of the same package each write a directory of their own and the first rename wins.
fn unpack_deb(deb: &Path, meta: &std::fs::Metadata) -> Result<PathBuf, String> {
    use std::os::unix::fs::MetadataExt;
    let stem = deb.file_stem().unwrap_or_default().to_string_lossy();
    let kernels = cache_dir().join("kernels");
    let target = kernels.join(format!("{stem}-{}-{}", meta.len(), meta.mtime()));
    if target.join("boot").is_dir() {
        return Ok(target);
    }
    std::fs::create_dir_all(&kernels)
        .map_err(|e| format!("cannot create the cache {}: {e}", kernels.display()))?;
    let scratch = kernels.join(format!(".unpack-{}-{stem}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&scratch)
        .output()
        .map_err(|e| {
            format!(
                "cannot run dpkg-deb to unpack {} ({e}); install dpkg, or pass the vmlinuz itself",
                deb.display()
            )
        })?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(format!(
            "dpkg-deb -x {} failed ({}): {}",
            deb.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if std::fs::rename(&scratch, &target).is_err() {
        // Another run unpacked it first.
        let _ = std::fs::remove_dir_all(&scratch);
    }
    if target.join("boot").is_dir() {
        Ok(target)
    } else {
        Err(format!(
            "{} unpacked to {} without a boot/ directory: not a kernel image package",
            deb.display(),
            target.display()
        ))
    }
}

/// The release a bzImage names in its setup header (`kernel_version`, x86 boot protocol
/// 2.00+): the first word of the version string. `Ok(None)` when the file is not a bzImage
/// that says (a raw vmlinux, another architecture): qemu then judges it.
pub fn release_of(path: &Path) -> Result<Option<String>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("--kernel {}: {e}", path.display()))?;
    let mut header = [0u8; 0x210];
    if f.read_exact(&mut header).is_err() || &header[0x202..0x206] != b"HdrS" {
        return Ok(None);
    }
    let offset = u16::from_le_bytes([header[0x20e], header[0x20f]]) as u64 + 0x200;
    let mut text = [0u8; 128];
    if f.seek(SeekFrom::Start(offset)).is_err() || f.read_exact(&mut text).is_err() {
        return Ok(None);
    }
    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    let version = String::from_utf8_lossy(&text[..end]);
    Ok(version
        .split_whitespace()
        .next()
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(String::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_by_number() {
        let mut names = [
            "linux-image-6.1.0-9-cloud-amd64_6.1.27-1_amd64.deb",
            "linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb",
            "linux-image-6.1.0-10-cloud-amd64_6.1.38-1_amd64.deb",
        ];
        names.sort_by_key(|n| version_key(n));
        assert!(names[2].contains("-57-"));
    }

    #[test]
    fn a_file_that_is_not_a_bzimage_has_no_release() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(release_of(&exe).unwrap(), None);
        assert!(release_of(Path::new("/nonexistent/vmlinuz")).is_err());
    }
}

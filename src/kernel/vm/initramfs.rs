//! The guest's initramfs, written by our own code as a newc cpio archive:
//!
//! - `/init`: the cowcheck binary itself (it runs `__vm-init`, see `guest`);
//! - its ELF interpreter and the shared libraries `ldd` lists, at the paths `ldd` names;
//! - `/modules/NN-name.ko`: the kernel modules the guest needs for its virtio console port
//!   (`virtio_console`, `virtio_pci` and what they depend on, by their `.modinfo` `depends=`),
//!   in load order, unless the kernel has them built in;
//! - `/dev/console` (the kernel opens it for init's stdio before anything is mounted) and the
//!   empty mount points `/proc`, `/sys`, `/dev`, `/tmp`.
//!
//! Built once per set of inputs and kept in the cache (`initramfs/<key>.cpio`, the key a hash
//! of every input's path, size and modification time). It never boots anything.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::image::{Image, cache_dir};

/// Bumped whenever the archive's layout changes, so that old cached archives are not reused.
const FORMAT: u32 = 1;

/// The modules the guest needs (by module name); what they depend on comes along.
const WANTED: &[&str] = &["virtio_pci", "virtio_console"];

/// How many built archives the cache keeps.
const KEEP: usize = 6;

/// A module to load in the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub path: PathBuf,
}

/// Builds (or finds in the cache) the initramfs for `exe` booted on `image`.
pub fn build(exe: &Path, image: &Image) -> Result<PathBuf, String> {
    let libs = shared_libraries(exe)?;
    let modules = match &image.modules {
        Some(dir) => modules_to_load(dir)?,
        None => Vec::new(),
    };
    let mut inputs: Vec<&Path> = vec![exe];
    inputs.extend(libs.iter().map(PathBuf::as_path));
    inputs.extend(modules.iter().map(|m| m.path.as_path()));
    let key = key_of(&inputs);
    let dir = cache_dir().join("initramfs");
    let path = dir.join(format!("{key:016x}.cpio"));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create the cache {}: {e}", dir.display()))?;
    let scratch = dir.join(format!(".{key:016x}.{}", std::process::id()));
    write_archive(&scratch, exe, &libs, &modules).map_err(|e| {
        let _ = std::fs::remove_file(&scratch);
        format!("cannot write the initramfs {}: {e}", scratch.display())
    })?;
    std::fs::rename(&scratch, &path)
        .map_err(|e| format!("cannot move the initramfs to {}: {e}", path.display()))?;
    prune(&dir);
    Ok(path)
}

fn key_of(inputs: &[&Path]) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut h = std::hash::DefaultHasher::new();
    FORMAT.hash(&mut h);
    for p in inputs {
        p.hash(&mut h);
        if let Ok(m) = std::fs::metadata(p) {
            (m.len(), m.mtime(), m.mtime_nsec(), m.ino()).hash(&mut h);
        }
    }
    h.finish()
}

/// Keeps the `KEEP` newest archives.
fn prune(dir: &Path) {
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cpio"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort();
    let excess = found.len().saturating_sub(KEEP);
    for (_, p) in found.into_iter().take(excess) {
        let _ = std::fs::remove_file(p);
    }
}

fn write_archive(
    path: &Path,
    exe: &Path,
    libs: &[PathBuf],
    modules: &[Module],
) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut cpio = Cpio::new(std::io::BufWriter::new(file));
    for d in ["dev", "proc", "sys", "tmp", "modules"] {
        cpio.dir(d)?;
    }
    cpio.char_device("dev/console", 0o600, 5, 1)?;
    cpio.file("init", 0o755, &std::fs::read(exe)?)?;
    for lib in libs {
        let inside = lib.to_string_lossy();
        cpio.file(inside.trim_start_matches('/'), 0o755, &std::fs::read(lib)?)?;
    }
    for (i, m) in modules.iter().enumerate() {
        let bytes = module_bytes(&m.path).map_err(std::io::Error::other)?;
        cpio.file(&format!("modules/{i:02}-{}.ko", m.name), 0o644, &bytes)?;
    }
    cpio.finish()
}

/// The interpreter and libraries of a dynamic executable, as `ldd` lists them (none for a
/// static one).
pub fn shared_libraries(exe: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd").arg(exe).output().map_err(|e| {
        format!(
            "cannot run ldd to list the libraries of {} ({e})",
            exe.display()
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
        if all.contains("not a dynamic executable") || all.contains("statically linked") {
            return Ok(Vec::new());
        }
        return Err(format!("ldd {} failed: {}", exe.display(), all.trim()));
    }
    parse_ldd(&text).map_err(|e| format!("ldd {}: {e}", exe.display()))
}

fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.contains("statically linked") {
            continue;
        }
        let path = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    return Err(format!("{} not found", name.trim()));
                }
                target.split(" (").next().unwrap_or("").trim()
            }
            None => line.split(" (").next().unwrap_or("").trim(),
        };
        // The vDSO (no path) comes from the kernel.
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// The modules to load from `dir` (`lib/modules/<release>`), dependencies first: none of
/// the wanted ones that `modules.builtin` lists.
pub fn modules_to_load(dir: &Path) -> Result<Vec<Module>, String> {
    let builtin: BTreeSet<String> = std::fs::read_to_string(dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| module_name(Path::new(l)))
        .collect();
    let mut files = BTreeMap::new();
    collect_modules(&dir.join("kernel"), &mut files);
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for want in WANTED {
        add_with_deps(want, &builtin, &files, &mut seen, &mut order)?;
    }
    Ok(order)
}

fn add_with_deps(
    name: &str,
    builtin: &BTreeSet<String>,
    files: &BTreeMap<String, PathBuf>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<Module>,
) -> Result<(), String> {
    if builtin.contains(name) || !seen.insert(name.to_string()) {
        return Ok(());
    }
    let Some(path) = files.get(name) else {
        return Err(format!(
            "the guest kernel needs the module {name} (its virtio console port), and it is neither built in (modules.builtin) nor under its modules directory"
        ));
    };
    let bytes = module_bytes(path)?;
    for dep in depends(&bytes) {
        add_with_deps(&dep, builtin, files, seen, order)?;
    }
    order.push(Module {
        name: name.to_string(),
        path: path.clone(),
    });
    Ok(())
}

/// `virtio_console` for `.../virtio_console.ko` (or `.ko.xz`); dashes read as underscores, as
/// the kernel reads module names.
fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file.split(".ko").next()?;
    (file.contains(".ko") && !stem.is_empty()).then(|| stem.replace('-', "_"))
}

fn collect_modules(dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_modules(&path, out);
        } else if let Some(name) = module_name(&path) {
            out.entry(name).or_insert(path);
        }
    }
}

/// A module file's bytes, decompressed when it is `.ko.xz`, `.ko.zst` or `.ko.gz` (with the
/// system's own decompressor), so that any kernel can load it.
fn module_bytes(path: &Path) -> Result<Vec<u8>, String> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let tool = match ext {
        "xz" => "xz",
        "zst" => "zstd",
        "gz" => "gzip",
        _ => return std::fs::read(path).map_err(|e| format!("{}: {e}", path.display())),
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run {tool} to decompress {} ({e})", path.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{tool} -dc {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// The `depends=` list of a module's `.modinfo` (NUL-separated `key=value` strings).
fn depends(module: &[u8]) -> Vec<String> {
    let key = b"depends=";
    let mut i = 0;
    while let Some(at) = find(&module[i..], key) {
        let start = i + at;
        if start == 0 || module[start - 1] == 0 {
            let value = &module[start + key.len()..];
            let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
            return String::from_utf8_lossy(&value[..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.replace('-', "_"))
                .collect();
        }
        i = start + 1;
    }
    Vec::new()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A newc ("070701") cpio writer: every entry owned by root, modification time 0.
struct Cpio<W: Write> {
    out: W,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl<W: Write> Cpio<W> {
    fn new(out: W) -> Cpio<W> {
        Cpio {
            out,
            ino: 1,
            dirs: BTreeSet::new(),
        }
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> std::io::Result<()> {
        self.ino += 1;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let header = format!(
            "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(header.len() + name.len() + 1)?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    fn pad(&mut self, len: usize) -> std::io::Result<()> {
        let zeros = [0u8; 3];
        self.out.write_all(&zeros[..(4 - len % 4) % 4])
    }

    fn parents(&mut self, name: &str) -> std::io::Result<()> {
        let mut prefix = String::new();
        let parts: Vec<&str> = name.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if self.dirs.insert(prefix.clone()) {
                let p = prefix.clone();
                self.entry(&p, 0o040755, (0, 0), &[])?;
            }
        }
        Ok(())
    }

    fn dir(&mut self, name: &str) -> std::io::Result<()> {
        self.parents(name)?;
        if self.dirs.insert(name.to_string()) {
            let mode = if name == "tmp" { 0o041777 } else { 0o040755 };
            self.entry(name, mode, (0, 0), &[])?;
        }
        Ok(())
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> std::io::Result<()> {
        self.parents(name)?;
        self.entry(name, 0o100000 | perm, (0, 0), data)
    }

    fn char_device(
        &mut self,
        name: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> std::io::Result<()> {
        self.parents(name)?;
        self.entry(name, 0o020000 | perm, (major, minor), &[])
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_read() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }

    #[test]
    fn modinfo_depends_are_read() {
        let modinfo =
            b"\0license=GPL\0depends=virtio,virtio_ring\0retpoline=Y\0name=virtio_console\0";
        assert_eq!(depends(modinfo), vec!["virtio", "virtio_ring"]);
        assert!(depends(b"\0license=GPL\0depends=\0").is_empty());
        assert_eq!(
            module_name(Path::new("kernel/drivers/virtio/virtio-pci.ko.xz")).as_deref(),
            Some("virtio_pci")
        );
    }

    #[test]
    fn newc_entries_are_aligned() {
        let mut buf = Vec::new();
        let mut cpio = Cpio::new(&mut buf);
        cpio.file("a/b/c", 0o644, b"hello").unwrap();
        cpio.char_device("dev/console", 0o600, 5, 1).unwrap();
        cpio.finish().unwrap();
        assert_eq!(buf.len() % 4, 0);
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("070701"));
        for name in [
            "a\0",
            "a/b\0",
            "a/b/c\0",
            "dev\0",
            "dev/console\0",
            "TRAILER!!!\0",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }
}

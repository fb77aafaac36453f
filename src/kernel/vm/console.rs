//! The guest's console, as qemu writes it to a file (the guest's first serial port): its tail
//! for error messages, and the kernel's own words for trouble (a panic, an oops, a BUG or a
//! WARNING), looked for in what was written since the last look.
//!
//! It only reads the file.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What the guest kernel said went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trouble {
    /// `Kernel panic - not syncing: ...`
    Panic(String),
    /// An oops, a BUG, a general protection fault: the kernel killed the task it was in.
    Oops(String),
    /// A `WARNING:` with a backtrace: the kernel went on.
    Warning(String),
}

impl Trouble {
    /// The console line that showed it.
    pub fn line(&self) -> &str {
        match self {
            Trouble::Panic(l) | Trouble::Oops(l) | Trouble::Warning(l) => l,
        }
    }

    /// What the kernel did, for messages ("the guest kernel hit a panic while booting").
    pub fn verb(&self) -> &'static str {
        match self {
            Trouble::Panic(_) => "hit a panic",
            Trouble::Oops(_) => "hit an oops",
            Trouble::Warning(_) => "hit a WARNING",
        }
    }
}

/// The worst trouble a piece of console text shows (a panic over an oops over a warning).
pub fn trouble_in(text: &str) -> Option<Trouble> {
    let mut worst: Option<Trouble> = None;
    for line in text.lines() {
        let found = if line.contains("Kernel panic - not syncing") {
            Trouble::Panic(line.trim().to_string())
        } else if ["BUG:", "Oops:", "general protection fault", "kernel BUG at"]
            .iter()
            .any(|m| line.contains(m))
        {
            Trouble::Oops(line.trim().to_string())
        } else if line.contains("WARNING:") && line.contains(" at ") {
            Trouble::Warning(line.trim().to_string())
        } else {
            continue;
        };
        let rank = |t: &Trouble| match t {
            Trouble::Panic(_) => 3,
            Trouble::Oops(_) => 2,
            Trouble::Warning(_) => 1,
        };
        if worst.as_ref().is_none_or(|w| rank(&found) > rank(w)) {
            worst = Some(found);
        }
    }
    worst
}

/// The guest console file, and how far it has been looked through.
#[derive(Debug)]
pub struct Console {
    pub path: PathBuf,
    seen: u64,
}

impl Console {
    pub fn new(path: PathBuf) -> Console {
        Console { path, seen: 0 }
    }

    /// How many bytes the guest has written so far.
    pub fn written(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Marks everything written so far as looked at (boot messages are not a program's).
    pub fn skip_to_end(&mut self) {
        self.seen = self.written();
    }

    /// Trouble in what the guest wrote since the last look. Cheap when nothing was written.
    pub fn new_trouble(&mut self) -> Option<Trouble> {
        let len = self.written();
        if len <= self.seen {
            return None;
        }
        let text = read_range(&self.path, self.seen, len);
        // A line cut by the end of the range is looked at again next time.
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        self.seen += complete as u64;
        trouble_in(&text[..complete])
    }

    /// The last `lines` lines, or, when trouble shows in the last 400, from a few lines
    /// before where it starts (an oops's registers and backtrace are what matter).
    pub fn tail(&self, lines: usize) -> String {
        tail_of(&self.path, lines)
    }
}

fn read_range(path: &Path, from: u64, to: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(from)).is_ok()
    {
        let _ = f.take(to.saturating_sub(from)).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// See `Console::tail`.
pub fn tail_of(path: &Path, lines: usize) -> String {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let text = read_range(path, len.saturating_sub(256 * 1024), len);
    let all: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let recent = &all[all.len().saturating_sub(400)..];
    let start = recent
        .iter()
        .position(|l| trouble_in(l).is_some())
        .map(|i| i.saturating_sub(3))
        .filter(|&i| recent.len() - i <= lines * 2)
        .unwrap_or(recent.len().saturating_sub(lines));
    recent[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_trouble_is_found() {
        let text = "[    1.0] Run /init as init process\n\
                    [    2.0] WARNING: CPU: 0 PID: 1 at mm/memory.c:100 f+0x1/0x2\n\
                    [    3.0] BUG: unable to handle page fault for address: 0000000000000000\n\
                    [    3.1] Oops: 0000 [#1] PREEMPT SMP NOPTI\n";
        assert!(matches!(trouble_in(text), Some(Trouble::Oops(l)) if l.contains("BUG:")));
        let panic = "[    1.4] Kernel panic - not syncing: VFS: Unable to mount root fs\n";
        assert!(matches!(trouble_in(panic), Some(Trouble::Panic(_))));
        assert_eq!(trouble_in("[    0.0] Linux version 6.1.0\n"), None);
    }

    #[test]
    fn new_trouble_reads_each_line_once() {
        let dir = std::env::temp_dir().join(format!("cowcheck-console-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("console.log");
        std::fs::write(&path, "boot\nKernel panic - not syncing: x\n").unwrap();
        let mut c = Console::new(path.clone());
        c.skip_to_end();
        assert_eq!(c.new_trouble(), None);
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"[ 9.0] Oops: 0002 [#1]\n[ 9.1] half a li")
            .unwrap();
        assert!(matches!(c.new_trouble(), Some(Trouble::Oops(_))));
        assert_eq!(c.new_trouble(), None);
        assert!(c.tail(10).contains("Oops"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

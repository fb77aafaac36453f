//! The ledger of live pool shares (docs/SEMANTICS.md L7): a small text file,
//! `/run/cowcheck/hugetlb-pool`, with one line per executor that holds a share of
//! `vm.nr_hugepages`: its pid, its start time (field 22 of `/proc/PID/stat`, clock ticks after
//! boot, so that a reused pid is not taken for the executor) and the huge pages it added.
//! It is read and rewritten only under the pool's lock (the `flock` on the sysctl), so that the
//! pool and the ledger change together.
//!
//! A share whose executor is dead (no such process, a zombie, or another process under its
//! pid) is stale: whoever takes the lock next for a start or a sweep gives it back. Whichever
//! way an executor ends, and whoever of the executor, its guardian or a sweeper gets there first,
//! its share goes back once: the line is removed in the same locked step that lowers the pool.
//!
//! No allocation: the guardian gives a share back from its forked child. Buffers live on the
//! stack; a ledger longer than [`CAP`] bytes (about 300 live executors) takes no new share.

use std::ffi::CStr;

const DIR: &CStr = c"/run/cowcheck";
const FILE: &CStr = c"/run/cowcheck/hugetlb-pool";
const HEADER: &[u8] = b"# cowcheck hugetlb pool shares (docs/SEMANTICS.md L7): executor pid, its start time (/proc/PID/stat field 22), huge pages it added to vm.nr_hugepages\n";

/// The ledger's largest size in bytes.
pub(super) const CAP: usize = 16384;

/// The most shares one locked step gives back (`Ledger::remove_stale`).
const MAX_PICKED: usize = 1024;

/// An executor, as the ledger names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`; 0 where it could not be read (qemu-user fakes
    /// `/proc/self/stat`): the pid alone then names the executor.
    pub start: u64,
}

impl Key {
    /// This process.
    pub fn own() -> Key {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let start = match stat_of(c"/proc/self/stat") {
            Stat::Running { start } => start,
            _ => 0,
        };
        Key { pid, start }
    }

    /// Whether the executor this key names is still running (a zombie is not).
    pub fn alive(&self) -> bool {
        let mut path = [0u8; 32];
        let mut w = Writer::new(&mut path);
        w.put(b"/proc/");
        w.num(self.pid as u64);
        w.put(b"/stat\0");
        if w.overflow {
            return true;
        }
        let Ok(path) = CStr::from_bytes_until_nul(&path) else {
            return true;
        };
        match stat_of(path) {
            Stat::Gone => false,
            Stat::Unknown => true,
            Stat::Running { start } => self.start == 0 || start == 0 || start == self.start,
        }
    }
}

enum Stat {
    /// No such process, or a zombie.
    Gone,
    /// Could not tell: counts as alive (a share is never given back on a doubt).
    Unknown,
    Running {
        start: u64,
    },
}

/// Reads the state and start time of `/proc/PID/stat` (or `/proc/self/stat`).
fn stat_of(path: &CStr) -> Stat {
    let mut buf = [0u8; 1024];
    // SAFETY: open of a NUL-terminated path; read into our stack buffer; close of our fd.
    let n = unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            let e = *libc::__errno_location();
            return if e == libc::ENOENT || e == libc::ESRCH {
                Stat::Gone
            } else {
                Stat::Unknown
            };
        }
        let n = libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        // A process that died between the open and the read reads as nothing (ESRCH).
        return if n < 0 && errno() == libc::ESRCH {
            Stat::Gone
        } else {
            Stat::Unknown
        };
    }
    let text = &buf[..n as usize];
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let Some(close) = text.iter().rposition(|&b| b == b')') else {
        return Stat::Unknown;
    };
    let mut fields = text[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty());
    // Field 3 is the state; field 22 the start time, the 20th after the ')'.
    let state = fields.next().and_then(|f| f.first().copied());
    if matches!(state, Some(b'Z') | Some(b'X') | Some(b'x')) {
        return Stat::Gone;
    }
    match fields.nth(18).and_then(parse) {
        Some(start) => Stat::Running { start },
        None => Stat::Unknown,
    }
}

fn errno() -> i32 {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

fn parse(digits: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    if digits.is_empty() {
        return None;
    }
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

/// Appends text and numbers to a byte buffer, and notes if it ran out of room.
struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> Writer<'a> {
    fn new(buf: &'a mut [u8]) -> Writer<'a> {
        Writer {
            buf,
            len: 0,
            overflow: false,
        }
    }

    fn put(&mut self, s: &[u8]) {
        if self.len + s.len() > self.buf.len() {
            self.overflow = true;
            return;
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    fn num(&mut self, v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut x = v;
        loop {
            i -= 1;
            digits[i] = b'0' + (x % 10) as u8;
            x /= 10;
            if x == 0 {
                break;
            }
        }
        self.put(&digits[i..]);
    }
}

/// One line of the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    pub key: Key,
    pub pages: i32,
}

fn parse_line(line: &[u8]) -> Option<Share> {
    let mut f = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let pid = parse(f.next()?)?;
    let start = parse(f.next()?)?;
    let pages = parse(f.next()?)?;
    if f.next().is_some() || pid == 0 || pid > i32::MAX as u64 || pages > i32::MAX as u64 {
        return None;
    }
    Some(Share {
        key: Key {
            pid: pid as i32,
            start,
        },
        pages: pages as i32,
    })
}

/// The shares of a ledger's text (lines that are not shares are skipped).
pub fn shares(text: &[u8]) -> impl Iterator<Item = Share> + '_ {
    text.split(|&b| b == b'\n').filter_map(parse_line)
}

/// The ledger, open and read, for one locked step: change it with [`Ledger::remove`] and
/// [`Ledger::put`], then [`Ledger::commit`].
pub(super) struct Ledger {
    fd: i32,
    buf: [u8; CAP],
    len: usize,
}

impl Ledger {
    /// Opens (with `create`: creating `/run/cowcheck` and the file as needed) and reads the
    /// ledger. `None`: it cannot be had.
    pub(super) fn open(create: bool) -> Option<Ledger> {
        // SAFETY: mkdir and open of constant paths; read into the ledger's buffer; close of the
        // descriptor we opened on failure.
        unsafe {
            let mut flags = libc::O_RDWR | libc::O_CLOEXEC;
            if create {
                libc::mkdir(DIR.as_ptr(), 0o755);
                flags |= libc::O_CREAT;
            }
            let fd = libc::open(FILE.as_ptr(), flags, 0o644 as libc::c_uint);
            if fd < 0 {
                return None;
            }
            let mut ledger = Ledger {
                fd,
                buf: [0u8; CAP],
                len: 0,
            };
            loop {
                let n = libc::pread(
                    fd,
                    ledger.buf[ledger.len..].as_mut_ptr() as *mut libc::c_void,
                    CAP - ledger.len,
                    ledger.len as libc::off_t,
                );
                if n < 0 && errno() == libc::EINTR {
                    continue;
                }
                if n < 0 {
                    return None;
                }
                if n == 0 || ledger.len + n as usize == CAP {
                    ledger.len += n as usize;
                    break;
                }
                ledger.len += n as usize;
            }
            Some(ledger)
        }
    }

    /// The shares it holds.
    #[cfg(test)]
    fn shares(&self) -> impl Iterator<Item = Share> + '_ {
        shares(&self.buf[..self.len])
    }

    /// Rewrites the text with the shares `keep` keeps, and `add` last (replacing any share of
    /// the same key). False when it would not fit.
    pub(super) fn rewrite(&mut self, keep: impl Fn(&Share) -> bool, add: Option<Share>) -> bool {
        let mut out = [0u8; CAP];
        let mut w = Writer::new(&mut out);
        w.put(HEADER);
        for s in shares(&self.buf[..self.len]) {
            if keep(&s) && add.is_none_or(|a| a.key != s.key) {
                line(&mut w, &s);
            }
        }
        if let Some(a) = add {
            line(&mut w, &a);
        }
        if w.overflow {
            return false;
        }
        let len = w.len;
        self.buf[..len].copy_from_slice(&out[..len]);
        self.len = len;
        true
    }

    /// Removes the lines of the shares `stale` picks, asking it once per line, and returns
    /// their pages; `None` when it picks none. Once: whether an executor is alive changes while
    /// we look, and a share whose executor died between a look that counted its pages and one
    /// that removed its line would be removed without its pages being given back (the pool
    /// leak of parallel scenario runs, 8 pages every few runs of `cargo test --test
    /// scenarios`, found with a trace of every locked step: docs/SEMANTICS.md L7). At most
    /// [`MAX_PICKED`] shares a step; the rest stay for the next one.
    pub(super) fn remove_stale(&mut self, stale: impl Fn(&Share) -> bool) -> Option<i64> {
        let mut picked = [Key { pid: 0, start: 0 }; MAX_PICKED];
        let mut n = 0usize;
        let mut pages: i64 = 0;
        for s in shares(&self.buf[..self.len]) {
            if n < MAX_PICKED && stale(&s) {
                picked[n] = s.key;
                n += 1;
                pages += s.pages.max(0) as i64;
            }
        }
        if n == 0 {
            return None;
        }
        let picked = &picked[..n];
        if !self.rewrite(|s| !picked.contains(&s.key), None) {
            return None;
        }
        Some(pages)
    }

    /// Writes the text back. False if the file could not be written whole.
    pub(super) fn commit(&self) -> bool {
        // SAFETY: writes our buffer to our descriptor and truncates it to that length.
        unsafe {
            let n = libc::pwrite(
                self.fd,
                self.buf.as_ptr() as *const libc::c_void,
                self.len,
                0,
            );
            n == self.len as isize && libc::ftruncate(self.fd, self.len as libc::off_t) == 0
        }
    }
}

fn line(w: &mut Writer, s: &Share) {
    w.num(s.key.pid as u64);
    w.put(b" ");
    w.num(s.key.start);
    w.put(b" ");
    w.num(s.pages.max(0) as u64);
    w.put(b"\n");
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if self.fd >= 0 {
            // SAFETY: closing our own descriptor.
            unsafe { libc::close(self.fd) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_junk_is_skipped() {
        let text = b"# header\n12 345 8\nnot a line\n7 0 3\n9 1 2 extra\n";
        let got: Vec<Share> = shares(text).collect();
        assert_eq!(
            got,
            vec![
                Share {
                    key: Key {
                        pid: 12,
                        start: 345
                    },
                    pages: 8
                },
                Share {
                    key: Key { pid: 7, start: 0 },
                    pages: 3
                },
            ]
        );
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        line(&mut w, &got[0]);
        let len = w.len;
        assert_eq!(&buf[..len], b"12 345 8\n");
    }

    /// A ledger of `text`, with no file behind it.
    fn ledger_of(text: &[u8]) -> Ledger {
        let mut ledger = Ledger {
            fd: -1,
            buf: [0u8; CAP],
            len: text.len(),
        };
        ledger.buf[..text.len()].copy_from_slice(text);
        ledger
    }

    /// An executor that dies while a sweep looks (alive at the sweep's first look at its line,
    /// dead at any later one) keeps its line, and its pages, for the next sweep: the lines
    /// removed are exactly the shares counted. Asking `stale` again at the rewrite (as the
    /// sweep did before) removed such a line without its pages: the pool leak.
    #[test]
    fn a_share_is_removed_exactly_when_its_pages_are_counted() {
        use std::cell::Cell;
        let mut ledger = ledger_of(b"# header\n11 1 8\n12 2 8\n13 3 5\n");
        let asked = Cell::new(0u32);
        // 11 is dead; 12 dies right after its first look; 13 lives.
        let stale = |s: &Share| match s.key.pid {
            11 => true,
            12 => {
                asked.set(asked.get() + 1);
                asked.get() > 1
            }
            _ => false,
        };
        assert_eq!(ledger.remove_stale(stale), Some(8));
        let left: Vec<i32> = ledger.shares().map(|s| s.key.pid).collect();
        assert_eq!(left, vec![12, 13], "12's line stays with its pages");
        assert_eq!(asked.get(), 1, "each line is asked once");
        // The next sweep finds 12 dead and gives back its pages with its line.
        assert_eq!(ledger.remove_stale(stale), Some(8));
        let left: Vec<i32> = ledger.shares().map(|s| s.key.pid).collect();
        assert_eq!(left, vec![13]);
        assert_eq!(
            ledger.remove_stale(stale),
            None,
            "nothing stale: nothing removed"
        );
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = Key::own();
        assert!(me.start > 0, "start time of this process");
        assert!(me.alive());
        let reused = Key {
            pid: me.pid,
            start: me.start + 1,
        };
        assert!(!reused.alive());
        // pid_max is at most 2^22: this pid is never used.
        assert!(
            !Key {
                pid: i32::MAX - 1,
                start: 1
            }
            .alive()
        );
    }
}

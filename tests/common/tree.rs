//! The process tree of a `cowcheck` run as a test sees it from outside: every process the test
//! starts carries `COWCHECK_TEST_TAG=<unique>` in its environment, which `fork` and `exec` pass
//! down the whole tree, so a test finds exactly its own descendants in /proc (and never touches
//! processes of other tests running at the same time). Whatever is still found when a `Tree`
//! is dropped is SIGKILLed by pid, so a failing test cleans up after itself too.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, tmpdir};

pub const TAG_VAR: &str = "COWCHECK_TEST_TAG";

/// A live process of the test's tree.
#[derive(Debug)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    pub cmdline: String,
    pub exe: String,
}

pub fn read_proc(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: read after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Some(Proc {
        pid,
        ppid,
        state,
        cmdline,
        exe,
    })
}

/// The processes that carry `tag` in their environment, zombies aside (a zombie has ended; its
/// environment reads empty).
pub fn tagged(tag: &str) -> Vec<Proc> {
    let needle = format!("{TAG_VAR}={tag}");
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        panic!("cannot read /proc");
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
        })
        .filter_map(read_proc)
        .filter(|p| p.state != 'Z')
        .collect()
}

/// Polls until no tagged process is left, for up to `limit`; returns the survivors.
pub fn wait_until_gone(tag: &str, limit: Duration) -> Vec<Proc> {
    let start = Instant::now();
    loop {
        let left = tagged(tag);
        if left.is_empty() || start.elapsed() > limit {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Owns the started `cowcheck` and, on drop, kills it and any tagged process left, by pid.
pub struct Tree {
    pub tag: String,
    pub child: Child,
}

impl Tree {
    pub fn start(name: &str, args: &[&str]) -> Tree {
        Tree::start_with_env(name, args, &[])
    }

    /// `start`, with more environment variables for the whole tree.
    pub fn start_with_env(name: &str, args: &[&str], env: &[(&str, &std::path::Path)]) -> Tree {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tag = format!("{name}-{}-{nanos}", std::process::id());
        // Its own process group, as a shell gives a foreground job: the test signals the group
        // the way Ctrl-C does.
        let child = Command::new(BIN)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .env(TAG_VAR, &tag)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cowcheck");
        Tree { tag, child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the cowcheck process to end, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Fails the test if any process of the tree is still there after ~5 s.
    pub fn assert_all_gone(&self, after: &str) {
        let left = wait_until_gone(&self.tag, Duration::from_secs(5));
        assert!(
            left.is_empty(),
            "{after}, these processes of its tree were still alive 5 s later:\n{left:#?}"
        );
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in tagged(&self.tag) {
            // SAFETY: kill(2) on a pid this test started (it carries the test's tag).
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
    }
}

/// Starts `cowcheck run --time 30 --seed S` and lets it run for 1.5 s. A campaign that ends
/// early (it found a divergence, and shrinking it was quick) is retried with the next seed, so
/// that the kill lands mid-campaign. If every seed ends early, the test falls back to
/// `cowcheck bench`, which starts its executor the same way and runs on through divergences:
/// this test is about process lifetime, not about what the campaigns find.
pub fn start_campaign(name: &str, extra: &[&str]) -> Tree {
    start_campaign_for(name, "30", extra)
}

pub fn start_campaign_for(name: &str, time: &str, extra: &[&str]) -> Tree {
    let dir = tmpdir(name);
    let out = dir.display().to_string();
    let attempts: [&[&str]; 4] = [
        &["run", "--time", time, "--seed", "5", "--out", &out],
        &["run", "--time", time, "--seed", "6", "--out", &out],
        &["run", "--time", time, "--seed", "7", "--out", &out],
        &["bench", "--programs", "1000000000", "--seed", "5"],
    ];
    for args in attempts {
        let args = [args, extra].concat();
        let mut tree = Tree::start(name, &args);
        std::thread::sleep(Duration::from_millis(1500));
        match tree.child.try_wait() {
            Ok(None) => {
                let procs = tagged(&tree.tag);
                assert!(
                    procs
                        .iter()
                        .any(|p| p.ppid == tree.pid() && p.cmdline.contains("__executor")),
                    "the running campaign should have an executor child: {procs:#?}"
                );
                return tree;
            }
            Ok(Some(status)) => {
                eprintln!(
                    "note: `cowcheck {}` ended before the kill ({status}): {}; trying the next",
                    args.join(" "),
                    tree.stderr().trim()
                );
            }
            Err(e) => panic!("try_wait: {e}"),
        }
    }
    panic!("every campaign ended within 1.5 s; cannot test killing one");
}

/// Who gets the signal in the matrix below.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// cowcheck itself.
    Front,
    /// Every process of the front's process group: what Ctrl-C in a terminal does.
    FrontGroup,
    Executor,
    /// A child of the executor that is not running a program: its guardian or its zygote.
    ExecutorChild(usize),
    /// A worker of the program in flight (or of one being torn down).
    Worker,
}

/// The processes of the tree in their roles: (front, executor, the executor's other children
/// sorted by pid, workers).
pub fn roles(tree: &Tree) -> Option<(i32, i32, Vec<i32>, Vec<i32>)> {
    let procs = tagged(&tree.tag);
    let front = tree.pid();
    let executor = procs
        .iter()
        .find(|p| p.ppid == front && p.cmdline.contains("__executor"))?
        .pid;
    // The guardian and the zygote are the executor's first two children; workers descend from
    // the zygote (and come back to the executor, its subreaper, when orphaned).
    let mut children: Vec<i32> = procs
        .iter()
        .filter(|p| p.ppid == executor)
        .map(|p| p.pid)
        .collect();
    children.sort();
    let helpers: Vec<i32> = children.iter().take(2).copied().collect();
    let workers = procs
        .iter()
        .map(|p| p.pid)
        .filter(|pid| *pid != front && *pid != executor && !helpers.contains(pid))
        .collect();
    Some((front, executor, helpers, workers))
}

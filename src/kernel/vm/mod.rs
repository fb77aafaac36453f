//! `--kernel IMAGE`: the executor inside a fresh VM booted with that kernel under
//! `qemu-system-x86_64`, so that a kernel can be checked before it is booted for real. The
//! front talks to the guest's executor exactly as to a local one (length-prefixed frames),
//! through qemu's stdin and stdout: a virtio-serial port in the guest (`-chardev stdio`),
//! binary-clean. The guest kernel's console goes to a file of its own (`console`), read for
//! panics and oopses. The model, checker and shrinker stay native and never know.
//!
//! This file owns a boot: choosing the accelerator (KVM when `/dev/kvm` works and a guest boots
//! on it within seconds, the verdict kept for the run and, when KVM hangs, for the host's boot;
//! TCG otherwise), qemu's command line, the per-boot directory, and turning what went wrong
//! into words with the console's tail. Its parts:
//! - `image`: the kernel as given (.deb unpacked once into the cache, or a bzImage), its
//!   modules, the cache directory;
//! - `initramfs`: the guest's initramfs (our binary, its libraries, the modules), cached;
//! - `console`: the guest console's tail and the kernel's trouble in it;
//! - `guest`: the init that runs in the guest (PID 1), starting the executor.
//!
//! It starts no process itself: `client::Executor::start` spawns qemu from `Boot::command`, on
//! the same path as every executor (own process group, parent-death signal, group killed when
//! it stops). It never imports the client (the client imports it).

pub mod console;
pub mod guest;
pub mod image;
pub mod initramfs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use console::{Console, Trouble};

/// The emulator.
pub const QEMU: &str = "qemu-system-x86_64";

/// Under KVM a guest prints its first console line within milliseconds: one silent for this
/// long is taken for a hung KVM (nested KVM may hang), and the boot is retried under TCG.
pub const KVM_FIRST_OUTPUT: Duration = Duration::from_secs(5);
/// And under KVM a guest reaches init within this long, or it is retried under TCG.
pub const KVM_BOOT: Duration = Duration::from_secs(30);
/// The guest's memory. The largest program maps 32 x 64 pages in each of 16 live processes
/// (128 MiB at most), but below 512 MiB of RAM the kernel turns transparent huge pages off by
/// default (`hugepage_init`), and the guest should default like a real machine.
pub const MEMORY_MIB: u32 = 1024;
/// Console lines an error message shows.
const TAIL_LINES: usize = 40;
/// Consoles of failed boots the cache keeps.
const KEEP_CONSOLES: usize = 20;

/// How the guest's CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What the user asked for (`--accel`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM if it works, else TCG.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// How to boot the VM.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// `--kernel` as given: a bzImage, or a Debian kernel package.
    pub kernel: PathBuf,
    /// More kernel command-line arguments (`--kernel-append`), before ours' `--`.
    pub append: String,
    pub accel: AccelChoice,
    pub memory_mib: u32,
}

impl VmConfig {
    pub fn new(kernel: PathBuf) -> VmConfig {
        VmConfig {
            kernel,
            append: String::new(),
            accel: AccelChoice::Auto,
            memory_mib: MEMORY_MIB,
        }
    }

    /// A short description, for the executor's command line in reports.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{QEMU} -m {}M -kernel {}",
            self.memory_mib,
            self.kernel.display()
        );
        if !self.append.trim().is_empty() {
            s.push_str(&format!(" -append '{}'", self.append.trim()));
        }
        s
    }
}

/// What the front knows of a booted guest.
#[derive(Clone, Debug)]
pub struct Guest {
    pub accel: Accel,
    /// Why not KVM, when TCG was chosen on `--accel auto`.
    pub accel_note: Option<String>,
    /// `--kernel` as given, and the bzImage booted.
    pub kernel: PathBuf,
    pub vmlinuz: PathBuf,
    pub memory_mib: u32,
    /// From qemu's start to the guest's init saying hello.
    pub boot_time: Duration,
    /// The environment report as the guest's init made it (JSON).
    pub environment_json: String,
}

/// A kernel image and its initramfs, ready; made once per process and kernel.
#[derive(Clone, Debug)]
struct Prepared {
    kernel: PathBuf,
    exe: PathBuf,
    vmlinuz: PathBuf,
    initramfs: PathBuf,
    /// Where the modules came from, or why there are none.
    modules_note: Option<String>,
}

static PREPARED: Mutex<Vec<Prepared>> = Mutex::new(Vec::new());
/// Why KVM is not used, once known in this process.
static KVM_VERDICT: Mutex<Option<String>> = Mutex::new(None);
static BOOTS: AtomicU32 = AtomicU32::new(0);

fn prepare(config: &VmConfig, exe: &Path) -> Result<Prepared, String> {
    let mut cache = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = cache
        .iter()
        .find(|p| p.kernel == config.kernel && p.exe == exe)
    {
        return Ok(p.clone());
    }
    let image = image::resolve(&config.kernel)?;
    let initramfs = initramfs::build(exe, &image)?;
    let modules_note = match (&image.modules, &image.release) {
        (Some(dir), _) => format!("modules from {}", dir.display()),
        (None, Some(rel)) => format!(
            "no modules for {rel} beside the image (../lib/modules/{rel}) or in /lib/modules/{rel}"
        ),
        (None, None) => "the image's header names no release, so no modules were looked for".into(),
    };
    let p = Prepared {
        kernel: config.kernel.clone(),
        exe: exe.to_path_buf(),
        vmlinuz: image.vmlinuz,
        initramfs,
        modules_note: Some(modules_note),
    };
    cache.push(p.clone());
    Ok(p)
}

/// The file that keeps this host boot's KVM verdict (a hang does not heal before a reboot).
fn verdict_file() -> Option<PathBuf> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(image::cache_dir().join(format!("accel-{}", id.trim())))
}

/// Why KVM cannot be used, if that is known (or `/dev/kvm` cannot be opened).
fn kvm_unusable() -> Option<String> {
    if let Some(v) = KVM_VERDICT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    {
        return Some(v);
    }
    if let Some(v) = verdict_file().and_then(|f| std::fs::read_to_string(f).ok()) {
        return Some(v.trim().to_string());
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => None,
        Err(e) => Some(format!("/dev/kvm: {e}")),
    }
}

/// Remembers that KVM hung, for this process and this host boot.
fn kvm_failed(reason: &str) {
    *KVM_VERDICT.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
    if let Some(f) = verdict_file() {
        let _ = std::fs::create_dir_all(image::cache_dir());
        let _ = std::fs::write(f, format!("{reason}\n"));
    }
}

/// One boot of the VM: its directory (console, qemu's stderr), removed when it is dropped.
#[derive(Debug)]
pub struct Boot {
    pub accel: Accel,
    /// KVM tried on `--accel auto`: a boot that hangs is retried under TCG.
    probing: bool,
    accel_note: Option<String>,
    /// Set when the KVM probe failed: the caller stops this boot and boots again.
    pub kvm_hung: Option<String>,
    config: VmConfig,
    prepared: Prepared,
    dir: PathBuf,
    pub console: Console,
    qemu_log: PathBuf,
    started: Instant,
    /// The text of each program sent and not yet answered, oldest first.
    pub in_flight: std::collections::VecDeque<String>,
}

impl Boot {
    /// Resolves the kernel, builds the initramfs (both cached) and picks the accelerator.
    pub fn prepare(config: &VmConfig, exe: &Path) -> Result<Boot, String> {
        let prepared = prepare(config, exe)?;
        let (accel, probing, accel_note) = match config.accel {
            AccelChoice::Tcg => (Accel::Tcg, false, Some("--accel tcg".to_string())),
            AccelChoice::Kvm => (Accel::Kvm, false, None),
            AccelChoice::Auto => match kvm_unusable() {
                Some(why) => (Accel::Tcg, false, Some(why)),
                None => (Accel::Kvm, true, None),
            },
        };
        sweep_stale_dirs();
        let n = BOOTS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cowcheck-vm-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Boot {
            accel,
            probing,
            accel_note,
            kvm_hung: None,
            config: config.clone(),
            prepared,
            console: Console::new(dir.join("console.log")),
            qemu_log: dir.join("qemu.log"),
            dir,
            started: Instant::now(),
            in_flight: Default::default(),
        })
    }

    /// qemu's stderr: a file of the boot's, shown in errors (and never the front's terminal,
    /// whose flags qemu may change).
    pub fn qemu_stderr(&self) -> std::io::Result<std::fs::File> {
        std::fs::File::create(&self.qemu_log)
    }

    /// The qemu command: its stdin and stdout are the guest's port; the caller pipes them.
    pub fn command(&mut self, executor_args: &[String]) -> Command {
        let mut append = vec![
            "console=ttyS0".to_string(),
            "panic=-1".into(),
            "nowatchdog".into(),
            // Under TCG on a loaded host the boot's timer check (arch/x86/kernel/apic/io_apic.c:
            // check_timer()) can miss the timer interrupt and panic with "IO-APIC + timer
            // doesn't work!" (seen three times this session); the parameter skips that check
            // (Documentation/admin-guide/kernel-parameters.txt: no_timer_check).
            "no_timer_check".into(),
            "loglevel=5".into(),
            "rdinit=/init".into(),
        ];
        append.extend(self.config.append.split_whitespace().map(String::from));
        append.push("--".into());
        append.push("__vm-init".into());
        append.extend(executor_args.iter().cloned());
        let mut cmd = Command::new(QEMU);
        cmd.args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        cmd.args(["-name", "cowcheck"]);
        match self.accel {
            Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
            Accel::Tcg => cmd.args(["-accel", "tcg"]),
        };
        cmd.args(["-m", &format!("{}M", self.config.memory_mib), "-smp", "1"]);
        cmd.arg("-kernel").arg(&self.prepared.vmlinuz);
        cmd.arg("-initrd").arg(&self.prepared.initramfs);
        cmd.arg("-append").arg(append.join(" "));
        cmd.arg("-serial")
            .arg(format!("file:{}", self.console.path.display()));
        cmd.args(["-device", "virtio-serial-pci,id=vs0"]);
        cmd.args(["-chardev", "stdio,id=c0,signal=off"]);
        cmd.args([
            "-device",
            &format!(
                "virtserialport,bus=vs0.0,chardev=c0,name={}",
                guest::PORT_NAME
            ),
        ]);
        self.started = Instant::now();
        cmd
    }

    /// Called while waiting for the guest's first frame: under a KVM being probed, a guest
    /// silent past `KVM_FIRST_OUTPUT` or not at init by `KVM_BOOT` fails the probe (the
    /// verdict is kept; the caller stops this boot and boots again, under TCG).
    pub fn kvm_probe(&mut self) -> Result<(), String> {
        if !self.probing {
            return Ok(());
        }
        let t = self.started.elapsed();
        let why = if t > KVM_FIRST_OUTPUT && self.console.written() == 0 {
            format!(
                "KVM: the guest printed nothing in {} s",
                KVM_FIRST_OUTPUT.as_secs()
            )
        } else if t > KVM_BOOT {
            format!(
                "KVM: the guest did not reach init in {} s",
                KVM_BOOT.as_secs()
            )
        } else {
            return Ok(());
        };
        kvm_failed(&why);
        self.kvm_hung = Some(why.clone());
        Err(why)
    }

    /// After qemu ended before the guest's first frame: whether KVM is to blame (qemu gave up
    /// before the guest reached init, with no panic or oops of the kernel's own on the
    /// console). If so the verdict is kept and set in `kvm_hung`. (A guest that is merely slow
    /// is `kvm_probe`'s to judge, by its own deadlines, never by `--start-deadline`.)
    pub fn kvm_failed_early(&mut self) -> Option<String> {
        if !self.probing || self.kvm_hung.is_some() {
            return self.kvm_hung.clone();
        }
        let console = std::fs::read_to_string(&self.console.path).unwrap_or_default();
        if console.contains(guest::STARTED) || console::trouble_in(&console).is_some() {
            return None;
        }
        let qemu_said = std::fs::read_to_string(&self.qemu_log).unwrap_or_default();
        let last = qemu_said
            .lines()
            .rev()
            .find(|l| l.contains("error") || l.contains("Assertion"))
            .or_else(|| qemu_said.lines().last())
            .unwrap_or("no message")
            .trim()
            .to_string();
        let why = format!("KVM: qemu stopped before the guest reached init ({last})");
        kvm_failed(&why);
        self.kvm_hung = Some(why.clone());
        Some(why)
    }

    /// The guest's first frame (`guest::FACTS_MAGIC` and its environment report).
    pub fn greeted(&mut self, frame: &[u8]) -> Result<Guest, String> {
        let json = frame
            .strip_prefix(guest::FACTS_MAGIC)
            .ok_or("the guest's first frame is not its init's facts")?;
        self.probing = false;
        Ok(Guest {
            accel: self.accel,
            accel_note: self.accel_note.clone(),
            kernel: self.config.kernel.clone(),
            vmlinuz: self.prepared.vmlinuz.clone(),
            memory_mib: self.config.memory_mib,
            boot_time: self.started.elapsed(),
            environment_json: String::from_utf8_lossy(json).into_owned(),
        })
    }

    /// What went wrong, in words: `what` (from the harness: "sent nothing for 600 s", "died
    /// (end of output)"), made precise by the console (a panic, an oops, a guest that never
    /// reached init, an executor that ended) and qemu's stderr, with the console's tail.
    /// `booted`: whether the executor had said hello.
    pub fn explain(&self, what: &str, booted: bool, qemu_status: Option<String>) -> String {
        let console = std::fs::read_to_string(&self.console.path).unwrap_or_default();
        let when = if !booted {
            "while booting"
        } else if self.in_flight.is_empty() {
            "between programs"
        } else {
            "while a program ran"
        };
        let trouble = console::trouble_in(&console).filter(|t| !matches!(t, Trouble::Warning(_)));
        let init_failed = console.lines().find(|l| l.contains(guest::FAILED));
        let mut msg = match &trouble {
            Some(t) => format!("the guest kernel {} {when}: {}", t.verb(), t.line()),
            None if init_failed.is_some() => format!(
                "the guest's init {}{}",
                init_failed
                    .unwrap_or_default()
                    .trim()
                    .trim_start_matches("cowcheck-init: "),
                self.prepared
                    .modules_note
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
            None if !console.contains(guest::STARTED) && !booted => {
                format!("the VM never booted to its init ({what}): the kernel did not start /init")
            }
            None => match console.lines().find(|l| l.contains(guest::EXECUTOR_ENDED)) {
                Some(line) => format!("{what}: {}", line.trim()),
                None => format!("the guest {what}"),
            },
        };
        msg.push_str(&format!(
            " [{QEMU} accel {}, kernel {}]",
            self.accel.name(),
            self.config.kernel.display()
        ));
        if let Some(s) = qemu_status {
            msg.push_str(&format!("; qemu {s}"));
        }
        if booted && let Some(p) = self.in_flight.front() {
            msg.push_str(&format!(
                "\nthe program in flight (replay it with --kernel):\n{}",
                p.trim_end()
            ));
        }
        self.details(&mut msg);
        msg
    }

    /// The message for trouble the console showed while programs ran normally.
    pub fn explain_trouble(&self, trouble: &Trouble, program: Option<&str>) -> String {
        let mut msg = format!(
            "the guest kernel {} while a program ran: {} [{QEMU} accel {}, kernel {}]",
            trouble.verb(),
            trouble.line(),
            self.accel.name(),
            self.config.kernel.display()
        );
        if let Some(p) = program {
            msg.push_str(&format!(
                "\nthe program (or the one queued after it), replay it with --kernel:\n{}",
                p.trim_end()
            ));
        }
        self.details(&mut msg);
        msg
    }

    fn details(&self, msg: &mut String) {
        let qemu_said = std::fs::read_to_string(&self.qemu_log).unwrap_or_default();
        let qemu_said: Vec<&str> = qemu_said
            .lines()
            .filter(|l| !l.contains("terminating on signal") && !l.trim().is_empty())
            .collect();
        if !qemu_said.is_empty() {
            msg.push_str(&format!("\n{QEMU} said:\n  {}", qemu_said.join("\n  ")));
        }
        let kept = keep_console(&self.console.path);
        msg.push_str(&format!(
            "\n--- guest console, last lines{} ---\n{}\n--- end of guest console ---",
            kept.map(|p| format!(" (all of it: {})", p.display()))
                .unwrap_or_default(),
            self.console.tail(TAIL_LINES)
        ));
    }
}

impl Drop for Boot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Copies a failed boot's console into the cache (`consoles/`), keeping the newest few.
fn keep_console(path: &Path) -> Option<PathBuf> {
    let dir = image::cache_dir().join("consoles");
    std::fs::create_dir_all(&dir).ok()?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let kept = dir.join(format!("{stamp}-{}.log", std::process::id()));
    std::fs::copy(path, &kept).ok()?;
    let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    all.sort();
    let excess = all.len().saturating_sub(KEEP_CONSOLES);
    for p in all.into_iter().take(excess) {
        let _ = std::fs::remove_file(p);
    }
    Some(kept)
}

/// Removes boot directories left by fronts that were killed (`cowcheck-vm-<pid>-<n>` whose
/// pid is gone).
fn sweep_stale_dirs() {
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("cowcheck-vm-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

//! The guest side of `--kernel`: `cowcheck __vm-init`, which the guest kernel runs as `/init`
//! (PID 1) from the initramfs, with the executor's arguments from the kernel command line
//! (the words after `--`). It
//!
//! 1. mounts /proc, /sys, /dev (devtmpfs) and a tmpfs on /tmp;
//! 2. loads the modules in /modules, in their order (`finit_module`);
//! 3. opens the virtio-serial port named `cowcheck` (found through /sys/class/virtio-ports;
//!    no udev here to make /dev/virtio-ports/cowcheck);
//! 4. writes one frame of facts (`FACTS_MAGIC` then the environment report as JSON, from the
//!    closure the front end gives: this layer never builds that report itself);
//! 5. starts `cowcheck __executor ARGS` with the port as its stdin and stdout, through a keeper
//!    process (the executor takes a parent of PID 1 for a sign that its front is gone), reaps
//!    every orphan while it runs, and powers the guest off when it ends.
//!
//! Everything it says goes to the console (stderr), prefixed `cowcheck-init:`. It never exits:
//! PID 1 ending is a kernel panic, and a panic must mean the kernel's.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use crate::kernel::protocol::write_frame;

/// The name of the virtio-serial port the front talks through.
pub const PORT_NAME: &str = "cowcheck";
/// The first frame the guest sends starts with this; the environment report follows.
pub const FACTS_MAGIC: &[u8] = b"cowcheck-guest 1\n";
/// Printed on the console when init starts: a console without it never reached init.
pub const STARTED: &str = "cowcheck-init: started";
/// Printed on the console when the executor has ended, with its status.
pub const EXECUTOR_ENDED: &str = "cowcheck-init: the executor ended";
/// How long init waits for the port to appear (modules load and probe asynchronously).
const PORT_WAIT: Duration = Duration::from_secs(60);
/// How long init waits for any virtio console driver (/sys/class/virtio-ports) at all.
const DRIVER_WAIT: Duration = Duration::from_secs(10);
/// Printed before the reason when init gives up.
pub const FAILED: &str = "cowcheck-init: cannot start the executor:";

fn say(text: &str) {
    eprintln!("cowcheck-init: {text}");
}

/// Runs as the guest's init; returns only when not PID 1 (a mistaken call outside a VM).
pub fn main(executor_args: &[String], environment: &dyn Fn() -> String) -> i32 {
    if std::process::id() != 1 {
        eprintln!("cowcheck: __vm-init is the init of a --kernel VM and runs only as PID 1");
        return 2;
    }
    eprintln!("{STARTED}");
    mount_all();
    load_modules();
    let port = match open_port() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{FAILED} {e}");
            power_off();
        }
    };
    let mut facts = FACTS_MAGIC.to_vec();
    facts.extend_from_slice(environment().as_bytes());
    if let Err(e) = write_frame(&mut &port, &facts) {
        eprintln!("{FAILED} cannot write to the port: {e}");
        power_off();
    }
    run_executor(port, executor_args);
    power_off();
}

fn mount_all() {
    let mounts: [(&str, &str, &str, libc::c_ulong, &str); 4] = [
        (
            "proc",
            "/proc",
            "proc",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            "",
        ),
        (
            "sysfs",
            "/sys",
            "sysfs",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            "",
        ),
        ("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755"),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=1777",
        ),
    ];
    for (source, target, fstype, flags, data) in mounts {
        let _ = std::fs::create_dir_all(target);
        let c = |s: &str| CString::new(s).unwrap_or_default();
        let (source_c, target_c, fstype_c, data_c) = (c(source), c(target), c(fstype), c(data));
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let r = unsafe {
            libc::mount(
                source_c.as_ptr(),
                target_c.as_ptr(),
                fstype_c.as_ptr(),
                flags,
                data_c.as_ptr().cast(),
            )
        };
        if r != 0 {
            say(&format!(
                "mount {fstype} on {target}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
}

fn load_modules() {
    let mut files: Vec<_> = std::fs::read_dir("/modules")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for path in files {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                say(&format!("{}: {e}", path.display()));
                continue;
            }
        };
        let params = c"";
        // SAFETY: finit_module reads the module from an open descriptor we own; the parameter
        // string is a NUL-terminated literal.
        let r =
            unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
        let err = std::io::Error::last_os_error();
        if r != 0 && err.raw_os_error() != Some(libc::EEXIST) {
            say(&format!("cannot load {}: {err}", path.display()));
        }
    }
}

/// The port's device, once the kernel has made it.
fn open_port() -> Result<File, String> {
    let start = Instant::now();
    loop {
        for entry in std::fs::read_dir("/sys/class/virtio-ports")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
            if name.trim() == PORT_NAME {
                let dev = std::path::Path::new("/dev").join(entry.file_name());
                match std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&dev)
                {
                    Ok(f) => return Ok(f),
                    Err(e) if start.elapsed() > PORT_WAIT => {
                        return Err(format!("cannot open {}: {e}", dev.display()));
                    }
                    Err(_) => {}
                }
            }
        }
        let no_driver = start.elapsed() > DRIVER_WAIT
            && !std::path::Path::new("/sys/class/virtio-ports").exists();
        if no_driver || start.elapsed() > PORT_WAIT {
            return Err(format!(
                "no virtio-serial port named {PORT_NAME} after {} s: the kernel needs \
                 CONFIG_VIRTIO_PCI and CONFIG_VIRTIO_CONSOLE (built in, or as modules beside \
                 the image)",
                start.elapsed().as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the executor through a keeper (which says on the console how it ended) and reaps
/// every child until the keeper ends.
fn run_executor(port: File, args: &[String]) {
    let exe = std::env::current_exe().unwrap_or_else(|_| "/init".into());
    // SAFETY: init is single-threaded (nothing here starts a thread), so the child may allocate
    // and spawn freely before it exits.
    let keeper = match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let status = std::process::Command::new(&exe)
                .arg0("cowcheck")
                .arg("__executor")
                .args(args)
                .stdin(
                    port.try_clone()
                        .map_or_else(|_| std::process::Stdio::null(), Into::into),
                )
                .stdout(port)
                .status();
            let code = match status {
                Ok(s) => {
                    eprintln!("{EXECUTOR_ENDED}: {s}");
                    s.code().unwrap_or(2)
                }
                Err(e) => {
                    say(&format!("cannot start {}: {e}", exe.display()));
                    2
                }
            };
            std::process::exit(code);
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
        Err(e) => return say(&format!("cannot fork the keeper: {e}")),
    };
    drop(port);
    loop {
        match nix::sys::wait::waitpid(None, None) {
            Ok(status) if status.pid() == Some(keeper) => return,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return say(&format!("waitpid: {e}")),
        }
    }
}

/// Powers the guest off (qemu then exits); never returns.
fn power_off() -> ! {
    // SAFETY: sync and reboot take no pointers; reboot(RB_POWER_OFF) ends the guest.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

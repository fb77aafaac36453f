//! `--kernel IMAGE`: the executor inside a VM booted with that kernel under qemu-system-x86_64
//! (docs/KERNELS.md). The kernel comes from `COWCHECK_TEST_KERNEL` (a bzImage or a Debian
//! linux-image .deb), else the newest Debian kernel package in the cache's `debs/`
//! (`scripts/fetch-kernel.sh` puts one there); without one, or without qemu, each test says
//! why and passes without running.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::tree::{Tree, tagged};
use common::*;

const QEMU: &str = "qemu-system-x86_64";

/// The kernel to boot, or `None` (with a note) when the tests cannot run here.
fn kernel() -> Option<PathBuf> {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("note: not an x86_64 build; skipping the --kernel tests");
        return None;
    }
    if !on_path(QEMU) {
        eprintln!(
            "note: {QEMU} is not on PATH (Debian: apt-get install qemu-system-x86); skipping the --kernel tests"
        );
        return None;
    }
    let kernel = match std::env::var_os("COWCHECK_TEST_KERNEL").filter(|k| !k.is_empty()) {
        Some(k) => PathBuf::from(k),
        None => match cowcheck::kernel::vm::image::cached_deb() {
            Some(deb) => deb,
            None => {
                eprintln!(
                    "note: no kernel image: set COWCHECK_TEST_KERNEL or run scripts/fetch-kernel.sh (cache: {}); skipping the --kernel tests",
                    cowcheck::kernel::vm::image::cache_dir().display()
                );
                return None;
            }
        },
    };
    Some(kernel)
}

/// A boot under TCG takes a few seconds on an idle machine; CI is two loaded cores, and three
/// tests may boot at once.
const VM_DEADLINE: Duration = Duration::from_secs(300);

/// A few programs in the VM: the kernel and the model agree, the report names the guest's
/// kernel and how the VM ran, and a trace's fork and copy-on-write behave there as here.
#[test]
fn programs_in_the_vm_agree_with_the_model() {
    let Some(kernel) = kernel() else { return };
    let kernel = kernel.display().to_string();
    let dir = tmpdir("vm-run");
    let trace = write_file(
        &dir,
        "t.trace",
        "cowcheck-trace 1\n\
         p0 map m0 shared 2\n\
         p0 map m1 private 2\n\
         p0 write m1 0[0..4] fill 0x01\n\
         p0 fork p1\n\
         p1 write m0 0[0..4] fill 0x02\n\
         p1 write m1 0[0..4] fill 0x03\n\
         p1 exit\n\
         p0 read m0 0[0..4] => 0x02\n\
         p0 read m1 0[0..4] => 0x01\n\
         p0 unmap m0 1\n\
         p0 read m0 1 => SIGSEGV maperr\n",
    );
    let run = cowcheck_with(
        &[
            "replay",
            trace.to_str().unwrap(),
            "--json",
            "--kernel",
            &kernel,
        ],
        VM_DEADLINE,
    );
    run.expect_code(0);
    let report = run.json();
    assert!(report["divergence"].is_null(), "{}", run.dump());
    assert_eq!(
        report["ops"].as_array().map(Vec::len),
        Some(11),
        "{}",
        run.dump()
    );

    let run = cowcheck_with(
        &[
            "run",
            "--kernel",
            &kernel,
            "--cases",
            "20",
            "--seed",
            "1",
            "--json",
            "--out",
            dir.to_str().unwrap(),
        ],
        VM_DEADLINE,
    );
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["programs"], 20, "{}", run.dump());
    let env = &report["environment"];
    let accel = env["vm"]["accel"].as_str().unwrap_or("");
    assert!(
        accel == "kvm" || accel == "tcg",
        "no vm.accel in\n{}",
        run.dump()
    );
    // The environment and the hello are the guest's, and they agree.
    assert_eq!(
        env["kernel_release"],
        report["kernel"]["release"],
        "{}",
        run.dump()
    );
}

/// The scenario corpus in the VM, as KTAP: every scenario passes there, or is skipped for a
/// feature the guest kernel lacks (probed inside the guest, never read off the version).
#[test]
fn the_corpus_passes_in_the_vm() {
    let Some(kernel) = kernel() else { return };
    let scenarios = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let run = cowcheck_with(
        &[
            "corpus",
            scenarios.to_str().unwrap(),
            "--tap",
            "--kernel",
            kernel.to_str().unwrap(),
        ],
        VM_DEADLINE,
    );
    run.expect_code(0);
    for line in run
        .stdout
        .lines()
        .filter(|l| l.starts_with("ok ") || l.starts_with("not ok "))
    {
        assert!(
            line.starts_with("ok ")
                && (!line.contains("# SKIP") || line.contains("missing feature")),
            "{line}\n{}",
            run.dump()
        );
    }
}

/// A guest kernel that panics at boot (no init to run) is a harness error, exit 2, named as a
/// panic with the console's tail; the front does not hang.
#[test]
fn a_guest_panic_is_reported_with_the_console() {
    let Some(kernel) = kernel() else { return };
    let start = Instant::now();
    let run = cowcheck_with(
        &[
            "run",
            "--kernel",
            kernel.to_str().unwrap(),
            "--kernel-append",
            "rdinit=/nonexistent",
            "--cases",
            "1",
        ],
        VM_DEADLINE,
    );
    run.expect_code(2);
    for needle in [
        "the guest kernel hit a panic while booting",
        "Kernel panic - not syncing",
        "--- guest console",
    ] {
        assert!(
            run.stderr.contains(needle),
            "no {needle:?} in\n{}",
            run.dump()
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "the panic took {:?} to report",
        start.elapsed()
    );
}

/// A VM that does not reach its init within the start deadline is stopped and reported as
/// never booted, exit 2, with the console's tail.
#[test]
fn a_vm_that_never_boots_is_reported() {
    let Some(kernel) = kernel() else { return };
    let run = cowcheck_with(
        &[
            "run",
            "--kernel",
            kernel.to_str().unwrap(),
            "--accel",
            "tcg",
            "--start-deadline",
            "1",
            "--cases",
            "1",
        ],
        VM_DEADLINE,
    );
    run.expect_code(2);
    for needle in [
        "the VM never booted to its init",
        "--start-deadline",
        "--- guest console",
    ] {
        assert!(
            run.stderr.contains(needle),
            "no {needle:?} in\n{}",
            run.dump()
        );
    }
}

/// SIGKILL of the front takes the VM with it: no qemu is left running.
#[test]
fn sigkill_of_the_front_leaves_no_qemu() {
    let Some(kernel) = kernel() else { return };
    // `bench` runs on through any divergence: the VM is up until the kill.
    let mut tree = Tree::start(
        "vm-kill",
        &[
            "bench",
            "--programs",
            "1000000000",
            "--kernel",
            kernel.to_str().unwrap(),
        ],
    );
    let start = Instant::now();
    loop {
        if tagged(&tree.tag).iter().any(|p| p.cmdline.contains(QEMU)) {
            break;
        }
        if let Ok(Some(status)) = tree.child.try_wait() {
            panic!("cowcheck bench ended ({status}): {}", tree.stderr());
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no qemu started within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let it boot and run a little, so that the kill lands with programs in flight.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        tree.child.try_wait().ok().flatten().is_none(),
        "cowcheck bench ended early: {}",
        tree.stderr()
    );
    tree.child.kill().expect("SIGKILL the front");
    let _ = tree.child.wait();
    tree.assert_all_gone("after SIGKILL of the front");
}

/// `--kernel` and `--under` together are refused (exit 2): the executor runs in the guest,
/// not under a command here.
#[test]
fn kernel_and_under_together_are_refused() {
    let run = cowcheck(&[
        "run",
        "--kernel",
        "/nonexistent/vmlinuz",
        "--under",
        "env",
        "--cases",
        "1",
    ]);
    run.expect_usage_error();
    let run = cowcheck(&["run", "--kernel", "/nonexistent/vmlinuz", "--cases", "1"]);
    let line = run.expect_usage_error();
    assert!(line.contains("/nonexistent/vmlinuz"), "{line}");
}

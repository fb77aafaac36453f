//! BASELINE ONLY, not a campaign target. The `ops` check done the naive way: for every input the
//! fuzzing process forks, and the child runs the executor's coordinator in place (the same code
//! as `cowcheck __executor`, fed through pipes), so the fuzzing process's image (AddressSanitizer
//! shadow and all) is what every fork of the program copies. It exists to measure what `ops`'s
//! long-lived executor saves (docs/FUZZING.md); it neither shrinks nor panics.
#![no_main]

use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use cowcheck::check;
use cowcheck::kernel::KernelRun;
use cowcheck::kernel::protocol::{Dec, encode_request, read_frame, write_frame};
use cowcheck::program::Program;
use libfuzzer_sys::fuzz_target;

fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned by nothing else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

/// Forks this process; the child serves one program as the executor would and exits.
fn run_forked(program: &Program) -> (usize, KernelRun) {
    use std::os::fd::AsRawFd;
    let (req_r, mut req_w) = pipe();
    let (mut rep_r, rep_w) = pipe();
    // SAFETY: the child only rewires its stdin/stdout and runs the executor's loop, which is
    // what `cowcheck __executor` runs after exec; it leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: fds 0 and 1 are replaced by the pipe ends (dup2 clears CLOEXEC on them), and
        // the parent's ends are closed, so that the request pipe ends when the parent closes it.
        unsafe {
            libc::dup2(req_r.as_raw_fd(), 0);
            libc::dup2(rep_w.as_raw_fd(), 1);
            libc::close(req_w.as_raw_fd());
            libc::close(rep_r.as_raw_fd());
            // A short op deadline: a worker forked from this image can deadlock in an
            // intercepted call, and the baseline should not be charged 10 s for each.
            let code = cowcheck::kernel::executor::main(
                0,
                std::time::Duration::from_secs(1),
                None,
                None,
                false,
            );
            libc::_exit(code);
        }
    }
    drop(req_r);
    drop(rep_w);
    write_frame(&mut req_w, &encode_request(program, &[])).expect("send the program");
    drop(req_w);
    let hello = read_frame(&mut rep_r).expect("hello").expect("hello frame");
    let hello = Dec::new(&hello).hello().expect("decode hello");
    let frame = read_frame(&mut rep_r).expect("reply").expect("reply frame");
    let run = Dec::new(&frame).run().expect("decode the run");
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    {}
    (hello.page_size as usize, run)
}

fuzz_target!(|data: &[u8]| {
    let program = cowcheck_fuzz::decode(data);
    // hugetlb only when asked, as in `ops` (the pool is the machine's).
    let allowed = cowcheck_fuzz::families::Allowed::on(cowcheck::program::features::Features::ALL);
    if allowed.skip(data, &program).is_some() {
        return;
    }
    let (page_size, run) = run_forked(&program);
    cowcheck_fuzz::publish_program_cells(&program, page_size);
    // No panic: as a baseline it only counts. Forking the fuzzing process (ASan interceptors,
    // libFuzzer's threads) makes spurious failures, such as a worker that hangs inside an
    // intercepted call; they are counted and shown once per shape.
    if let Ok(check::Verdict::Diverged(d)) =
        check::compare(&program, &run, check::Options::new(page_size))
    {
        let shape = d.signature(&program);
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.contains(&shape) {
            eprintln!("naive_fork: divergence ({shape}) in:\n{program}");
            seen.push(shape);
        }
        let n = DIVERGED.fetch_add(1, Ordering::Relaxed) + 1;
        eprintln!("naive_fork: {n} divergent programs so far");
    }
});

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
static DIVERGED: AtomicU64 = AtomicU64::new(0);

//! The front's handle on an executor process: start it (directly, through `--under CMD`, or
//! inside a VM booted with `--kernel IMAGE`, see `vm`), send it programs, read back what the
//! kernel did. The front never forks workers itself, because it may be multithreaded (the test
//! harness, the fuzzer); its one `unsafe` sets the parent-death signal of what it spawns.

use std::io::{BufReader, BufWriter};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::protocol::{
    Dec, DumpRequest, Hello, KernelRun, encode_fork_bench, encode_request, read_frame, write_frame,
};
use super::vm::{Boot, Guest, VmConfig};
use crate::program::Program;
use crate::program::runtime_regions::RegionKind;

/// The harness failed: distinct from any divergence (the kernel is not to blame).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("cannot start the executor `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("the executor `{command}` did not start: {status}; is the command right?")]
    NotReady { command: String, status: String },
    #[error("the executor died ({0})")]
    Died(String),
    #[error("the executor sent nothing for {0} s")]
    Timeout(u64),
    #[error("the executor gave up on the program: {0}")]
    Program(String),
    /// The environment, not the kernel's semantics, made the program fail: a process killed
    /// from outside the run, a resource limit. Never a divergence.
    #[error("environment: {0}")]
    Environment(String),
    /// The VM of `--kernel` failed: a guest kernel panic or oops, a hung guest, a VM that
    /// never booted; the message says which, with the guest console's tail.
    #[error("{0}")]
    Guest(String),
    #[error("talking to the executor: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Protocol(#[from] super::protocol::DecodeError),
}

/// How to start executors.
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// The `cowcheck` binary (it runs the executor as its hidden `__executor` command).
    pub exe: PathBuf,
    /// A command to start it through, the way cargo's target runners work (`qemu-x86_64`,
    /// `env LD_PRELOAD=...`); empty for none.
    pub under: Vec<String>,
    /// Deliberate faults for tests (see `worker::inject`); empty in real runs.
    pub inject: Vec<String>,
    /// How long the front waits for one program before declaring the executor hung.
    pub program_deadline: Duration,
    /// How long the executor may take to say hello before it counts as never ready.
    pub start_deadline: Duration,
    /// How long one op may take before its worker counts as hung (an observation).
    pub op_deadline: Duration,
    /// Run the executor in a VM booted with this kernel (`--kernel`); `None` for here.
    pub vm: Option<VmConfig>,
    /// The CPU the executor and its process trees run on (`for_job`); `None`: wherever the
    /// scheduler puts them.
    pub cpu: Option<usize>,
    /// The job's CPU set (`--cpus` to the executor), where its racing threads run beside
    /// their workers; empty: the CPUs the executor was started with (`kernel::cpus`).
    pub cpus: Vec<usize>,
    /// Kinds of region that the runtime under the executor makes for itself, as the user
    /// named them (`--ignore-region`); each executor starts with these as its `own_regions`.
    pub own_regions: Vec<RegionKind>,
    /// Read the physical channel (pagemap) at every snapshot, unless this says why not
    /// (`--no-physical`, an emulator).
    pub physical_off: Option<crate::program::physical::Skip>,
    /// No smaps reads in the workers (`--no-smaps` to the executor): campaigns read smaps only
    /// when asked (`run --smaps`), for its cost (docs/SEMANTICS.md I11).
    pub smaps_off: bool,
}

impl ExecutorConfig {
    pub fn new(exe: PathBuf) -> ExecutorConfig {
        ExecutorConfig {
            exe,
            under: Vec::new(),
            inject: Vec::new(),
            program_deadline: Duration::from_secs(120),
            start_deadline: Duration::from_secs(60),
            op_deadline: super::executor::DEFAULT_OP_DEADLINE,
            vm: None,
            cpu: None,
            cpus: Vec::new(),
            own_regions: Vec::new(),
            physical_off: None,
            smaps_off: false,
        }
    }

    /// The configuration of job `job` of `jobs` run at once: with two jobs or more, each
    /// job's executor (and every process tree it makes) is kept on a CPU of its own, the
    /// `job`-th of those this process may use (round robin). A program's tree is a chain of
    /// processes that wake each other one at a time, and a lone job gains from spreading over
    /// the CPUs (the model checks one program while the tree runs the next), but jobs sharing
    /// CPUs pay for it: measured on 2 CPUs, two free jobs ran 1.2x the programs of one, two
    /// kept apart 1.6x (docs/KERNELS.md). A VM's executor is left alone (its CPUs are the
    /// guest's).
    pub fn for_job(&self, job: usize, jobs: usize) -> ExecutorConfig {
        self.for_job_within(job, jobs, &[])
    }

    /// `for_job`, inside the CPU set `set` (empty: every CPU this process may use): the
    /// job's home is the `job`-th CPU of the set (round robin), and its racing and op threads
    /// stay inside the set (`kernel::cpus`). A set given pins even a lone job: that is how
    /// `bench --jobs` keeps one job on one core, or N jobs on N cores.
    pub fn for_job_within(&self, job: usize, jobs: usize, set: &[usize]) -> ExecutorConfig {
        let mut c = self.clone();
        if self.vm.is_some() || (jobs < 2 && set.is_empty()) {
            return c;
        }
        let cpus = if set.is_empty() {
            super::cpus::allowed()
        } else {
            set.to_vec()
        };
        if !cpus.is_empty() {
            c.cpu = Some(cpus[job % cpus.len()]);
        }
        c.cpus = set.to_vec();
        c
    }

    /// The executor's arguments after `__executor`.
    fn executor_args(&self) -> Vec<String> {
        let mut args = vec![format!("--op-deadline-ms={}", self.op_deadline.as_millis())];
        args.extend(self.inject.iter().map(|i| format!("--inject={i}")));
        if let Some(cpu) = self.cpu {
            args.push(format!("--cpu={cpu}"));
        }
        if !self.cpus.is_empty() {
            let set: Vec<String> = self.cpus.iter().map(|c| c.to_string()).collect();
            args.push(format!("--cpus={}", set.join(",")));
        }
        args.extend(self.physical_off_arg());
        if self.smaps_off {
            args.push("--no-smaps".into());
        }
        args
    }

    /// The executor's argument that turns the physical channel off, and says why: as asked,
    /// or under qemu-user (the first word of `under` that is not `env` or a VAR=value names
    /// the emulator).
    fn physical_off_arg(&self) -> Option<String> {
        use crate::program::physical::Skip;
        let emulator = self
            .under
            .iter()
            .find(|w| *w != "env" && !w.contains('='))
            .and_then(|w| std::path::Path::new(w).file_name())
            .is_some_and(|n| n.to_string_lossy().starts_with("qemu-"));
        let off = self.physical_off.or(emulator.then_some(Skip::Emulator));
        match off? {
            Skip::Emulator => Some("--no-physical-emulator".into()),
            _ => Some("--no-physical".into()),
        }
    }

    /// The command line, for messages and reports.
    pub fn command_line(&self) -> String {
        let mut words: Vec<String> = self.under.clone();
        if let Some(vm) = &self.vm {
            words.push(vm.describe());
            words.push("--".into());
        }
        words.push(self.exe.display().to_string());
        words.push("__executor".into());
        for i in &self.inject {
            words.push(format!("--inject={i}"));
        }
        words.extend(self.physical_off_arg());
        if self.smaps_off {
            words.push("--no-smaps".into());
        }
        words.join(" ")
    }
}

/// A running executor.
pub struct Executor {
    child: Child,
    input: BufWriter<ChildStdin>,
    output: BufReader<ChildStdout>,
    config: ExecutorConfig,
    pub hello: Hello,
    /// Kinds of region that the runtime under this executor makes for itself, which the
    /// checker sets aside where the program has nothing (`check::Options::own_regions`):
    /// those the user named, and those learnt from a baseline program (`trial::learn_own_regions`).
    pub own_regions: Vec<RegionKind>,
    /// Programs sent whose replies are not read yet (`submit`, `collect`).
    in_flight: usize,
    /// The VM the executor runs in (`--kernel`), and what its guest said when it booted.
    vm: Option<Boot>,
    guest: Option<Guest>,
}

/// A program request larger than this is never queued behind another one: the executor
/// writes a reply before it reads the next request, and two large frames in the two pipes
/// at once could fill both.
const MAX_QUEUED_REQUEST: usize = 16 * 1024;

impl Executor {
    /// Keeps the calling thread (a job's front: its model and checker) on the CPU of this
    /// executor, if it has one (`ExecutorConfig::for_job`), so that each job's programs and
    /// their checking share one CPU instead of every front floating over the CPUs the other
    /// jobs' trees are kept on (docs/KERNELS.md, "Many cores"). Nothing without a CPU.
    pub fn keep_caller_beside(&self) {
        if let Some(cpu) = self.config.cpu {
            let mut set = nix::sched::CpuSet::new();
            if set.set(cpu).is_ok() {
                let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
            }
        }
    }

    pub fn start(config: &ExecutorConfig) -> Result<Executor, HarnessError> {
        if let Some(vm) = &config.vm {
            return Executor::start_vm(config, vm);
        }
        let mut cmd = match config.under.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&config.exe);
                c
            }
            None => Command::new(&config.exe),
        };
        cmd.arg("__executor").args(config.executor_args());
        let child =
            spawn(&mut cmd, Stdio::inherit(), false).map_err(|source| HarnessError::Spawn {
                command: config.command_line(),
                source,
            })?;
        let mut ex = Executor::new(child, config, None);
        ex.greet()?;
        Ok(ex)
    }

    /// Boots the VM and waits for its executor's hello; a KVM that hangs (on `--accel auto`)
    /// is left for TCG, once.
    fn start_vm(config: &ExecutorConfig, vm: &VmConfig) -> Result<Executor, HarnessError> {
        loop {
            let mut boot = Boot::prepare(vm, &config.exe).map_err(HarnessError::Guest)?;
            let mut cmd = boot.command(&config.executor_args());
            let stderr = boot.qemu_stderr()?;
            let child =
                spawn(&mut cmd, stderr.into(), true).map_err(|source| HarnessError::Spawn {
                    command: format!(
                        "{} (Debian: apt-get install qemu-system-x86)",
                        super::vm::QEMU
                    ),
                    source,
                })?;
            let mut ex = Executor::new(child, config, Some(boot));
            let first = ex.read_reply(config.start_deadline);
            if let Some(why) = ex.vm.as_ref().and_then(|b| b.kvm_hung.clone()) {
                eprintln!("cowcheck: {why}; booting again under TCG (--accel tcg skips the try)");
                continue;
            }
            let frame = first?;
            let boot = ex.vm.as_mut().expect("a VM executor");
            ex.guest = Some(boot.greeted(&frame).map_err(HarnessError::Guest)?);
            ex.greet()?;
            if let Some(boot) = ex.vm.as_mut() {
                // Only what the kernel says from now on is a program's doing.
                boot.console.skip_to_end();
            }
            return Ok(ex);
        }
    }

    fn new(child: Child, config: &ExecutorConfig, vm: Option<Boot>) -> Executor {
        let mut child = child;
        let input = BufWriter::new(child.stdin.take().expect("piped"));
        let output = BufReader::new(child.stdout.take().expect("piped"));
        Executor {
            child,
            input,
            output,
            config: config.clone(),
            hello: Hello {
                page_size: 0,
                release: String::new(),
                machine: String::new(),
                features: crate::program::features::Features::ALL,
                physical: crate::program::physical::Channels::default(),
            },
            own_regions: config.own_regions.clone(),
            in_flight: 0,
            vm,
            guest: None,
        }
    }

    /// Reads the executor's hello, or stops it and says why it never became ready.
    fn greet(&mut self) -> Result<(), HarnessError> {
        match self.read_reply(self.config.start_deadline) {
            Ok(frame) => {
                self.hello = Dec::new(&frame).hello()?;
                Ok(())
            }
            Err(e @ HarnessError::Guest(_)) => Err(e),
            Err(e) => {
                // Kill first: a command that floods its output (not our executor at all) would
                // otherwise block writing to a pipe nobody reads, and wait() with it.
                let exited = self.child.try_wait().ok().flatten();
                self.stop();
                let status = match (exited, e) {
                    (Some(status), _) => format!("it exited before it was ready: {status}"),
                    (None, HarnessError::Timeout(secs)) => {
                        format!("it never became ready (no hello within {secs} s) and was stopped")
                    }
                    (None, e) => format!("it never became ready ({e}) and was stopped"),
                };
                Err(HarnessError::NotReady {
                    command: self.config.command_line(),
                    status,
                })
            }
        }
    }

    /// The guest's facts, when the executor runs in a VM (`--kernel`).
    pub fn guest(&self) -> Option<&Guest> {
        self.guest.as_ref()
    }

    pub fn config(&self) -> &ExecutorConfig {
        &self.config
    }

    pub fn page_size(&self) -> usize {
        self.hello.page_size as usize
    }

    fn read_reply(&mut self, deadline: Duration) -> Result<Vec<u8>, HarnessError> {
        let reply = self.read_frame_within(deadline);
        match (reply, self.vm.is_some()) {
            (Err(e), true) => Err(self.guest_failed(e)),
            (reply, _) => reply,
        }
    }

    fn read_frame_within(&mut self, deadline: Duration) -> Result<Vec<u8>, HarnessError> {
        // Wait for the first byte with a deadline (the executor has its own per-op deadline;
        // this one catches a wedged executor, emulator or guest). A VM being booted on KVM is
        // looked at every 200 ms (`Boot::kvm_probe`).
        if self.output.buffer().is_empty() {
            let fd = self.output.get_ref().as_fd();
            let mut pfd = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
            let probing = self.guest.is_none() && self.vm.is_some();
            let max_step = if probing { 200 } else { 10_000 };
            let mut left = deadline.as_millis() as u64;
            loop {
                let step = left.min(max_step) as u16;
                match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(step)) {
                    Ok(0) if left > step as u64 => {
                        left -= step as u64;
                        if probing && let Some(boot) = self.vm.as_mut() {
                            boot.kvm_probe().map_err(HarnessError::Guest)?;
                        }
                    }
                    Ok(0) => return Err(HarnessError::Timeout(deadline.as_secs())),
                    Ok(_) => break,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(HarnessError::Io(e.into())),
                }
            }
        }
        match read_frame(&mut self.output)? {
            Some(f) => Ok(f),
            None => {
                let status = match self.child.try_wait() {
                    Ok(Some(s)) => s.to_string(),
                    _ => "end of output".to_string(),
                };
                Err(HarnessError::Died(status))
            }
        }
    }

    /// A failure of the executor in a VM, explained by the guest's console (and the VM
    /// stopped, so that the console is complete).
    fn guest_failed(&mut self, e: HarnessError) -> HarnessError {
        let what = match &e {
            HarnessError::Guest(_) => return e,
            HarnessError::Timeout(secs) if self.guest.is_none() => {
                format!("no word from the guest's init within {secs} s, --start-deadline")
            }
            HarnessError::Timeout(secs) => {
                format!("sent nothing for {secs} s: the guest or its executor hung")
            }
            HarnessError::Died(how) => format!("stopped talking ({how})"),
            e => e.to_string(),
        };
        // Give a dying guest a moment to finish its last words, then stop it.
        let give = Instant::now();
        while give.elapsed() < Duration::from_millis(500) {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let exited = self.child.try_wait().ok().flatten().map(|s| s.to_string());
        self.stop();
        if self.guest.is_none()
            && exited.is_some()
            && let Some(why) = self.vm.as_mut().and_then(|b| b.kvm_failed_early())
        {
            return HarnessError::Guest(why);
        }
        let booted = self.hello.page_size != 0;
        match &self.vm {
            Some(boot) => HarnessError::Guest(boot.explain(&what, booted, exited)),
            None => e,
        }
    }

    /// Runs one program in a fresh process tree. `dumps` asks for full page bytes after given
    /// ops (for reports). Whatever was queued with `submit` is read and dropped first.
    pub fn run(
        &mut self,
        program: &Program,
        dumps: &[DumpRequest],
    ) -> Result<KernelRun, HarnessError> {
        self.drain()?;
        self.submit(program, dumps)?;
        self.collect()
    }

    /// Sends a program without waiting for it: the executor runs it while the front does
    /// something else (checks the previous one). Replies come back in order, by `collect`.
    /// A large request is only sent once nothing is in flight (see `MAX_QUEUED_REQUEST`).
    pub fn submit(&mut self, program: &Program, dumps: &[DumpRequest]) -> Result<(), HarnessError> {
        let req = encode_request(program, dumps);
        if req.len() > MAX_QUEUED_REQUEST {
            self.drain()?;
        }
        if let Err(e) = write_frame(&mut self.input, &req) {
            let e = HarnessError::Died(format!("{e}; it no longer reads its input"));
            return Err(if self.vm.is_some() {
                self.guest_failed(e)
            } else {
                e
            });
        }
        if let Some(boot) = self.vm.as_mut() {
            boot.in_flight.push_back(program.to_string());
        }
        self.in_flight += 1;
        Ok(())
    }

    /// The reply to the oldest submitted program.
    pub fn collect(&mut self) -> Result<KernelRun, HarnessError> {
        if self.in_flight == 0 {
            return Err(HarnessError::Program(
                "asked for a reply to no program".into(),
            ));
        }
        // Counted as read even on an error: the stream is then unusable anyway.
        self.in_flight -= 1;
        let frame = self.read_reply(self.config.program_deadline)?;
        if let Some(boot) = self.vm.as_mut() {
            let program = boot.in_flight.pop_front();
            if let Some(trouble) = boot.console.new_trouble() {
                let msg = boot.explain_trouble(&trouble, program.as_deref());
                self.stop();
                return Err(HarnessError::Guest(msg));
            }
        }
        Ok(Dec::new(&frame).run()?)
    }

    /// How many submitted programs have not been collected.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Reads and drops the replies of every program in flight.
    fn drain(&mut self) -> Result<(), HarnessError> {
        while self.in_flight > 0 {
            self.collect()?;
        }
        Ok(())
    }
}

impl Executor {
    /// The executor's own bare fork + _exit + waitpid cost, `n` samples in nanoseconds.
    pub fn fork_bench(&mut self, n: u32) -> Result<Vec<u64>, HarnessError> {
        self.drain()?;
        write_frame(&mut self.input, &encode_fork_bench(n))
            .map_err(|e| HarnessError::Died(format!("{e}; it no longer reads its input")))?;
        let frame = self.read_reply(self.config.program_deadline)?;
        Ok(Dec::new(&frame).samples()?)
    }
}

impl Executor {
    /// Kills the executor's whole process group (the `--under` command and whatever it
    /// started, or qemu) and reaps the executor; then gives back the hugetlb pool share of
    /// every dead executor (a sweep, docs/SEMANTICS.md L7), so that the pool is back when this
    /// returns, not only once the guardian, which wakes after the executor's death, gets to it.
    fn stop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.vm.is_none() {
            super::hugetlb_pool::sweep();
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Spawns an executor (or the command it runs under, or qemu) with piped stdin and stdout, in
/// a process group of its own, with a parent-death signal; `no_core`: without core dumps (an
/// emulator that aborts would leave one of its whole guest's size).
fn spawn(cmd: &mut Command, stderr: Stdio, no_core: bool) -> std::io::Result<Child> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        // A process group of its own: everything the `--under` command starts (a wrapper
        // script's children) is killed with it (`Drop`), and a terminal's Ctrl-C reaches
        // the front alone, whose death takes the executor (PR_SET_PDEATHSIG) in order.
        .process_group(0);
    // SAFETY: between fork and exec, prctl only sets this process's parent-death signal:
    // the `--under` command (or the executor, or qemu) is SIGKILLed when the front dies, even
    // by SIGKILL, and then the executor under it by its own parent-death signal; setrlimit
    // only lowers this process's core size limit, from a struct on the stack.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if no_core {
                let zero = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &zero);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One job floats; each of several is given a CPU this process may use, in turn, and says
    /// so to its executor; a VM's executor is never pinned.
    #[test]
    fn jobs_are_spread_over_the_usable_cpus() {
        let config = ExecutorConfig::new(PathBuf::from("cowcheck"));
        assert_eq!(config.for_job(0, 1).cpu, None);
        assert!(
            !config
                .for_job(0, 1)
                .executor_args()
                .iter()
                .any(|a| a.starts_with("--cpu"))
        );
        let cpus = crate::kernel::cpus::allowed();
        assert!(!cpus.is_empty());
        for job in 0..2 * cpus.len() {
            let c = config.for_job(job, 3);
            assert_eq!(c.cpu, Some(cpus[job % cpus.len()]));
            assert!(
                c.executor_args()
                    .contains(&format!("--cpu={}", cpus[job % cpus.len()]))
            );
        }
        let mut vm = config.clone();
        vm.vm = Some(VmConfig::new(PathBuf::from("bzImage")));
        assert_eq!(vm.for_job(1, 2).cpu, None);
        assert_eq!(vm.for_job_within(0, 1, &[3]).cpu, None);
    }

    /// A set given pins even a lone job, to the set's CPUs in turn, and the executor is told
    /// the set (`--cpus`); without one, the set is left to the executor's inherited mask.
    #[test]
    fn jobs_within_a_set_are_kept_inside_it() {
        let config = ExecutorConfig::new(PathBuf::from("cowcheck"));
        let lone = config.for_job_within(0, 1, &[5]);
        assert_eq!((lone.cpu, lone.cpus.clone()), (Some(5), vec![5]));
        assert!(lone.executor_args().contains(&"--cpus=5".to_string()));
        for job in 0..4 {
            let c = config.for_job_within(job, 2, &[2, 7]);
            assert_eq!(c.cpu, Some([2, 7][job % 2]));
            assert!(c.executor_args().contains(&"--cpus=2,7".to_string()));
        }
        assert!(config.for_job(1, 2).cpus.is_empty());
        assert!(
            !config
                .for_job(1, 2)
                .executor_args()
                .iter()
                .any(|a| a.starts_with("--cpus"))
        );
    }
}

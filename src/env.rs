//! The environment report: what the machine is, so that a result can be read in context
//! (SEMANTICS §6.5: expected results depend on the kernel, its settings and the libc).
//!
//! Everything here is read from this process's own view: `uname`, `sysconf`, /proc and /sys
//! files, the libc's own version call, and feature probes that cost one harmless syscall each
//! or try a flag on a scratch page of their own (`kernel::probe::probe_features`, the
//! executor's probes). A file that is missing or unreadable is reported as "unavailable", never
//! a panic. This module never maps program memory or forks.
//!
//! With `--kernel` the machine is the guest: its init makes this report inside the VM (the
//! same code) and sends it as JSON; the front adds how the VM ran (`vm`, with `accel`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::kernel::{Executor, ExecutorConfig, HarnessError};

/// What "unavailable" reads as in reports.
pub const UNAVAILABLE: &str = "unavailable";

/// Environment variable that makes named features count as missing (space- or
/// comma-separated), for tests of the skip path: `COWCHECK_PRETEND_MISSING=dev-zero`.
pub const PRETEND_MISSING_VAR: &str = "COWCHECK_PRETEND_MISSING";

/// One feature probe: whether a feature the scenarios may need is there, and what showed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The name scenarios use in `# needs:` (`dev-zero`, `MADV_WIPEONFORK`).
    pub name: String,
    pub available: bool,
    /// What the probe did and saw, for the report ("madvise(0, 0, 18) = 0").
    pub detail: String,
}

/// The VM the executor ran in (`--kernel`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmReport {
    /// `kvm` or `tcg`.
    pub accel: String,
    /// Why not KVM, when TCG was chosen.
    pub accel_note: Option<String>,
    /// `--kernel` as given.
    pub kernel: String,
    pub memory_mib: u32,
    /// From qemu's start to the guest's init saying hello, in milliseconds.
    pub boot_ms: u64,
}

/// The machine as cowcheck sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub kernel_release: String,
    pub machine: String,
    pub page_size: usize,
    /// /sys/kernel/mm/transparent_hugepage/enabled, the selected value (`madvise`).
    pub thp_enabled: String,
    /// /sys/kernel/mm/transparent_hugepage/defrag, the selected value.
    pub thp_defrag: String,
    /// /sys/kernel/mm/transparent_hugepage/use_zero_page (1: read faults on THP-eligible
    /// ranges may map the huge zero page; docs/SEMANTICS.md L2).
    #[serde(default)]
    pub thp_use_zero_page: String,
    /// Multi-size THP (6.8+): each `hugepages-<size>kB/enabled` selection, smallest size
    /// first, as `size:choice` (`2048kB:inherit`); empty where the kernel has none.
    #[serde(default)]
    pub thp_sizes: Vec<String>,
    /// /sys/kernel/mm/ksm/run (0 off, 1 running, 2 unmerging).
    pub ksm_run: String,
    /// /proc/sys/vm/overcommit_memory (0 heuristic, 1 always, 2 never).
    pub overcommit_memory: String,
    /// CapEff from /proc/self/status, hex as the kernel prints it.
    pub cap_eff: String,
    /// Whether CAP_SYS_ADMIN is effective (pagemap PFNs need it), if CapEff was readable.
    pub cap_sys_admin: Option<bool>,
    /// `glibc`, `musl` or `unknown`.
    pub libc_name: String,
    pub libc_version: String,
    pub probes: Vec<Probe>,
    /// Set when the machine is a VM of `--kernel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmReport>,
}

impl Environment {
    /// The environment the executor runs in: the guest's report with `--kernel`, else this
    /// machine's.
    pub fn of(executor: &Executor) -> Environment {
        let Some(guest) = executor.guest() else {
            let mut env = Environment::detect();
            // Whose malloc the program calls is the executor's to say: `--under "env
            // LD_PRELOAD=..."` puts another allocator in front of glibc there, not here.
            if let Some(p) = env.probes.iter_mut().find(|p| p.name == "GLIBC_MALLOC")
                && p.available != executor.hello.features.glibc_malloc
            {
                p.available = executor.hello.features.glibc_malloc;
                p.detail = format!(
                    "the executor's malloc is {}glibc's own (its hello)",
                    if p.available { "" } else { "not " }
                );
            }
            // Whether clone(CLONE_VM) is accepted is the executor's to say too: qemu-user
            // refuses it (docs/SEMANTICS.md T34).
            let clone_vm = executor.hello.features.clone_vm;
            if let Some(p) = env.probes.iter_mut().find(|p| p.name == "CLONE_VM")
                && p.available != clone_vm
            {
                p.available = clone_vm;
                p.detail = format!(
                    "clone(CLONE_VM|SIGCHLD) is {}accepted by the executor (its hello)",
                    if clone_vm { "" } else { "not " }
                );
            }
            let dynamic = executor.hello.features.glibc_dynamic_threshold;
            if let Some(p) = env
                .probes
                .iter_mut()
                .find(|p| p.name == "GLIBC_DYNAMIC_THRESHOLD")
                && p.available != dynamic
            {
                p.available = dynamic;
                p.detail = format!(
                    "glibc's dynamic mmap threshold is {} in the executor's programs (its hello)",
                    if dynamic { "on" } else { "off" }
                );
            }
            // Whether hugetlb maps can be made is the executor's to say: it adds a share to
            // the pool as root (docs/SEMANTICS.md L7), which this process never does.
            let hugetlb = executor.hello.features.hugetlb;
            if let Some(p) = env.probes.iter_mut().find(|p| p.name == "HUGETLB")
                && p.available != hugetlb
            {
                p.available = hugetlb;
                p.detail = format!(
                    "the executor {} make MAP_HUGETLB maps of 2 MiB (its hello; as root it adds {} pages to vm.nr_hugepages for its life)",
                    if hugetlb { "can" } else { "cannot" },
                    crate::kernel::hugetlb_pool::SHARE
                );
            }
            return env;
        };
        let mut env: Environment = serde_json::from_str(&guest.environment_json)
            .unwrap_or_else(|_| Environment::unavailable(&executor.hello.release));
        env.probes = apply_pretend(std::mem::take(&mut env.probes));
        env.vm = Some(VmReport {
            accel: guest.accel.name().into(),
            accel_note: guest.accel_note.clone(),
            kernel: guest.kernel.display().to_string(),
            memory_mib: guest.memory_mib,
            boot_ms: guest.boot_time.as_millis() as u64,
        });
        env
    }

    /// The environment an executor of `config` would run in; with `--kernel` that needs a boot
    /// of the VM (whose failure is an error).
    pub fn detect_for(config: &ExecutorConfig) -> Result<Environment, HarnessError> {
        // Under `--under`, the executor's own hello says whose malloc it calls.
        if config.vm.is_none() && config.under.is_empty() {
            return Ok(Environment::detect());
        }
        let executor = Executor::start(config)?;
        Ok(Environment::of(&executor))
    }

    /// A report of nothing known (a guest whose report could not be read).
    fn unavailable(release: &str) -> Environment {
        Environment {
            kernel_release: release.to_string(),
            machine: UNAVAILABLE.into(),
            page_size: 0,
            thp_enabled: UNAVAILABLE.into(),
            thp_defrag: UNAVAILABLE.into(),
            thp_use_zero_page: UNAVAILABLE.into(),
            thp_sizes: Vec::new(),
            ksm_run: UNAVAILABLE.into(),
            overcommit_memory: UNAVAILABLE.into(),
            cap_eff: UNAVAILABLE.into(),
            cap_sys_admin: None,
            libc_name: UNAVAILABLE.into(),
            libc_version: UNAVAILABLE.into(),
            probes: Vec::new(),
            vm: None,
        }
    }

    /// Reads everything now.
    pub fn detect() -> Environment {
        let (kernel_release, machine) = match nix::sys::utsname::uname() {
            Ok(u) => (
                u.release().to_string_lossy().into_owned(),
                u.machine().to_string_lossy().into_owned(),
            ),
            Err(_) => (UNAVAILABLE.into(), UNAVAILABLE.into()),
        };
        let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(0) as usize;
        let cap_eff = status_field("/proc/self/status", "CapEff");
        let cap_sys_admin = cap_eff
            .as_deref()
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .map(|caps| caps & (1 << 21) != 0);
        let (libc_name, libc_version) = libc_identity();
        let probes = apply_pretend(probes(page_size));
        Environment {
            kernel_release,
            machine,
            page_size,
            thp_enabled: selected("/sys/kernel/mm/transparent_hugepage/enabled"),
            thp_defrag: selected("/sys/kernel/mm/transparent_hugepage/defrag"),
            thp_use_zero_page: first_line("/sys/kernel/mm/transparent_hugepage/use_zero_page")
                .unwrap_or_else(|| UNAVAILABLE.into()),
            thp_sizes: thp_sizes(),
            ksm_run: first_line("/sys/kernel/mm/ksm/run").unwrap_or_else(|| UNAVAILABLE.into()),
            overcommit_memory: first_line("/proc/sys/vm/overcommit_memory")
                .unwrap_or_else(|| UNAVAILABLE.into()),
            cap_eff: cap_eff.unwrap_or_else(|| UNAVAILABLE.into()),
            cap_sys_admin,
            libc_name,
            libc_version,
            probes,
            vm: None,
        }
    }

    /// The probe of a feature, by the name scenarios use.
    pub fn probe(&self, name: &str) -> Option<&Probe> {
        self.probes.iter().find(|p| p.name == name)
    }

    /// The report as `key value` lines.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![
            format!("kernel        {} {}", self.kernel_release, self.machine),
            format!("page size     {}", self.page_size),
            format!(
                "THP           enabled {}, defrag {}, use_zero_page {}",
                self.thp_enabled, self.thp_defrag, self.thp_use_zero_page
            ),
            format!(
                "mTHP          {}",
                if self.thp_sizes.is_empty() {
                    "none (no hugepages-*kB in /sys/kernel/mm/transparent_hugepage)".to_string()
                } else {
                    self.thp_sizes.join(" ")
                }
            ),
            format!("KSM run       {}", self.ksm_run),
            format!("overcommit    {}", self.overcommit_memory),
            format!(
                "CapEff        {}{}",
                self.cap_eff,
                match self.cap_sys_admin {
                    Some(true) => " (CAP_SYS_ADMIN)",
                    Some(false) => " (no CAP_SYS_ADMIN)",
                    None => "",
                }
            ),
            format!("libc          {} {}", self.libc_name, self.libc_version),
        ];
        if let Some(vm) = &self.vm {
            out.push(format!(
                "vm            qemu-system-x86_64, accel {}{}, {} MiB, booted in {:.1} s, kernel {}",
                vm.accel,
                vm.accel_note
                    .as_deref()
                    .map(|n| format!(" (not kvm: {n})"))
                    .unwrap_or_default(),
                vm.memory_mib,
                vm.boot_ms as f64 / 1000.0,
                vm.kernel
            ));
        }
        for p in &self.probes {
            out.push(format!(
                "feature       {:<22} {:<3} {}",
                p.name,
                if p.available { "yes" } else { "no" },
                p.detail
            ));
        }
        out
    }

    /// The report as JSON (the `environment` object of `--json` output).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.lines() {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Marks the features named in `COWCHECK_PRETEND_MISSING` as missing.
fn apply_pretend(probes: Vec<Probe>) -> Vec<Probe> {
    let pretend: Vec<String> = std::env::var(PRETEND_MISSING_VAR)
        .unwrap_or_default()
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    probes
        .into_iter()
        .map(|mut p| {
            if pretend.contains(&p.name) {
                p.available = false;
                p.detail = format!("{} (counted as missing: {PRETEND_MISSING_VAR})", p.detail);
            }
            p
        })
        .collect()
}

fn first_line(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.lines().next().unwrap_or("").trim().to_string())
}

/// The multi-size THP selections (`hugepages-<size>kB/enabled`), smallest size first.
fn thp_sizes() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/transparent_hugepage") else {
        return Vec::new();
    };
    let mut sizes: Vec<(u64, String)> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let kb = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let path = e.path().join("enabled");
            Some((kb, format!("{kb}kB:{}", selected(&path.to_string_lossy()))))
        })
        .collect();
    sizes.sort();
    sizes.into_iter().map(|(_, s)| s).collect()
}

/// The bracketed choice of a sysfs selector (`always [madvise] never` → `madvise`), or the
/// whole line when nothing is bracketed.
fn selected(path: &str) -> String {
    match first_line(path) {
        None => UNAVAILABLE.into(),
        Some(line) => line
            .split_once('[')
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(choice, _)| choice.to_string())
            .unwrap_or(line),
    }
}

/// A `Name:\tvalue` field of a /proc status file.
fn status_field(path: &str, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim().to_string())
    })
}

/// The libc's name and version as the libc itself says: `confstr(_CS_GNU_LIBC_VERSION)` gives
/// "glibc 2.36" on glibc; musl has no such call and no version API, so only its name is known.
fn libc_identity() -> (String, String) {
    #[cfg(target_env = "gnu")]
    {
        if let Some(text) = crate::kernel::probe::libc_version() {
            return match text.split_once(' ') {
                Some((name, version)) => (name.to_string(), version.to_string()),
                None => ("glibc".into(), text),
            };
        }
        ("glibc".into(), UNAVAILABLE.into())
    }
    #[cfg(target_env = "musl")]
    {
        ("musl".into(), UNAVAILABLE.into())
    }
    #[cfg(not(any(target_env = "gnu", target_env = "musl")))]
    {
        ("unknown".into(), UNAVAILABLE.into())
    }
}

/// Every feature probe. Each costs one syscall, or a few on a scratch page of its own, and
/// changes nothing.
fn probes(page_size: usize) -> Vec<Probe> {
    let mut out = Vec::new();
    let dev_zero = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/zero");
    out.push(Probe {
        name: "dev-zero".into(),
        available: dev_zero.is_ok(),
        detail: match &dev_zero {
            Ok(_) => "open(\"/dev/zero\", O_RDWR) ok".into(),
            Err(e) => format!("open(\"/dev/zero\", O_RDWR): {e}"),
        },
    });
    let maps = std::fs::read("/proc/self/maps");
    out.push(Probe {
        name: "proc-self-maps".into(),
        available: maps.as_ref().is_ok_and(|m| !m.is_empty()),
        detail: match &maps {
            Ok(m) => format!("/proc/self/maps readable ({} bytes)", m.len()),
            Err(e) => format!("/proc/self/maps: {e}"),
        },
    });
    // The flags the executor probes on scratch pages (docs/SEMANTICS.md, "Kernel features
    // probed at start"), by the names scenarios use.
    let f = crate::kernel::probe::probe_features(page_size.max(1));
    for (name, available, what) in [
        (
            "MAP_FIXED_NOREPLACE",
            f.noreplace,
            "mmap(MAP_FIXED_NOREPLACE) over a scratch page",
        ),
        (
            "MREMAP_DONTUNMAP",
            f.dontunmap,
            "mremap(MREMAP_MAYMOVE|MREMAP_DONTUNMAP) of a scratch private page",
        ),
        (
            "MREMAP_DONTUNMAP-shared",
            f.dontunmap_shared,
            "mremap(MREMAP_MAYMOVE|MREMAP_DONTUNMAP) of a scratch shared page",
        ),
        (
            "MREMAP_MULTI_VMA_MOVE",
            f.move_multi_vma,
            "mremap(MREMAP_MAYMOVE|MREMAP_FIXED) of three scratch VMAs at once (6.17)",
        ),
        (
            "THP_ALIGN",
            f.thp_align,
            "mmap of one PMD of anonymous memory lands on a PMD boundary (6.7)",
        ),
        (
            "CLONE_VM",
            f.clone_vm,
            "clone(CLONE_VM|SIGCHLD) of a child that exits",
        ),
        (
            "HUGETLB",
            f.hugetlb || crate::kernel::hugetlb_pool::can_add(page_size.max(1)),
            "mmap(MAP_HUGETLB) of one 2 MiB page, and munmap of its first base page refused (or, as root, an executor adds pages to the pool)",
        ),
        (
            "GLIBC_MALLOC",
            f.glibc_malloc,
            "dladdr: malloc lies in the object of gnu_get_libc_version (glibc's ptmalloc)",
        ),
        (
            "GLIBC_DYNAMIC_THRESHOLD",
            crate::kernel::malloc_probe::glibc_dynamic_threshold(f.glibc_malloc, page_size.max(1)),
            "a child's freed 1 MiB mapped chunk raises glibc's mmap threshold past 300000 bytes",
        ),
    ] {
        out.push(Probe {
            name: name.into(),
            available,
            detail: format!(
                "{what}: {}",
                if available {
                    "works"
                } else {
                    "refused or ignored"
                }
            ),
        });
    }
    for &(name, advice) in crate::program::tables::madv::NAMES {
        let known = crate::kernel::probe::advice_known(advice);
        out.push(Probe {
            name: name.into(),
            available: known.is_ok(),
            detail: match known {
                Ok(()) => format!("madvise(0, 0, {advice}) = 0"),
                Err(errno) => format!("madvise(0, 0, {advice}): {}", errno.desc()),
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_read_as_unavailable() {
        assert_eq!(selected("/nonexistent/cowcheck/enabled"), UNAVAILABLE);
        assert_eq!(first_line("/nonexistent/cowcheck/run"), None);
        assert_eq!(status_field("/nonexistent/status", "CapEff"), None);
    }

    #[test]
    fn the_report_has_every_field() {
        let env = Environment::detect();
        assert!(env.page_size.is_power_of_two());
        let text = env.to_string();
        for key in [
            "kernel",
            "page size",
            "THP",
            "KSM run",
            "overcommit",
            "CapEff",
            "libc",
            "feature",
        ] {
            assert!(text.contains(key), "{key} missing from\n{text}");
        }
        let json = env.to_json();
        assert!(json["probes"].as_array().is_some_and(|p| !p.is_empty()));
        assert!(env.probe("dev-zero").is_some());
        // Linux 6.18 has both (4.17, 5.7).
        for name in ["MAP_FIXED_NOREPLACE", "MREMAP_DONTUNMAP"] {
            assert!(
                env.probe(name).is_some_and(|p| p.available),
                "{name}: {text}"
            );
        }
        // On Linux ≥ 2.6.16 madvise knows DONTFORK; the probe must say so.
        assert!(
            env.probe("MADV_DONTFORK").is_some_and(|p| p.available),
            "{text}"
        );
    }
}

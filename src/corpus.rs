//! The scenario corpus: named traces with inline expectations, run on the kernel and the model,
//! reported in KTAP (the kselftest format) with kselftest's exit codes.
//!
//! A scenario is a `.trace` file under the corpus directory; its name is its path relative to
//! that directory without `.trace` (`fork/private-child-write`). Besides its ops it holds:
//! - `# source: ...` comment lines citing where the semantics come from (at least one);
//! - `# needs: FEATURE ...` comment lines naming [`crate::env`] probes it depends on (a
//!   scenario whose feature is missing is skipped with the reason);
//! - at least one inline expectation (`=> ...`).
//!
//! A scenario passes when the kernel and the model agree on every op and every snapshot, and
//! every expectation holds on both sides: the model predicts it and the kernel shows it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::check::Verdict as CheckVerdict;
use crate::env::Environment;
use crate::kernel::{DumpRequest, Executor, ExecutorConfig, HarnessError};
use crate::program::outcome::Outcome;
use crate::program::{Op, Program, Span, trace};

/// One scenario file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The path relative to the corpus directory, without `.trace`, with `/` separators.
    pub name: String,
    pub path: PathBuf,
}

/// The corpus could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("cannot read the corpus directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no scenarios (*.trace files) under {0}")]
    Empty(PathBuf),
}

/// Every `*.trace` file under `dir`, recursively, sorted by name. Each directory is read once:
/// a link to a directory is not followed (a `self -> .` link would run the corpus again, two
/// of them for ever), and a directory reached twice (a bind mount) is skipped by its device
/// and inode. Links to trace files are followed.
pub fn discover(dir: &Path) -> Result<Vec<Scenario>, CorpusError> {
    let mut found = Vec::new();
    let mut seen = std::collections::HashSet::new();
    walk(dir, dir, &mut found, &mut seen)?;
    if found.is_empty() {
        return Err(CorpusError::Empty(dir.to_path_buf()));
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn walk(
    root: &Path,
    dir: &Path,
    found: &mut Vec<Scenario>,
    seen: &mut std::collections::HashSet<(u64, u64)>,
) -> Result<(), CorpusError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).map_err(|source| CorpusError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    if !seen.insert((meta.dev(), meta.ino())) {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|source| CorpusError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if path.is_dir() {
            if !is_link {
                walk(root, &path, found, seen)?;
            }
        } else if path.extension().is_some_and(|e| e == "trace") {
            let rel = path.strip_prefix(root).unwrap_or(&path).with_extension("");
            let name = rel
                .components()
                .map(|c| {
                    c.as_os_str()
                        .to_string_lossy()
                        .replace(char::is_whitespace, "_")
                })
                .collect::<Vec<_>>()
                .join("/");
            found.push(Scenario { name, path });
        }
    }
    Ok(())
}

/// What a scenario's comments declare.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// `# source:` lines, without the keyword.
    pub sources: Vec<String>,
    /// Feature names from `# needs:` lines.
    pub needs: Vec<String>,
}

/// Reads the `source:` and `needs:` comment lines.
pub fn meta(program: &Program) -> Meta {
    let mut m = Meta::default();
    for c in &program.comments {
        let Some(text) = c.text.as_deref().map(str::trim) else {
            continue;
        };
        if let Some(s) = text.strip_prefix("source:") {
            m.sources.push(s.trim().to_string());
        } else if let Some(n) = text.strip_prefix("needs:") {
            m.needs.extend(
                n.split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
    }
    m
}

/// The result of one scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// The reasons, one line each.
    Fail(Vec<String>),
    Skip(String),
}

/// A scenario's result with its name and time.
#[derive(Clone, Debug)]
pub struct ScenarioResult {
    pub name: String,
    pub verdict: Verdict,
    pub elapsed: Duration,
}

/// Loads a scenario and checks its declarations; `Err` is a verdict already (fail or skip).
pub fn load(path: &Path, env: &Environment) -> Result<Program, Verdict> {
    let bytes = crate::files::read_input(path).map_err(|e| Verdict::Fail(vec![e]))?;
    let program = trace::parse(&bytes)
        .map_err(|e| Verdict::Fail(vec![format!("{}: {e}", path.display())]))?;
    let m = meta(&program);
    if m.sources.iter().all(|s| s.is_empty()) {
        return Err(Verdict::Fail(vec![
            "the scenario cites no source: add a `# source: ...` line (man page, kernel doc, peer test or known bug)".into(),
        ]));
    }
    if program.expects.is_empty() {
        return Err(Verdict::Fail(vec![
            "the scenario has no expectation: end at least one op with `=> ...`".into(),
        ]));
    }
    let mut missing = Vec::new();
    for need in &m.needs {
        match env.probe(need) {
            None => {
                let known: Vec<&str> = env.probes.iter().map(|p| p.name.as_str()).collect();
                return Err(Verdict::Fail(vec![format!(
                    "unknown feature {need:?} in `# needs:`; known: {}",
                    known.join(", ")
                )]));
            }
            Some(p) if !p.available => missing.push(format!("{} ({})", p.name, p.detail)),
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        return Err(Verdict::Skip(format!(
            "missing feature: {}",
            missing.join(", ")
        )));
    }
    Ok(program)
}

/// Runs one loaded scenario on the kernel and the model.
pub fn check_program(executor: &mut Executor, program: &Program) -> Result<Verdict, HarnessError> {
    let ps = executor.page_size();
    let (verdict, run) = crate::trial::run(executor, program, None)?;
    let mut reasons = Vec::new();
    if let CheckVerdict::Diverged(d) = &verdict {
        let text = crate::report::divergence_text(program, d, &[]);
        reasons.push(format!(
            "kernel and model diverge after op {} ({}): {}",
            d.op_index + 1,
            crate::check::expectations::op_text(program, d.op_index),
            d.signature(program)
        ));
        reasons.extend(text.lines().map(|l| format!("  {l}")));
    }
    let mut kernel_misses = Vec::new();
    for miss in crate::check::expectations::misses(program, &run.outcomes, ps) {
        if miss.side == crate::check::expectations::Side::Kernel {
            kernel_misses.push(miss.op_index);
        }
        reasons.push(miss.describe(program));
    }
    // For reads the kernel got wrong, show the bytes it had (a rerun with page dumps).
    for i in kernel_misses.into_iter().take(2) {
        if let (Op::Read { proc, map, span }, Some(Outcome::Read { .. })) =
            (&program.ops[i], run.outcomes.get(i))
        {
            let pages: Vec<u16> = span.page_range().pages().take(2).collect();
            let dumps: Vec<DumpRequest> = pages
                .iter()
                .map(|&page| DumpRequest {
                    after_op: i as u32,
                    proc: *proc,
                    map: *map,
                    page,
                })
                .collect();
            if let Ok(rerun) = executor.run(program, &dumps) {
                for (d, bytes) in &rerun.dumps {
                    if let Some(bytes) = bytes {
                        let range = match span {
                            Span::Bytes { .. } => span.bytes_in_page(ps),
                            Span::Pages(_) => 0..bytes.len(),
                        };
                        let shown = bytes.get(range).unwrap_or(bytes);
                        reasons.push(format!(
                            "  kernel bytes of {} {} page {}: {}",
                            d.proc,
                            d.map,
                            d.page,
                            crate::report::describe_bytes(shown)
                        ));
                    }
                }
            }
        }
    }
    if let Some(e) = &run.harness_error {
        reasons.push(format!("the executor gave up: {e}"));
    }
    Ok(if reasons.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(reasons)
    })
}

/// Runs scenarios against one executor, starting a fresh one when the last died.
pub struct Runner {
    config: ExecutorConfig,
    executor: Option<Executor>,
    pub env: Environment,
}

impl Runner {
    pub fn new(config: ExecutorConfig, env: Environment) -> Runner {
        Runner {
            config,
            executor: None,
            env,
        }
    }

    fn executor(&mut self) -> Result<&mut Executor, HarnessError> {
        if self.executor.is_none() {
            self.executor = Some(Executor::start(&self.config)?);
        }
        Ok(self.executor.as_mut().expect("just started"))
    }

    /// Runs the scenario at `path`.
    pub fn run(&mut self, scenario: &Scenario) -> ScenarioResult {
        let start = Instant::now();
        let verdict = match load(&scenario.path, &self.env) {
            Err(v) => v,
            Ok(program) => match self.executor().and_then(|ex| check_program(ex, &program)) {
                Ok(v) => v,
                Err(e) => {
                    // Whatever broke, the next scenario gets a fresh executor.
                    self.executor = None;
                    Verdict::Fail(vec![format!("harness error (not the kernel's fault): {e}")])
                }
            },
        };
        ScenarioResult {
            name: scenario.name.clone(),
            verdict,
            elapsed: start.elapsed(),
        }
    }
}

/// The KTAP preamble: version line, plan, and the environment report as diagnostics.
pub fn ktap_header(tests: usize, env: &Environment) -> String {
    let mut s = format!("KTAP version 1\n1..{tests}\n");
    for line in env.lines() {
        s.push_str(&format!("# {line}\n"));
    }
    s
}

/// One result as KTAP: diagnostics first, then `ok N name`, `not ok N name` or
/// `ok N name # SKIP reason`.
pub fn ktap_result(number: usize, r: &ScenarioResult) -> String {
    match &r.verdict {
        Verdict::Pass => format!("ok {number} {}\n", r.name),
        Verdict::Skip(reason) => format!("ok {number} {} # SKIP {}\n", r.name, one_line(reason)),
        Verdict::Fail(reasons) => {
            let mut s = String::new();
            for line in reasons {
                s.push_str(&format!("# {}\n", one_line(line)));
            }
            s.push_str(&format!("not ok {number} {}\n", r.name));
            s
        }
    }
}

/// The closing totals line, as kselftest prints it.
pub fn ktap_totals(results: &[ScenarioResult], elapsed: Duration) -> String {
    let (pass, fail, skip) = counts(results);
    format!(
        "# Totals: pass:{pass} fail:{fail} xfail:0 xpass:0 skip:{skip} error:0 ({:.1} s)\n",
        elapsed.as_secs_f64()
    )
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// (passed, failed, skipped).
pub fn counts(results: &[ScenarioResult]) -> (usize, usize, usize) {
    let mut c = (0, 0, 0);
    for r in results {
        match r.verdict {
            Verdict::Pass => c.0 += 1,
            Verdict::Fail(_) => c.1 += 1,
            Verdict::Skip(_) => c.2 += 1,
        }
    }
    c
}

/// kselftest's exit status: 1 if anything failed, else 4 if everything was skipped, else 0.
pub fn exit_code(results: &[ScenarioResult]) -> u8 {
    let (pass, fail, skip) = counts(results);
    if fail > 0 {
        1
    } else if skip > 0 && pass == 0 {
        4
    } else {
        0
    }
}

/// One result for people (without `--tap`).
pub fn human_result(r: &ScenarioResult) -> String {
    let ms = r.elapsed.as_secs_f64() * 1000.0;
    match &r.verdict {
        Verdict::Pass => format!("PASS  {:<52} {ms:>6.1} ms\n", r.name),
        Verdict::Skip(reason) => format!("SKIP  {:<52} {reason}\n", r.name),
        Verdict::Fail(reasons) => {
            let mut s = format!("FAIL  {:<52} {ms:>6.1} ms\n", r.name);
            for line in reasons {
                s.push_str(&format!("      {line}\n"));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, verdict: Verdict) -> ScenarioResult {
        ScenarioResult {
            name: name.into(),
            verdict,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn exit_codes_follow_kselftest() {
        let pass = result("a", Verdict::Pass);
        let skip = result("b", Verdict::Skip("no".into()));
        let fail = result("c", Verdict::Fail(vec!["x".into()]));
        assert_eq!(exit_code(&[pass.clone(), skip.clone()]), 0);
        assert_eq!(exit_code(&[skip.clone(), skip.clone()]), 4);
        assert_eq!(exit_code(&[pass, skip, fail]), 1);
    }

    #[test]
    fn ktap_lines() {
        assert_eq!(
            ktap_result(3, &result("fork/a", Verdict::Pass)),
            "ok 3 fork/a\n"
        );
        assert_eq!(
            ktap_result(4, &result("b", Verdict::Skip("missing feature: x".into()))),
            "ok 4 b # SKIP missing feature: x\n"
        );
        assert_eq!(
            ktap_result(5, &result("c", Verdict::Fail(vec!["why\nnot".into()]))),
            "# why not\nnot ok 5 c\n"
        );
    }

    #[test]
    fn meta_reads_sources_and_needs() {
        let p = trace::parse_str(
            "cowcheck-trace 1\n# source: man:fork(2)\n# needs: dev-zero, MADV_FREE\np0 exit => ok\n",
        )
        .expect("parses");
        let m = meta(&p);
        assert_eq!(m.sources, vec!["man:fork(2)".to_string()]);
        assert_eq!(
            m.needs,
            vec!["dev-zero".to_string(), "MADV_FREE".to_string()]
        );
    }
}

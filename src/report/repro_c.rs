//! Standalone C reproducers: a program that replays a trace on the real kernel with libc alone
//! and checks every op against what the model predicts, so that a kernel developer can rerun a
//! finding without Rust.
//!
//! The generated program mirrors cowcheck's executor: a coordinator process forks the root of
//! the program's process tree; every process of the tree is a worker that waits on its own pipe
//! for the index of the next op, performs it on its own memory and writes back what it saw (a
//! fatal SIGSEGV or SIGBUS is reported by an SA_SIGINFO handler, then delivered for real).
//! Expectations come from the model, run with `Model::apply(op, None)`: a read is compared by a
//! digest of the bytes (the same function as `outcome::digest`, ported to C), a death by signal,
//! si_code and page, a failure by errno. Where cowcheck compares the whole state (after every
//! fork and exit, and at the end), every live process checks each page of every mapping handle:
//! mapped or not (`msync`), and its digest.
//!
//! `poke` writes through the kernel as the executor does (pwrite on /proc/self/mem, or
//! process_vm_writev on itself, a page at a time; the first failing page's errno ends it).
//! `vmsplice` and `pipe-read` use one pipe, made non-blocking by the root process before the
//! first op and inherited by every process. A pipe page may be allowed several contents (the
//! splicer's own later write may or may not show through): the reproducer accepts each digest
//! the model allows, found by offering the model every content seen at the spliced address.
//!
//! Output is KTAP (`KTAP version 1`, `1..N`, `ok N - desc` / `not ok N - desc`); the exit status
//! is 0 when everything matched the model and 1 otherwise (4, kselftest's skip, when the page
//! size differs from the one the reproducer was generated for).
//!
//! The generator knows the op kinds listed in [`SUPPORTED`]; any other kind is an error, never a
//! guess. This module writes text and runs the C compiler; it never touches program memory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::model::{Life, Model, UNREADABLE};
use crate::program::outcome::{BUS_ADRERR, Outcome, SEGV_ACCERR, SEGV_MAPERR, SIGBUS, SIGSEGV};
use crate::program::{
    Advice, BadArg, MapKind, Op, OpKind, Pattern, PlaceHow, ProcId, Program, Prot, Span, Syscall,
    Via, caps,
};

/// The compiler flags a reproducer must pass cleanly with.
pub const CFLAGS: &[&str] = &["-std=gnu11", "-O1", "-Wall", "-Wextra", "-Werror"];

/// Op kinds the generator can write C for. A successful `advise ... free` is refused: what the
/// pages read afterwards is nondeterministic (old or zero, SEMANTICS F2) and the reproducer
/// checks exact digests.
pub const SUPPORTED: &[OpKind] = &[
    OpKind::Map,
    OpKind::Write,
    OpKind::Read,
    OpKind::Fork,
    OpKind::Exit,
    OpKind::Unmap,
    OpKind::Protect,
    OpKind::Advise,
    OpKind::Remap,
    OpKind::Invalid,
    OpKind::Poke,
    OpKind::Vmsplice,
    OpKind::PipeRead,
];

/// EFAULT and EAGAIN (asm-generic/errno-base.h).
const EFAULT: i32 = 14;

/// A page in the program's pipe, as the generator follows it alongside the model: who spliced
/// it and from where, and every page content that was ever visible at that address in any live
/// process from the splice until it is read (a superset of the model's allowed views, which the
/// model then filters, see `pipe_read_digests`).
struct PipePage {
    addr: u64,
    seen: Vec<(u64, Vec<u8>)>,
}

impl PipePage {
    fn note(&mut self, bytes: Vec<u8>) {
        let d = crate::program::outcome::digest(&bytes);
        if !self.seen.iter().any(|(x, _)| *x == d) {
            self.seen.push((d, bytes));
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReproError {
    #[error(
        "op {index} ({op}): the C reproducer cannot express `{kind}` ops yet (it knows {known}); nothing was written"
    )]
    Unsupported {
        index: usize,
        op: String,
        kind: &'static str,
        known: String,
    },
    #[error("the trace is not a valid program: op {index}: {message}")]
    Invalid { index: usize, message: String },
    #[error("the model cannot run the trace: {0}")]
    Model(String),
    #[error("cannot run the C compiler `{cc}`: {source}")]
    Spawn { cc: String, source: std::io::Error },
    #[error("`{command}` failed ({status}):\n{stderr}")]
    Compile {
        command: String,
        status: String,
        stderr: String,
    },
}

fn unsupported(index: usize, op: &Op) -> ReproError {
    ReproError::Unsupported {
        index: index + 1,
        op: op.to_string(),
        kind: op.kind().name(),
        known: SUPPORTED
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A C string literal of `s` (escaped; UTF-8 passes through).
fn c_str(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' | '\0' => out.push(' '),
            '?' => out.push_str("\\?"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `/* ... */`-safe text.
fn c_comment(s: &str) -> String {
    s.replace("*/", "* /")
}

fn signal_words(signal: i32, code: i32) -> String {
    let sig = match signal {
        SIGSEGV => "SIGSEGV",
        SIGBUS => "SIGBUS",
        _ => "a signal",
    };
    let code = match (signal, code) {
        (SIGSEGV, SEGV_MAPERR) => "SEGV_MAPERR",
        (SIGSEGV, SEGV_ACCERR) => "SEGV_ACCERR",
        (SIGBUS, BUS_ADRERR) => "BUS_ADRERR",
        _ => "si_code",
    };
    format!("{sig} ({code})")
}

/// One row of a state check: page `page` of handle `map` must be mapped or not, and if
/// readable, have this digest.
struct Row {
    map: u8,
    page: u16,
    mapped: bool,
    readable: bool,
    digest: u64,
}

struct StateCheck {
    after_op: usize,
    proc: ProcId,
    rows: Vec<Row>,
}

/// Generates the C reproducer of `program` for pages of `page_size` bytes. `title` goes into
/// the header comment (the trace's name or path).
pub fn generate(program: &Program, page_size: usize, title: &str) -> Result<String, ReproError> {
    program
        .validate()
        .map_err(|(index, e)| ReproError::Invalid {
            index: index + 1,
            message: e.message,
        })?;
    for (i, op) in program.ops.iter().enumerate() {
        if !SUPPORTED.contains(&op.kind()) {
            return Err(unsupported(i, op));
        }
    }
    let nproc = program
        .ops
        .iter()
        .map(|op| match *op {
            Op::Fork { proc, child } => proc.0.max(child.0),
            _ => op.proc().0,
        })
        .max()
        .map_or(1, |m| m as usize + 1);
    let mut map_pages = [0u16; caps::MAX_MAPS];
    for op in &program.ops {
        match *op {
            Op::Map { map, pages, .. } | Op::MapAt { map, pages, .. } => {
                map_pages[map.0 as usize] = map_pages[map.0 as usize].max(pages)
            }
            Op::Remap {
                result, new_pages, ..
            } => map_pages[result.0 as usize] = map_pages[result.0 as usize].max(new_pages),
            _ => {}
        }
    }
    let nmap = map_pages.iter().rposition(|&p| p > 0).map_or(1, |i| i + 1);

    // Run the model and record, op by op, what it predicts.
    let mut model = Model::new(page_size);
    let mut digests_c = String::new();
    let mut ops_c = String::new();
    let mut checks: Vec<StateCheck> = Vec::new();
    // Pages of handles where the kernel, not the model, decides what is mapped: the source of a
    // remap that may move (moved or grown in place), the range a hint names (taken or not).
    let mut uncertain: Vec<(u8, std::ops::Range<u16>)> = Vec::new();
    // Handles the kernel placed by its own choice, with the op that made them: in processes
    // that did not inherit them, whether their range is mapped depends on that choice.
    let mut placed: Vec<Placed> = Vec::new();
    let mut birth = [0usize; caps::MAX_PROCS];
    let last = program.ops.len().saturating_sub(1);
    // The pages in the program's pipe, oldest first, as the model holds them.
    let mut pipe: std::collections::VecDeque<PipePage> = Default::default();
    for (i, op) in program.ops.iter().enumerate() {
        // A vmsplice of a write-only page may fail with EFAULT or succeed, at the kernel's
        // choice (the model allows both): the pipe's later contents would then differ, and the
        // reproducer follows one line of events only.
        if let Op::Vmsplice { .. } = op {
            let a = model.clone().apply(op, None);
            let b = model
                .clone()
                .step(op, Some(&Outcome::Failed { errno: EFAULT }));
            if let (Ok(a), Ok(b)) = (a, b)
                && a != b
            {
                return Err(ReproError::Unsupported {
                    index: i + 1,
                    op: op.to_string(),
                    kind: "vmsplice of a write-only page",
                    known: "every other vmsplice: the model allows both success and EFAULT there, and the pipe's later contents depend on which".into(),
                });
            }
        }
        // What a pipe-read may see: computed before the model consumes the page.
        let pipe_allowed = match op {
            Op::PipeRead { .. } => pipe.front().map(|p| pipe_read_digests(&model, op, p)),
            _ => None,
        };
        let outcome = model
            .apply(op, None)
            .map_err(|e| ReproError::Model(e.to_string()))?;
        match (op, &outcome) {
            (Op::Vmsplice { proc, map, page }, Outcome::Done) => {
                let addr = model
                    .handle(*map)
                    .map_or(0, |h| h.base + *page as u64 * page_size as u64);
                let mut p = PipePage {
                    addr,
                    seen: Vec::new(),
                };
                if let Some(b) = model.page_bytes(*proc, addr) {
                    p.note(b);
                }
                // A page not faulted in yet may be spliced as the zero page.
                p.note(vec![0u8; page_size]);
                pipe.push_back(p);
            }
            (Op::PipeRead { .. }, Outcome::Read { .. }) => {
                pipe.pop_front();
            }
            _ => {}
        }
        if (0..caps::MAX_PROCS).all(|q| model.life(ProcId(q as u8)) != Life::Alive) {
            pipe.clear();
        }
        // Every content visible at a spliced address after this op, in any live process: the
        // splicer's own later write may go in place (and show through the pipe), a shared page
        // is one page for every mapper.
        for p in pipe.iter_mut() {
            for q in 0..caps::MAX_PROCS as u8 {
                if model.life(ProcId(q)) == Life::Alive
                    && let Some(b) = model.page_bytes(ProcId(q), p.addr)
                {
                    p.note(b);
                }
            }
        }
        if let (
            Op::Advise {
                advice: Advice::Free,
                ..
            },
            Outcome::Done,
        ) = (op, &outcome)
        {
            return Err(ReproError::Unsupported {
                index: i + 1,
                op: op.to_string(),
                kind: "advise free (when it succeeds)",
                known: "every other op: after MADV_FREE each page reads old or zero at the kernel's choice, and the reproducer checks exact bytes".into(),
            });
        }
        let (proc, map) = (op.proc().0, op.map().map_or(-1, |m| m.0 as i32));
        let mut f = format!(
            ".verb = {}, .proc = {proc}, .map = {map}",
            verb_name(op, i)?
        );
        match *op {
            Op::Map { kind, pages, .. } => {
                write!(
                    f,
                    ", .kind = {}, .first = 0, .npages = {pages}",
                    kind_name(kind)
                )
                .ok();
            }
            Op::Write { span, pattern, .. } => {
                write!(f, "{}", span_fields(span, page_size)).ok();
                let (ramp, byte) = match pattern {
                    Pattern::Fill(b) => (0, b),
                    Pattern::Ramp(b) => (1, b),
                };
                write!(f, ", .ramp = {ramp}, .byte = 0x{byte:02x}").ok();
            }
            Op::Read { span, .. } => write!(f, "{}", span_fields(span, page_size)).unwrap_or(()),
            Op::Poke {
                span, pattern, via, ..
            } => {
                write!(f, "{}", span_fields(span, page_size)).ok();
                let (ramp, byte) = match pattern {
                    Pattern::Fill(b) => (0, b),
                    Pattern::Ramp(b) => (1, b),
                };
                let via = match via {
                    Via::Mem => "VIA_MEM",
                    Via::Vm => "VIA_VM",
                };
                write!(f, ", .ramp = {ramp}, .byte = 0x{byte:02x}, .via = {via}").ok();
            }
            Op::Vmsplice { page, .. } => write!(f, ", .first = {page}, .npages = 1").unwrap_or(()),
            Op::Fork { child, .. } => write!(f, ", .kind = {}", child.0).unwrap_or(()),
            Op::Unmap { pages, .. } => {
                write!(f, ", .first = {}, .npages = {}", pages.start, pages.len()).ok();
            }
            Op::MapAt {
                kind,
                pages,
                how,
                at,
                ..
            } => {
                let how = match how {
                    PlaceHow::Fixed => "HOW_FIXED",
                    PlaceHow::NoReplace => "HOW_NOREPLACE",
                    PlaceHow::Hint => "HOW_HINT",
                };
                write!(
                    f,
                    ", .kind = {}, .first = 0, .npages = {pages}, .how = {how}, .at_map = {}, .at_page = {}",
                    kind_name(kind),
                    at.map.0,
                    at.page
                )
                .ok();
            }
            Op::Protect { pages, prot, .. } => {
                let prot = match prot {
                    Prot::None => "PROT_NONE",
                    Prot::Read => "PROT_READ",
                    Prot::ReadWrite => "PROT_READ | PROT_WRITE",
                    Prot::Write => "PROT_WRITE",
                };
                write!(
                    f,
                    ", .first = {}, .npages = {}, .prot = {prot}",
                    pages.start,
                    pages.len()
                )
                .ok();
            }
            Op::Advise { pages, advice, .. } => {
                write!(
                    f,
                    ", .first = {}, .npages = {}, .advice = {} /* {} */",
                    pages.start,
                    pages.len(),
                    advice.number(),
                    advice.name()
                )
                .ok();
            }
            Op::Remap {
                old,
                new_pages,
                flags,
                result,
                ..
            } => {
                let mut fl = Vec::new();
                if flags.maymove {
                    fl.push("MREMAP_MAYMOVE");
                }
                if flags.dontunmap {
                    fl.push("MREMAP_DONTUNMAP");
                }
                if flags.fixed.is_some() {
                    fl.push("MREMAP_FIXED");
                }
                let fl = if fl.is_empty() {
                    "0".to_string()
                } else {
                    fl.join(" | ")
                };
                let (am, ap) = flags.fixed.map_or((-1, 0), |a| (a.map.0 as i32, a.page));
                write!(
                    f,
                    ", .first = {}, .npages = {}, .new_pages = {new_pages}, .remap_flags = {fl}, .at_map = {am}, .at_page = {ap}, .result_map = {}",
                    old.start,
                    old.end - old.start,
                    result.0
                )
                .ok();
            }
            Op::Invalid { call, bad, .. } => {
                let call = Syscall::ALL.iter().position(|c| *c == call).unwrap_or(0);
                let bad = BadArg::ALL.iter().position(|b| *b == bad).unwrap_or(0);
                write!(f, ", .call = {call}, .bad = {bad}").ok();
            }
            _ => {}
        }
        // Handles whose addresses the op needs (the model skips the op without them).
        let needs: Vec<i32> = match *op {
            Op::Map { .. } | Op::Fork { .. } | Op::Exit { .. } => vec![],
            Op::MapAt { at, .. } => vec![at.map.0 as i32],
            Op::Remap { map, flags, .. } => {
                let mut v = vec![map.0 as i32];
                v.extend(flags.fixed.map(|a| a.map.0 as i32));
                v
            }
            _ => op.map().map(|m| m.0 as i32).into_iter().collect(),
        };
        write!(
            f,
            ", .need = {{ {}, {} }}",
            needs.first().copied().unwrap_or(-1),
            needs.get(1).copied().unwrap_or(-1)
        )
        .ok();
        #[allow(unreachable_patterns)]
        let says = match &outcome {
            // The model never predicts a hang (only an observation can be one).
            Outcome::Skipped | Outcome::Hung => {
                f.push_str(", .want = RES_SKIPPED");
                format!(
                    "skipped: {} is not alive or the mapping was never made",
                    op.proc()
                )
            }
            Outcome::Mapped { .. } | Outcome::Done => {
                f.push_str(", .want = RES_OK");
                match op {
                    Op::Map { pages, .. } | Op::MapAt { pages, .. } => {
                        format!("maps {pages} page(s)")
                    }
                    Op::Remap { result, .. } => format!("remaps as {result}"),
                    Op::Protect { prot, .. } => format!("mprotect {} succeeds", prot.name()),
                    Op::Advise { advice, .. } => format!("madvise {} succeeds", advice.name()),
                    Op::Write { .. } => "writes".into(),
                    Op::Fork { child, .. } => format!("forks {child}"),
                    Op::Exit { .. } => "exits".into(),
                    Op::Unmap { .. } => "unmaps".into(),
                    Op::Poke { via, .. } => format!("writes through {}", via_words(*via)),
                    Op::Vmsplice { .. } => "vmsplices one page into the pipe".into(),
                    _ => "succeeds".into(),
                }
            }
            Outcome::Read { .. } if matches!(op, Op::PipeRead { .. }) => {
                let allowed = pipe_allowed.ok_or_else(|| {
                    ReproError::Model(format!(
                        "op {} ({op}): the model reads a page from a pipe the generator sees empty",
                        i + 1
                    ))
                })?;
                let name = format!("d{i}");
                let digests: Vec<u64> = allowed.iter().map(|(d, _)| *d).collect();
                write!(
                    f,
                    ", .want = RES_READ, .any = 1, .ndigests = {}, .digests = {name}",
                    digests.len()
                )
                .ok();
                push_digests(&mut digests_c, &name, &digests);
                let words: Vec<String> = allowed
                    .iter()
                    .map(|(d, b)| {
                        if b.is_empty() {
                            format!("digest {d:016x}")
                        } else {
                            crate::report::describe_bytes(b)
                        }
                    })
                    .collect();
                if words.len() == 1 {
                    format!("reads one page from the pipe: {}", words[0])
                } else {
                    format!(
                        "reads one page from the pipe, any of: {} (whether the splicer's own later write went in place is the kernel's choice)",
                        words.join(" | ")
                    )
                }
            }
            Outcome::Read { digests } => {
                let name = format!("d{i}");
                write!(
                    f,
                    ", .want = RES_READ, .ndigests = {}, .digests = {name}",
                    digests.len()
                )
                .ok();
                push_digests(&mut digests_c, &name, digests);
                format!("reads {}", read_words(&model, op, page_size))
            }
            Outcome::Killed { death, digests } => {
                let (wm, wp) = model
                    .locate(death.page)
                    .map_or((-1, -1), |(m, p)| (m.0 as i32, p as i32));
                let name = format!("d{i}");
                write!(
                    f,
                    ", .want = RES_KILLED, .want_sig = {}, .want_code = {}, .want_map = {wm}, .want_page = {wp}, .ndigests = {}, .digests = {name}",
                    death.signal, death.code, digests.len()
                )
                .ok();
                push_digests(&mut digests_c, &name, digests);
                let at = if wm >= 0 {
                    format!(" at m{wm} page {wp}")
                } else {
                    String::new()
                };
                format!("dies by {}{at}", signal_words(death.signal, death.code))
            }
            Outcome::Failed { errno } => {
                write!(f, ", .want = RES_FAILED, .want_errno = {errno}").ok();
                format!(
                    "fails with {}",
                    crate::program::tables::errno_name(*errno)
                        .map_or_else(|| format!("errno {errno}"), String::from)
                )
            }
            other => {
                return Err(ReproError::Model(format!(
                    "op {} ({op}): the model predicts {other:?}, which the C reproducer cannot check",
                    i + 1
                )));
            }
        };
        write!(
            f,
            ", .text = {}, .says = {}",
            c_str(&op.to_string()),
            c_str(&says)
        )
        .ok();
        let line = match program.expect_of(i) {
            Some(e) => format!("{op} => {e}"),
            None => op.to_string(),
        };
        writeln!(ops_c, "\t/* {:>3}: {} */", i + 1, c_comment(&line)).ok();
        writeln!(ops_c, "\t{{ {f} }},").ok();

        match (*op, &outcome) {
            (
                Op::Remap {
                    map,
                    old,
                    flags,
                    result,
                    proc,
                    ..
                },
                Outcome::Mapped { .. },
            ) if flags.fixed.is_none() && (flags.maymove || flags.dontunmap) => {
                if !flags.dontunmap {
                    uncertain.push((map.0, old.start..old.end.max(old.start + 1)));
                }
                placed.push(Placed {
                    map: result.0,
                    by: proc,
                    at: i,
                });
            }
            (
                Op::MapAt {
                    how: PlaceHow::Hint,
                    at,
                    pages,
                    map,
                    proc,
                    ..
                },
                _,
            ) => {
                uncertain.push((at.map.0, at.page..at.page.saturating_add(pages)));
                placed.push(Placed {
                    map: map.0,
                    by: proc,
                    at: i,
                });
            }
            (Op::Map { map, proc, .. }, _) => placed.push(Placed {
                map: map.0,
                by: proc,
                at: i,
            }),
            (Op::Fork { child, .. }, _) => birth[child.0 as usize] = i,
            _ => {}
        }
        if op.snapshot_after() || i == last {
            let scope = Scope {
                uncertain: &uncertain,
                placed: &placed,
                birth: &birth,
            };
            checks.extend(state_checks(&mut model, i, page_size, &scope));
        }
    }

    let mut rows_c = String::new();
    let mut checks_c = String::new();
    for (k, c) in checks.iter().enumerate() {
        writeln!(rows_c, "static const struct row rows{k}[] = {{").ok();
        for r in &c.rows {
            writeln!(
                rows_c,
                "\t{{ .map = {}, .page = {}, .mapped = {}, .readable = {}, .digest = 0x{:016x}ull }},",
                r.map, r.page, r.mapped as u8, r.readable as u8, r.digest
            )
            .ok();
        }
        writeln!(rows_c, "\t{{ .map = -1 }}\n}};").ok();
        let (pages, readable) = (
            c.rows.iter().filter(|r| r.mapped).count(),
            c.rows.iter().filter(|r| r.readable).count(),
        );
        let desc = format!(
            "state of {} after op {} ({}): {pages} page(s) mapped, {readable} compared, the rest unmapped",
            c.proc,
            c.after_op + 1,
            program.ops[c.after_op]
        );
        writeln!(
            checks_c,
            "\t{{ .after_op = {}, .proc = {}, .rows = rows{k}, .text = {} }},",
            c.after_op,
            c.proc.0,
            c_str(&desc)
        )
        .ok();
    }
    let ntests = program.ops.len() + checks.len();

    let mut out = String::new();
    writeln!(out, "/*").ok();
    writeln!(out, " * cowcheck reproducer: {}", c_comment(title)).ok();
    writeln!(
        out,
        " * Generated by cowcheck {} for page size {page_size}: a standalone program (libc only) that",
        env!("CARGO_PKG_VERSION")
    )
    .ok();
    out.push_str(HEADER_TEXT);
    for line in program.to_string().lines() {
        writeln!(out, " *   {}", c_comment(line)).ok();
    }
    writeln!(out, " */").ok();
    out.push_str(PRELUDE);
    writeln!(out, "#define PAGE_SIZE_GENERATED {page_size}").ok();
    writeln!(out, "#define NPROC {nproc}").ok();
    writeln!(out, "#define NMAP {nmap}").ok();
    writeln!(out, "#define NTESTS {ntests}").ok();
    writeln!(out, "#define MAX_SPAN_PAGES {}", caps::MAX_MAP_PAGES).ok();
    writeln!(out).ok();
    out.push_str(TYPES);
    writeln!(
        out,
        "/* Pages of each mapping handle, as its map op declares them. */"
    )
    .ok();
    writeln!(
        out,
        "static const int map_pages[NMAP] = {{ {} }};\n",
        map_pages[..nmap]
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
    .ok();
    if !digests_c.is_empty() {
        writeln!(
            out,
            "/* Digests the model predicts for reads, one per page. */"
        )
        .ok();
        out.push_str(&digests_c);
        writeln!(out).ok();
    }
    writeln!(
        out,
        "/* The program, op by op, with what the model of Linux predicts for each. */"
    )
    .ok();
    writeln!(out, "static const struct op ops[] = {{").ok();
    out.push_str(&ops_c);
    writeln!(out, "\t{{ .verb = V_END }}\n}};\n").ok();
    writeln!(
        out,
        "/* The state every live process must be in after fork, exit and the last op. */"
    )
    .ok();
    out.push_str(&rows_c);
    writeln!(out, "static const struct check checks[] = {{").ok();
    out.push_str(&checks_c);
    writeln!(out, "\t{{ .after_op = -1 }}\n}};").ok();
    out.push_str(RUNTIME);
    Ok(out)
}

fn kind_name(kind: MapKind) -> &'static str {
    match kind {
        MapKind::Private => "K_PRIVATE",
        MapKind::Shared => "K_SHARED",
        MapKind::PrivateZero => "K_PRIVATE_ZERO",
        MapKind::SharedZero => "K_SHARED_ZERO",
    }
}

fn verb_name(op: &Op, index: usize) -> Result<&'static str, ReproError> {
    #[allow(unreachable_patterns)]
    Ok(match op {
        Op::Map { .. } => "V_MAP",
        Op::MapAt { .. } => "V_MAP",
        Op::Protect { .. } => "V_PROTECT",
        Op::Advise { .. } => "V_ADVISE",
        Op::Remap { .. } => "V_REMAP",
        Op::Invalid { .. } => "V_INVALID",
        Op::Write { .. } => "V_WRITE",
        Op::Read { .. } => "V_READ",
        Op::Fork { .. } => "V_FORK",
        Op::Exit { .. } => "V_EXIT",
        Op::Unmap { .. } => "V_UNMAP",
        Op::Poke { .. } => "V_POKE",
        Op::Vmsplice { .. } => "V_VMSPLICE",
        Op::PipeRead { .. } => "V_PIPE_READ",
        #[allow(unreachable_patterns)]
        _ => return Err(unsupported(index, op)),
    })
}

fn via_words(via: Via) -> &'static str {
    match via {
        Via::Mem => "/proc/self/mem",
        Via::Vm => "process_vm_writev",
    }
}

/// The digests (with the bytes) a `pipe-read` of `page` may see, by the model: the model
/// keeps its pipe to itself and `apply(op, None)` names one allowed view only, so every content
/// the generator saw at the spliced address since the splice (the spliced bytes, zero, and each
/// later content of that page in any live process, the splicer's own in-place writes among
/// them) is offered to a copy of the model as the observation; the model returns an observed
/// digest unchanged exactly when it allows it. Its own default view is always kept. Where
/// a view cannot be named this way (a page the splicer moved with mremap and then wrote in
/// place), the reproducer accepts the views it can name, which always include the spliced
/// bytes and the splicer's bytes at the spliced address.
fn pipe_read_digests(model: &Model, op: &Op, page: &PipePage) -> Vec<(u64, Vec<u8>)> {
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    let default = match model.clone().apply(op, None) {
        Ok(Outcome::Read { digests }) => digests.first().copied(),
        _ => None,
    };
    for (d, bytes) in &page.seen {
        let seen = Outcome::Read { digests: vec![*d] };
        let allowed = matches!(
            model.clone().step(op, Some(&seen)),
            Ok(Outcome::Read { digests }) if digests.first() == Some(d)
        );
        if allowed && !out.iter().any(|(x, _)| x == d) {
            out.push((*d, bytes.clone()));
        }
    }
    if let Some(d) = default
        && !out.iter().any(|(x, _)| *x == d)
    {
        // Not among the contents the generator saw: keep it, bytes unknown.
        out.insert(0, (d, Vec::new()));
    }
    out
}

fn span_fields(span: Span, page_size: usize) -> String {
    let r = span.page_range();
    let b = span.bytes_in_page(page_size);
    let hi = if b == (0..page_size) { 0 } else { b.end };
    format!(
        ", .first = {}, .npages = {}, .lo = {}, .hi = {hi}",
        r.start,
        r.len(),
        b.start
    )
}

fn push_digests(out: &mut String, name: &str, digests: &[u64]) {
    // A one-element placeholder keeps the array non-empty (ISO C forbids empty initializers).
    let body = if digests.is_empty() {
        "0".to_string()
    } else {
        digests
            .iter()
            .map(|d| format!("0x{d:016x}ull"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(out, "static const uint64_t {name}[] = {{ {body} }};").ok();
}

/// The bytes a read sees in the model, in words (up to three pages).
fn read_words(model: &Model, op: &Op, page_size: usize) -> String {
    let Op::Read { proc, map, span } = *op else {
        return String::new();
    };
    let Some(h) = model.handle(map) else {
        return String::new();
    };
    let pages: Vec<u16> = span.page_range().pages().collect();
    let mut parts = Vec::new();
    for &page in pages.iter().take(3) {
        let addr = h.base + page as u64 * page_size as u64;
        let bytes = model.page_bytes(proc, addr).unwrap_or_default();
        let shown = bytes.get(span.bytes_in_page(page_size)).unwrap_or(&bytes);
        let text = crate::report::describe_bytes(shown);
        if pages.len() == 1 {
            return text;
        }
        parts.push(format!("page {page}: {text}"));
    }
    if pages.len() > 3 {
        parts.push("…".into());
    }
    parts.join("; ")
}

/// What every live process must look like now, per mapping handle and page.
/// A handle placed where the kernel chose, by process `by` at op `at`.
struct Placed {
    map: u8,
    by: ProcId,
    at: usize,
}

/// What the state checks must leave out, because the kernel's placement decides it.
struct Scope<'a> {
    uncertain: &'a [(u8, std::ops::Range<u16>)],
    placed: &'a [Placed],
    /// The op index of each process's fork.
    birth: &'a [usize; caps::MAX_PROCS],
}

impl Scope<'_> {
    /// Whether process `q` holds handle `m`'s range because it placed it or inherited it (then
    /// the placement does not matter: the range is where the handle says).
    fn holds(&self, model: &Model, q: ProcId, m: u8) -> bool {
        let Some(p) = self.placed.iter().rev().find(|p| p.map == m) else {
            return true;
        };
        let mut cur = q;
        loop {
            if cur == p.by {
                return true;
            }
            if cur == ProcId::ROOT || self.birth[cur.0 as usize] < p.at {
                return false;
            }
            match model.parent(cur) {
                Some(parent) => cur = parent,
                None => return false,
            }
        }
    }
}

fn state_checks(
    model: &mut Model,
    after_op: usize,
    page_size: usize,
    scope: &Scope<'_>,
) -> Vec<StateCheck> {
    let snap = model.snapshot();
    let ps = page_size as u64;
    let mut out = Vec::new();
    for view in &snap.procs {
        if model.life(view.proc) != Life::Alive {
            continue;
        }
        let mut rows = Vec::new();
        for m in 0..caps::MAX_MAPS as u8 {
            let Some(h) = model.handle(crate::program::MapId(m)) else {
                continue;
            };
            // Only where the process placed or inherited the handle is its range known here.
            if !scope.holds(model, view.proc, m) {
                continue;
            }
            for page in 0..h.pages {
                if scope
                    .uncertain
                    .iter()
                    .any(|(um, r)| *um == m && r.contains(&page))
                {
                    continue;
                }
                let addr = h.base + page as u64 * ps;
                let mapped = view.regions.iter().any(|r| r.start <= addr && addr < r.end);
                let digest = view
                    .pages
                    .iter()
                    .find(|(a, _)| *a == addr)
                    .map(|(_, d)| *d)
                    .filter(|d| *d != UNREADABLE);
                rows.push(Row {
                    map: m,
                    page,
                    mapped,
                    readable: mapped && digest.is_some(),
                    digest: digest.unwrap_or(0),
                });
            }
        }
        out.push(StateCheck {
            after_op,
            proc: view.proc,
            rows,
        });
    }
    out
}

/// Compiles a reproducer with the system's C compiler (`$CC`, else `cc`) and [`CFLAGS`].
pub fn build(c_file: &Path, binary: &Path) -> Result<(), ReproError> {
    let cc = std::env::var("CC")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "cc".into());
    let mut words = cc.split_whitespace();
    let program = words.next().unwrap_or("cc").to_string();
    let mut cmd = Command::new(&program);
    cmd.args(words)
        .args(CFLAGS)
        .arg("-o")
        .arg(binary)
        .arg(c_file);
    let command = format!(
        "{cc} {} -o {} {}",
        CFLAGS.join(" "),
        binary.display(),
        c_file.display()
    );
    let output = cmd.output().map_err(|source| ReproError::Spawn {
        cc: cc.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(ReproError::Compile {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Where `--build` puts the binary for a C file: the same path without `.c`.
pub fn binary_path(c_file: &Path) -> PathBuf {
    if c_file.extension().is_some_and(|e| e == "c") {
        c_file.with_extension("")
    } else {
        let mut s = c_file.as_os_str().to_owned();
        s.push(".bin");
        PathBuf::from(s)
    }
}

const HEADER_TEXT: &str = r#" * replays the trace below in a real process tree and checks each op against what cowcheck's
 * model of Linux predicts: a read by a digest of the bytes, a death by signal, si_code and page,
 * a failure by errno, and after every fork and exit and at the end, every page of every
 * mapping in every live process (mapped or not, and its digest).
 *
 * Build and run:
 *   cc -std=gnu11 -O1 -Wall -Wextra -Werror -o repro repro.c && ./repro
 * Output is KTAP; the exit status is 0 if everything matched, 1 if not, and 4 (skip) if this
 * machine's page size differs from the one above.
 *
 * The trace:
"#;

const PRELUDE: &str = r#"#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

"#;

const TYPES: &str = r#"enum verb { V_END, V_MAP, V_WRITE, V_READ, V_FORK, V_EXIT, V_UNMAP, V_PROTECT, V_ADVISE, V_REMAP,
	    V_INVALID, V_POKE, V_VMSPLICE, V_PIPE_READ };
enum via { VIA_MEM, VIA_VM };
enum how { HOW_NONE, HOW_FIXED, HOW_NOREPLACE, HOW_HINT };

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
enum kind { K_PRIVATE, K_SHARED, K_PRIVATE_ZERO, K_SHARED_ZERO };
enum result { RES_SKIPPED, RES_OK, RES_READ, RES_KILLED, RES_FAILED };

struct op {
	int verb;                  /* V_* */
	int proc;                  /* the process handle that performs the op */
	int map;                   /* the mapping handle, -1 for none */
	int kind;                  /* map: K_*; fork: the child's process handle */
	int first, npages;         /* pages [first, first + npages) of the mapping */
	int lo, hi;                /* bytes [lo, hi) of each page; hi 0: the whole page */
	int ramp, byte;            /* write, poke: a ramp (byte + offset % 251) or a fill of byte */
	int via;                   /* poke: VIA_MEM (pwrite on /proc/self/mem, a forced write) or
	                              VIA_VM (process_vm_writev on ourselves) */
	int how;                   /* map: HOW_* placement at page at_page of handle at_map */
	int at_map, at_page;       /* map with placement; remap: MREMAP_FIXED target (-1: none) */
	int prot;                  /* protect: PROT_* */
	int advice;                /* advise: MADV_* number */
	int new_pages, remap_flags, result_map; /* remap: new size, MREMAP_*, the result's handle */
	int call, bad;             /* invalid: the call (mmap, munmap, mprotect, madvise, mremap)
	                              and the bad argument (0 zero length, 1 unaligned, 2 overflow,
	                              3 unknown advice, 4 unknown prot, 5 unknown flags) */
	int need[2];               /* handles whose addresses the op needs (-1: none) */
	int want;                  /* R_*: what the model predicts */
	int want_sig, want_code;   /* RES_KILLED: signal and si_code */
	int want_map, want_page;   /* RES_KILLED: the faulting page, -1 if outside every handle */
	int want_errno;            /* RES_FAILED */
	int ndigests;              /* RES_READ, RES_KILLED: pages read (before the fault) */
	const uint64_t *digests;
	int any;                   /* RES_READ of one page (pipe-read) whose digest may be any of
	                              the ndigests digests: the views the model allows */
	const char *text;          /* the trace line */
	const char *says;          /* the model's prediction in words */
};

struct row {
	int map, page, mapped, readable;
	uint64_t digest;
};

struct check {
	int after_op, proc;
	const struct row *rows;
	const char *text;
};

"#;

const RUNTIME: &str = r##"
/* ---- runtime: the same for every reproducer ---- */

/* What the coordinator sends a worker: an op index (or -1 - check index) and every handle's
 * base address, as the kernel returned it. */
struct cmd {
	int32_t op;
	int32_t pad;
	uint64_t base[NMAP];
};

/* What a worker answers. */
struct reply {
	int32_t result;                 /* RES_OK, RES_READ, RES_KILLED, RES_FAILED */
	int32_t sig, code;              /* RES_KILLED */
	int32_t n;                      /* pages read so far; for a check, rows that differ */
	uint64_t value;                 /* map: address; fork: pid; RES_FAILED: errno;
	                                   RES_KILLED: fault address; check: first bad row */
	uint64_t seen;                  /* check: digest seen in the first bad row */
	int32_t seen_mapped, pad;
	uint64_t digest[MAX_SPAN_PAGES];
	unsigned char head[MAX_SPAN_PAGES][8];
};

static int cmd_pipe[NPROC][2], rep_pipe[NPROC][2];
static volatile sig_atomic_t me;        /* the process handle this worker serves */
static struct reply rep;                /* this worker's reply in progress */
static size_t ps;                       /* page size */
static unsigned char page_buf[1 << 16];
/* The program's pipe (read end, write end): made by the root process before the first op,
 * non-blocking (a full pipe for vmsplice, an empty one for read, is EAGAIN, never a hang), and
 * inherited by every process of the tree. */
static int the_pipe[2] = { -1, -1 };

static uint64_t rotl(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

/* cowcheck's page digest (src/outcome.rs digest()): four multiply lanes over little-endian
 * words, then a finalizer. Not cryptographic. */
static uint64_t digest(const unsigned char *b, size_t len)
{
	static const uint64_t k[4] = { 0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full,
				       0x165667B19E3779F9ull, 0x85EBCA77C2B2AE63ull };
	uint64_t h[4] = { k[0] ^ (uint64_t)len, k[1], k[2], k[3] };
	size_t i = 0, j;
	for (; i + 32 <= len; i += 32) {
		for (int lane = 0; lane < 4; lane++) {
			uint64_t w = 0;
			for (int s = 7; s >= 0; s--)
				w = w << 8 | b[i + (size_t)lane * 8 + (size_t)s];
			h[lane] = rotl((h[lane] ^ w) * k[lane], 31);
		}
	}
	for (j = 0; i + j < len; j++)
		h[j % 4] = (h[j % 4] ^ b[i + j]) * k[(j + 1) % 4];
	uint64_t x = h[0] ^ rotl(h[1], 17) ^ rotl(h[2], 34) ^ rotl(h[3], 51);
	x ^= x >> 33;
	x *= 0xFF51AFD7ED558CCDull;
	x ^= x >> 33;
	return x;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A fatal SIGSEGV or SIGBUS in a worker: report it, then let it kill the process (returning
 * re-executes the faulting access with the default action). Async-signal-safe calls only. */
static void on_fault(int sig, siginfo_t *si, void *ctx)
{
	struct sigaction dfl;
	(void)ctx;
	rep.result = RES_KILLED;
	rep.sig = sig;
	rep.code = si->si_code;
	rep.value = (uint64_t)(uintptr_t)si->si_addr;
	if (write_full(rep_pipe[me][1], &rep, sizeof rep) < 0)
		_exit(3);
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	sigaction(sig, &dfl, NULL);
}

static void load(unsigned char *dst, uintptr_t src, size_t n)
{
	const volatile unsigned char *p = (const volatile unsigned char *)src;
	for (size_t i = 0; i < n; i++)
		dst[i] = p[i];
}

static void span_bytes(const struct op *o, size_t *lo, size_t *hi)
{
	*lo = (size_t)o->lo;
	*hi = o->hi ? (size_t)o->hi : ps;
}

/* A call with one bad argument on the range at b; 0 if it (wrongly) succeeded, else -1 with
 * errno. Only combinations that Linux rejects before changing anything are generated. */
static int invalid_call(const struct op *o, uintptr_t b)
{
	void *addr = (void *)(o->bad == 1 ? b + 1 : b);
	size_t huge = SIZE_MAX - 2 * ps + 1; /* its page rounding wraps around */
	size_t len = o->bad == 0 ? 0 : o->bad == 2 ? huge : ps;
	switch (o->call) {
	case 0: {
		void *p = mmap(o->bad == 1 ? addr : NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | (o->bad == 1 ? MAP_FIXED : 0), -1, 0);
		if (p == MAP_FAILED)
			return -1;
		munmap(p, len);
		return 0;
	}
	case 1:
		return munmap(addr, len);
	case 2:
		return mprotect(addr, len, o->bad == 4 ? 0x100 | PROT_READ : PROT_READ | PROT_WRITE);
	case 3:
		return o->bad == 3 ? madvise(addr, ps, 200) : madvise(addr, len, MADV_NORMAL);
	default: {
		size_t new_len = o->bad == 0 ? 0 : o->bad == 2 ? huge : ps;
		int flags = o->bad == 2 ? MREMAP_MAYMOVE : o->bad == 5 ? 0x40 : 0;
		return mremap(addr, ps, new_len, flags, NULL) == MAP_FAILED ? -1 : 0;
	}
	}
}

/* Writes the op's pattern through the kernel, one page at a time in ascending order: pwrite on
 * /proc/self/mem (a forced write, FOLL_FORCE) or process_vm_writev on ourselves (the mapping's
 * own permissions). The first page that fails ends it: -1 with its errno, earlier pages written.
 * origin is the mapping's base, from which a ramp counts. */
static int poke(const struct op *o, uintptr_t first, uintptr_t origin)
{
	size_t lo, hi, len;
	int fd = -1, err = 0;
	span_bytes(o, &lo, &hi);
	len = hi - lo;
	if (o->via == VIA_MEM) {
		fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return -1;
	}
	for (int pg = 0; pg < o->npages; pg++) {
		uintptr_t page = first + (size_t)pg * ps;
		size_t offset = (size_t)(page - origin) + lo;
		uintptr_t dst = page + lo;
		ssize_t n;
		for (size_t i = 0; i < len; i++)
			page_buf[i] = o->ramp ? (unsigned char)(o->byte + (int)((offset + i) % 251))
					      : (unsigned char)o->byte;
		if (o->via == VIA_VM) {
			struct iovec local = { .iov_base = page_buf, .iov_len = len };
			struct iovec remote = { .iov_base = (void *)dst, .iov_len = len };
			n = process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
		} else {
			n = pwrite(fd, page_buf, len, (off_t)dst);
		}
		if (n != (ssize_t)len) {
			err = n < 0 ? errno : EIO;
			break;
		}
	}
	if (fd >= 0)
		close(fd);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

/* Performs one op in this worker; returns 0 if no reply is due (a fork's child). */
static int perform(const struct op *o, const uint64_t *base)
{
	uintptr_t first = o->map >= 0 ? (uintptr_t)base[o->map] + (size_t)o->first * ps : 0;
	size_t lo, hi;
	rep.result = RES_OK;
	switch (o->verb) {
	case V_MAP: {
		int fd = -1, flags = (o->kind == K_SHARED || o->kind == K_SHARED_ZERO) ? MAP_SHARED : MAP_PRIVATE;
		if (o->kind == K_PRIVATE_ZERO || o->kind == K_SHARED_ZERO) {
			fd = open("/dev/zero", O_RDWR | O_CLOEXEC);
			if (fd < 0) {
				rep.result = RES_FAILED;
				rep.value = (uint64_t)errno;
				return 1;
			}
		} else {
			flags |= MAP_ANONYMOUS;
		}
		void *hint = NULL;
		if (o->how != HOW_NONE)
			hint = (void *)((uintptr_t)base[o->at_map] + (size_t)o->at_page * ps);
		if (o->how == HOW_FIXED)
			flags |= MAP_FIXED;
		if (o->how == HOW_NOREPLACE)
			flags |= MAP_FIXED_NOREPLACE;
		void *p = mmap(hint, (size_t)o->npages * ps, PROT_READ | PROT_WRITE, flags, fd, 0);
		int saved = errno;
		if (fd >= 0)
			close(fd);
		if (p == MAP_FAILED) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)saved;
		} else {
			rep.value = (uint64_t)(uintptr_t)p;
		}
		return 1;
	}
	case V_WRITE:
		span_bytes(o, &lo, &hi);
		for (int pg = 0; pg < o->npages; pg++) {
			volatile unsigned char *dst = (volatile unsigned char *)(first + (size_t)pg * ps);
			size_t origin = (size_t)(o->first + pg) * ps;
			for (size_t i = lo; i < hi; i++)
				dst[i] = o->ramp ? (unsigned char)(o->byte + (int)((origin + i) % 251))
						 : (unsigned char)o->byte;
		}
		return 1;
	case V_READ:
		rep.result = RES_READ;
		span_bytes(o, &lo, &hi);
		for (int pg = 0; pg < o->npages && pg < MAX_SPAN_PAGES; pg++) {
			load(page_buf, first + (size_t)pg * ps + lo, hi - lo);
			rep.digest[pg] = digest(page_buf, hi - lo);
			memcpy(rep.head[pg], page_buf, hi - lo < 8 ? hi - lo : 8);
			rep.n = pg + 1;
			/* The fault handler must see every page digested so far. */
			atomic_signal_fence(memory_order_seq_cst);
		}
		return 1;
	case V_FORK: {
		pid_t pid = fork();
		if (pid < 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		} else if (pid == 0) {
			me = o->kind;
			return 0;
		} else {
			rep.value = (uint64_t)pid;
		}
		return 1;
	}
	case V_EXIT:
		return 1;
	case V_UNMAP:
		if (munmap((void *)first, (size_t)o->npages * ps) != 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		}
		return 1;
	case V_PROTECT:
		if (mprotect((void *)first, (size_t)o->npages * ps, o->prot) != 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		}
		return 1;
	case V_ADVISE:
		if (madvise((void *)first, (size_t)o->npages * ps, o->advice) != 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		}
		return 1;
	case V_REMAP: {
		void *target = NULL;
		if (o->at_map >= 0)
			target = (void *)((uintptr_t)base[o->at_map] + (size_t)o->at_page * ps);
		/* Always pass the fifth argument: without it glibc's variadic mremap hands the
		 * kernel whatever is in the register (SEMANTICS K12). */
		void *p = mremap((void *)first, (size_t)o->npages * ps, (size_t)o->new_pages * ps,
				 o->remap_flags, target);
		if (p == MAP_FAILED) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		} else {
			rep.value = (uint64_t)(uintptr_t)p;
		}
		return 1;
	}
	case V_INVALID:
		if (invalid_call(o, (uintptr_t)base[o->map]) != 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		}
		return 1;
	case V_POKE:
		if (poke(o, first, (uintptr_t)base[o->map]) != 0) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)errno;
		}
		return 1;
	case V_VMSPLICE: {
		/* One whole page into the pipe: the pipe takes a reference to the page itself. */
		struct iovec iov = { .iov_base = (void *)first, .iov_len = ps };
		ssize_t n = vmsplice(the_pipe[1], &iov, 1, 0);
		if (n != (ssize_t)ps) {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)(n < 0 ? errno : EIO);
		}
		return 1;
	}
	case V_PIPE_READ: {
		/* The oldest page out of the pipe; its bytes are observed. */
		ssize_t n = read(the_pipe[0], page_buf, ps);
		if (n == (ssize_t)ps) {
			rep.result = RES_READ;
			rep.digest[0] = digest(page_buf, ps);
			memcpy(rep.head[0], page_buf, 8);
			rep.n = 1;
		} else {
			rep.result = RES_FAILED;
			rep.value = (uint64_t)(n < 0 ? errno : EIO);
		}
		return 1;
	}
	}
	rep.result = RES_FAILED;
	rep.value = (uint64_t)EINVAL;
	return 1;
}

/* Whether the page at addr lies in the range of another handle: then the kernel may have
 * reused an address the model keeps unmapped, and "unmapped" cannot be checked there. */
static int overlaps_other(uintptr_t addr, int map, const uint64_t *base)
{
	for (int m = 0; m < NMAP; m++) {
		uintptr_t b = (uintptr_t)base[m];
		if (m != map && b && addr >= b && addr < b + (size_t)map_pages[m] * ps)
			return 1;
	}
	return 0;
}

/* Checks this worker's state against one row table. */
static void check_state(const struct check *c, const uint64_t *base)
{
	rep.result = RES_OK;
	for (int k = 0; c->rows[k].map >= 0; k++) {
		const struct row *w = &c->rows[k];
		if (!base[w->map])
			continue; /* never mapped for real: that op's own test failed already */
		uintptr_t addr = (uintptr_t)base[w->map] + (size_t)w->page * ps;
		int mapped = msync((void *)addr, ps, MS_ASYNC) == 0;
		uint64_t seen = 0;
		int bad;
		if (!w->mapped && !mapped)
			continue;
		if (!w->mapped && overlaps_other(addr, w->map, base))
			continue;
		bad = mapped != w->mapped;
		if (!bad && w->readable) {
			load(page_buf, addr, ps);
			seen = digest(page_buf, ps);
			bad = seen != w->digest;
		}
		if (bad) {
			if (rep.n == 0) {
				rep.value = (uint64_t)k;
				rep.seen = seen;
				rep.seen_mapped = mapped;
			}
			rep.n++;
		}
	}
}

/* The worker loop of process handle `me`: one op at a time, until told to exit or the
 * coordinator is gone. */
static void serve(void)
{
	struct cmd c;
	for (;;) {
		if (read_full(cmd_pipe[me][0], &c, sizeof c) < 0)
			_exit(0);
		memset(&rep, 0, sizeof rep);
		if (c.op < 0) {
			check_state(&checks[-1 - c.op], c.base);
		} else if (!perform(&ops[c.op], c.base)) {
			continue;
		}
		if (write_full(rep_pipe[me][1], &rep, sizeof rep) < 0)
			_exit(0);
		if (c.op >= 0 && ops[c.op].verb == V_EXIT)
			_exit(0);
	}
}

/* ---- the coordinator ---- */

static int alive[NPROC];
static uint64_t bases[NMAP];
static int failures, tests;

/* Sends a command to process p and waits for its answer (10 s at most). */
static int call(int p, int op, struct reply *r)
{
	struct cmd c;
	struct pollfd pfd = { .fd = rep_pipe[p][0], .events = POLLIN };
	memset(&c, 0, sizeof c);
	c.op = op;
	memcpy(c.base, bases, sizeof bases);
	if (write_full(cmd_pipe[p][1], &c, sizeof c) < 0)
		return -1;
	for (;;) {
		int n = poll(&pfd, 1, 10000);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		break;
	}
	return read_full(rep_pipe[p][0], r, sizeof *r);
}

static void report(int ok, const char *text, const char *says)
{
	tests++;
	if (!ok)
		failures++;
	printf("%s %d - %s: %s\n", ok ? "ok" : "not ok", tests, text, says);
	fflush(stdout);
}

static void bail(const char *why)
{
	printf("Bail out! %s\n", why);
	fflush(stdout);
}

static void show_head(const unsigned char *h, size_t n)
{
	printf("#   first bytes:");
	for (size_t i = 0; i < n; i++)
		printf(" %02x", h[i]);
	printf("\n");
}

static const char *result_name(int r)
{
	switch (r) {
	case RES_SKIPPED: return "skipped";
	case RES_OK: return "ok";
	case RES_READ: return "read";
	case RES_KILLED: return "killed";
	case RES_FAILED: return "failed";
	}
	return "?";
}

/* Runs op i and reports it. Returns -1 if the tree stopped answering. */
static int run_op(int i)
{
	const struct op *o = &ops[i];
	struct reply r;
	int ok;
	memset(&r, 0, sizeof r);
	r.result = RES_SKIPPED;
	int ready = alive[o->proc];
	for (int k = 0; k < 2; k++)
		if (o->need[k] >= 0 && !bases[o->need[k]])
			ready = 0;
	if (ready) {
		if (call(o->proc, i, &r) < 0) {
			report(0, o->text, "no answer within 10 s");
			return -1;
		}
	}
	ok = r.result == o->want;
	/* Where the kernel put a mapping is its choice, except with MAP_FIXED(_NOREPLACE),
	 * MREMAP_FIXED, and a remap that may not move. */
	if (ok && o->want == RES_OK && o->verb == V_MAP && (o->how == HOW_FIXED || o->how == HOW_NOREPLACE))
		ok = r.value == bases[o->at_map] + (uint64_t)o->at_page * ps;
	if (ok && o->want == RES_OK && o->verb == V_REMAP) {
		if (o->at_map >= 0)
			ok = r.value == bases[o->at_map] + (uint64_t)o->at_page * ps;
		else if (!(o->remap_flags & MREMAP_MAYMOVE))
			ok = r.value == bases[o->map] + (uint64_t)o->first * ps;
	}
	if (ok && o->want == RES_READ && o->any) {
		/* One page, whose digest is any of the views the model allows. */
		ok = r.n == 1;
		if (ok) {
			int found = 0;
			for (int k = 0; k < o->ndigests; k++)
				found |= r.digest[0] == o->digests[k];
			ok = found;
		}
	} else if (ok && o->want == RES_READ) {
		ok = r.n == o->ndigests;
		for (int k = 0; ok && k < o->ndigests; k++)
			ok = r.digest[k] == o->digests[k];
	}
	if (ok && o->want == RES_KILLED) {
		uintptr_t page = (uintptr_t)r.value & ~(uintptr_t)(ps - 1);
		ok = r.sig == o->want_sig && r.code == o->want_code && r.n == o->ndigests;
		if (ok && o->want_map >= 0)
			ok = page == (uintptr_t)bases[o->want_map] + (size_t)o->want_page * ps;
		for (int k = 0; ok && k < o->ndigests; k++)
			ok = r.digest[k] == o->digests[k];
	}
	if (ok && o->want == RES_FAILED)
		ok = (int)r.value == o->want_errno;
	switch (r.result) {
	case RES_OK:
		if (o->verb == V_MAP)
			bases[o->map] = r.value;
		if (o->verb == V_REMAP)
			bases[o->result_map] = r.value;
		if (o->verb == V_FORK)
			alive[o->kind] = 1;
		if (o->verb == V_EXIT)
			alive[o->proc] = 0;
		break;
	case RES_KILLED:
		alive[o->proc] = 0;
		break;
	}
	report(ok, o->text, o->says);
	if (!ok) {
		printf("# expected (model): %s\n", o->says);
		switch (r.result) {
		case RES_READ:
			for (int k = 0; k < r.n && k < 4; k++) {
				size_t lo = 0, hi = ps;
				if (o->verb != V_PIPE_READ)
					span_bytes(o, &lo, &hi);
				if (o->any) {
					printf("# got: one page: digest %016llx (allowed:", (unsigned long long)r.digest[k]);
					for (int j = 0; j < o->ndigests; j++)
						printf(" %016llx", (unsigned long long)o->digests[j]);
					printf(")\n");
				} else {
					printf("# got: page %d of the span: digest %016llx%s\n", k,
					       (unsigned long long)r.digest[k],
					       k < o->ndigests && r.digest[k] != o->digests[k] ? " (differs)" : "");
				}
				show_head(r.head[k], hi - lo < 8 ? hi - lo : 8);
			}
			break;
		case RES_KILLED:
			printf("# got: killed by signal %d, si_code %d, at address %#llx after %d page(s)\n",
			       r.sig, r.code, (unsigned long long)r.value, r.n);
			break;
		case RES_FAILED:
			printf("# got: failed: %s (errno %d)\n", strerror((int)r.value), (int)r.value);
			break;
		default:
			printf("# got: %s\n", result_name(r.result));
		}
	}
	return 0;
}

static int run_check(int k)
{
	const struct check *c = &checks[k];
	struct reply r;
	if (!alive[c->proc]) {
		report(0, c->text, "the process is not alive, but the model says it is");
		return 0;
	}
	memset(&r, 0, sizeof r);
	if (call(c->proc, -1 - k, &r) < 0) {
		report(0, c->text, "no answer within 10 s");
		return -1;
	}
	if (r.result == RES_KILLED) {
		alive[c->proc] = 0;
		report(0, c->text, "as the model says");
		printf("# got: killed by signal %d, si_code %d, at address %#llx while looking\n",
		       r.sig, r.code, (unsigned long long)r.value);
		return 0;
	}
	report(r.n == 0, c->text, "as the model says");
	if (r.n) {
		const struct row *w = &c->rows[r.value];
		printf("# %d page(s) differ; first: m%d page %d: expected %s", r.n, w->map, w->page,
		       w->mapped ? "mapped" : "unmapped");
		if (w->readable)
			printf(" with digest %016llx", (unsigned long long)w->digest);
		printf(", got %s", r.seen_mapped ? "mapped" : "unmapped");
		if (r.seen_mapped && w->readable)
			printf(" with digest %016llx", (unsigned long long)r.seen);
		printf("\n");
	}
	return 0;
}

int main(void)
{
	struct sigaction sa;
	pid_t root;
	int stopped = 0;

	ps = (size_t)sysconf(_SC_PAGESIZE);
	printf("KTAP version 1\n");
	if (ps != PAGE_SIZE_GENERATED) {
		printf("1..0 # SKIP generated for page size %d, this machine has %zu\n",
		       PAGE_SIZE_GENERATED, ps);
		return 4;
	}
	printf("1..%d\n", NTESTS);
	for (int p = 0; p < NPROC; p++) {
		if (pipe(cmd_pipe[p]) < 0 || pipe(rep_pipe[p]) < 0) {
			bail("cannot make pipes");
			return 1;
		}
	}
	/* Orphans of the tree come back to us, so that everything is reaped at the end. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	fflush(stdout);
	root = fork();
	if (root < 0) {
		bail("cannot fork the root process");
		return 1;
	}
	if (root == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (int p = 0; p < NPROC; p++) {
			close(cmd_pipe[p][1]);
			close(rep_pipe[p][0]);
		}
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = on_fault;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSEGV, &sa, NULL);
		sigaction(SIGBUS, &sa, NULL);
		/* The program's pipe, before the first op; a failure shows as the pipe ops' errno. */
		if (pipe2(the_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
			the_pipe[0] = the_pipe[1] = -1;
		me = 0;
		serve();
		_exit(0);
	}
	setpgid(root, root);
	signal(SIGPIPE, SIG_IGN);
	for (int p = 0; p < NPROC; p++) {
		close(cmd_pipe[p][0]);
		close(rep_pipe[p][1]);
	}
	alive[0] = 1;
	for (int i = 0; ops[i].verb != V_END && !stopped; i++) {
		if (run_op(i) < 0)
			stopped = 1;
		for (int k = 0; checks[k].after_op >= 0 && !stopped; k++)
			if (checks[k].after_op == i && run_check(k) < 0)
				stopped = 1;
	}
	if (stopped)
		bail("a process of the tree stopped answering");
	kill(-root, SIGKILL);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	printf("# %d of %d tests failed\n", failures, tests);
	return failures || stopped || tests != NTESTS ? 1 : 0;
}
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::trace;

    #[test]
    fn c_strings_are_escaped() {
        assert_eq!(c_str("a\"b\\c??/"), "\"a\\\"b\\\\c\\?\\?/\"");
        assert_eq!(c_comment("x */ y"), "x * / y");
    }

    #[test]
    fn the_generated_program_has_the_trace_and_a_plan() {
        let p = trace::parse_str(
            "cowcheck-trace 1\np0 map m0 private 2\np0 write m0 0 fill 0xaa\np0 fork p1\np1 read m0 0..2\np1 exit\n",
        )
        .expect("parses");
        let c = generate(&p, 4096, "t").expect("generates");
        assert!(c.contains("p1 read m0 0..2"));
        // 5 ops, a state check after the fork (p0, p1), after the exit (p0).
        assert!(c.contains("#define NTESTS 8"), "{c}");
        assert!(c.contains("#define NPROC 2"));
        assert!(c.contains(".want = RES_READ, .ndigests = 2"));
    }
}

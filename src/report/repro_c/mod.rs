//! Standalone C reproducers: a program that replays a trace on the real kernel with libc alone
//! and checks every op against what the model predicts, so that a kernel developer can rerun a
//! finding without Rust.
//!
//! A reproducer is one C file: a header comment with the trace, the program's size macros, the
//! runtime (`runtime.c`, the same in every reproducer, and a C file that compiles alone),
//! then the program's tables (one row per op with what the model predicts, and the state
//! checks). The runtime mirrors cowcheck's executor: a coordinator process forks the root of
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
//! Racing threads (`race`, `stop`; docs/SEMANTICS.md part T): each `race` starts a pthread,
//! pinned as the executor pins its racers, that stores an increasing counter into the page's
//! last 8 bytes (`write`; `poke` through /proc/self/mem) or zaps it (`dontneed`); `stop` joins
//! it (its last round runs after the stop was asked). Where the model would learn the word from
//! the run, the reproducer checks what the model derives instead (`race`): the rest of the page
//! exactly, and the word free while a thread stores, in the fork's `before..=after + 1` (counters
//! read just before and after fork returned, on a board all processes share) and unchanged from
//! the first look in a fork's copy, or the rounds `stop` reported. A race is rare, so a racing
//! program runs in rounds, a fresh process tree each, until a round fails or
//! `COWCHECK_REPRO_SECONDS` (default 10) pass or `COWCHECK_REPRO_ROUNDS` rounds ran; the last
//! round's KTAP is printed, with how many rounds ran. A read of part of the word is refused.
//!
//! Every op kind is handled (the emitter's match over ops is exhaustive, so a new kind does not
//! compile until the reproducer performs it). Refused, never guessed: a successful
//! `advise ... free` of a length other than 0 or a `race ... free` that starts (what the pages
//! read afterwards is old or zero at the kernel's choice,
//! docs/SEMANTICS.md F2, T15, and the reproducer checks exact digests) and a vmsplice the model
//! allows both to succeed and to fail.
//!
//! The parts: `plan` walks the model over the program and decides what each op and state check
//! must find (pure data); `emit` turns the plan into C text; `escape` makes text from the trace
//! safe inside C comments and strings (a trace's comments must never break the reproducer);
//! `compile` runs the C compiler for `--build`. This module writes text and runs the C compiler;
//! it never touches program memory.

mod alloc;
mod compile;
mod emit;
mod error;
mod escape;
mod plan;
mod race;

pub use compile::{CFLAGS, binary_path, build};
pub use error::ReproError;

use crate::program::Program;

/// Generates the C reproducer of `program` for pages of `page_size` bytes. `title` goes into
/// the header comment (the trace's name or path).
pub fn generate(program: &Program, page_size: usize, title: &str) -> Result<String, ReproError> {
    let plan = plan::plan(program, page_size)?;
    Ok(emit::emit(program, &plan, title))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::trace;

    #[test]
    fn the_generated_program_has_the_trace_and_a_plan() {
        let p = trace::parse_str(
            "cowcheck-trace 1\np0 map m0 private 2\np0 write m0 0 fill 0xaa\np0 fork p1\np1 read m0 0..2\np1 exit\n",
        )
        .expect("parses");
        let c = generate(&p, 4096, "t").expect("generates");
        assert!(c.contains("p1 read m0 0..2"));
        // 5 ops, a state check after the fork (p0, p1), after the exit (p0).
        assert!(c.contains("#define NOPS 5\n#define NCHECKS 3\n"), "{c}");
        assert!(c.contains("#define NPROC 2"));
        assert!(c.contains(".want = RES_READ, .ndigests = 2"));
        // The runtime is pasted verbatim, once, after the macros.
        assert_eq!(c.matches(emit::RUNTIME).count(), 1);
        assert!(c.find("#define NCHECKS") < c.find(emit::RUNTIME));
    }

    #[test]
    fn a_racing_program_is_planned_with_its_word_checks() {
        let p = trace::parse_str(
            "cowcheck-trace 1\np0 map m0 private 1\np0 race t0 write m0 0\np0 fork p1\np1 read m0 0\np0 stop t0\np0 read m0 0\n",
        )
        .expect("parses");
        let plan = plan::plan(&p, 4096).expect("plans");
        assert!(plan.racing);
        // p1's copy: bounded by fork op 2 (index 2), thread 0; p0's page after stop: its rounds.
        let kinds: Vec<_> = plan
            .read_races
            .iter()
            .map(|(i, pages)| (*i, pages[0].map(|c| (c.kind, c.slot))))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (3, Some((race::Kind::Fork, 2))),
                (5, Some((race::Kind::Rounds, 4)))
            ]
        );
        let c = generate(&p, 4096, "t").expect("generates");
        assert!(c.contains("#define COWCHECK_RACES 1\n"));
        assert!(c.contains(".verb = V_RACE") && c.contains(".verb = V_STOP"));
        // A single-threaded program runs once, as before.
        let single = generate(
            &trace::parse_str("cowcheck-trace 1\np0 map m0 private 1\n").expect("parses"),
            4096,
            "t",
        )
        .expect("generates");
        assert!(!single.contains("#define COWCHECK_RACES"));
    }

    #[test]
    fn the_runtime_matches_the_rust_side() {
        // Its stand-alone program uses cowcheck's span cap, and nothing in it can splice lines
        // or form a trigraph.
        let cap = format!(
            "#define MAX_SPAN_PAGES {}\n",
            crate::program::caps::MAX_MAP_PAGES
        );
        assert!(emit::RUNTIME.contains(&cap));
        assert!(!emit::RUNTIME.contains("??") && !emit::RUNTIME.contains("\\\n"));
    }

    #[test]
    fn the_plan_says_what_each_op_must_do() {
        let p = trace::parse_str(
            "cowcheck-trace 1\np0 map m0 private 1\np0 protect m0 0 none\np0 read m0 0\np0 unmap m0 0\n",
        )
        .expect("parses");
        let plan = plan::plan(&p, 4096).expect("plans");
        assert_eq!(plan.steps[0].want, plan::Want::Ok);
        assert_eq!(plan.steps[1].says, "mprotect none succeeds");
        assert!(matches!(
            plan.steps[2].want,
            plan::Want::Killed {
                signal: 11,
                code: 2,
                page: Some((crate::program::MapId(0), 0)),
                ..
            }
        ));
        assert_eq!(
            plan.steps[2].says,
            "dies by SIGSEGV (SEGV_ACCERR) at m0 page 0"
        );
        // p0 is dead: the unmap is skipped; one state check, after the last op, for nobody alive.
        assert_eq!(plan.steps[3].want, plan::Want::Skipped);
        assert!(plan.checks.is_empty());
    }
}

//! Deterministic shrinking: a pure function of a program and an oracle that says whether a
//! candidate still fails in the same way. Passes, repeated until none helps: drop chunks of ops
//! (and a fork or map together with everything that needs it), shrink ranges and page counts,
//! simplify values and kinds, renumber handles. Every candidate is validated before the oracle
//! sees it, and the oracle's answers are cached by the candidate's text.

use std::collections::HashMap;

use crate::program::{
    MAX_THREADS, MapArgs, MapId, MapKind, Op, PageRange, Pattern, ProcId, Program, Span, ThreadId,
    caps,
};

/// Shrinks `program` while `fails` holds. `fails(program)` must hold on entry.
pub fn shrink(program: &Program, mut fails: impl FnMut(&Program) -> bool) -> Program {
    let mut cache: HashMap<String, bool> = HashMap::new();
    let mut best = Program::new(program.ops.clone());
    let mut try_it = |cand: Program, best: &mut Program| -> bool {
        if cand.validate().is_err() {
            return false;
        }
        let key = cand.to_string();
        let ok = *cache.entry(key).or_insert_with(|| fails(&cand));
        if ok {
            *best = cand;
        }
        ok
    };
    loop {
        let before = best.clone();
        // 1. Drop chunks of ops, halving the chunk size.
        let mut chunk = best.ops.len().max(1);
        while chunk >= 1 {
            let mut i = 0;
            while i < best.ops.len() {
                let mut ops = best.ops.clone();
                let end = (i + chunk).min(ops.len());
                ops.drain(i..end);
                if !try_it(Program::new(ops), &mut best) {
                    i += chunk;
                }
            }
            chunk /= 2;
        }
        // 2. Drop a fork with all of its descendants' ops, or a map with all ops naming it.
        for i in (0..best.ops.len()).rev() {
            if let Some(cand) = best.ops.get(i).and_then(|op| without_dependents(&best, op)) {
                try_it(cand, &mut best);
            }
        }
        // 2b. Fold a child into its parent: its ops run in the parent, the fork goes.
        for i in (0..best.ops.len()).rev() {
            if let Some(op) = best.ops.get(i).copied()
                && let Some(child) = op.born()
            {
                let proc = op.proc();
                let ops: Vec<Op> = best
                    .ops
                    .iter()
                    .enumerate()
                    .filter(|(j, o)| *j != i && !(matches!(o, Op::Exit { proc } if *proc == child)))
                    .map(|(_, o)| {
                        if o.proc() == child {
                            o.with_proc(proc)
                        } else {
                            *o
                        }
                    })
                    .collect();
                try_it(Program::new(ops), &mut best);
            }
        }
        // 3. Simplify each op.
        for i in 0..best.ops.len() {
            for simpler in simplifications(&best, i) {
                let mut ops = best.ops.clone();
                ops[i] = simpler;
                if try_it(Program::new(ops), &mut best) {
                    break;
                }
            }
        }
        // 4. Shrink page counts of maps to what the program uses.
        for i in 0..best.ops.len() {
            if let Op::Map { map, pages, .. } | Op::MapAt { map, pages, .. } = best.ops[i] {
                let used = pages_used(&best, map).max(1);
                for n in [used, pages / 2] {
                    if n >= 1 && n < pages {
                        let mut ops = best.ops.clone();
                        if let Op::Map { pages: p, .. } | Op::MapAt { pages: p, .. } = &mut ops[i] {
                            *p = n;
                        }
                        if try_it(Program::new(ops), &mut best) {
                            break;
                        }
                    }
                }
            }
        }
        // 5. Renumber handles in order of creation.
        try_it(renumber(&best), &mut best);
        if best == before {
            return best;
        }
    }
}

/// The program without `op` and every op that depends on what it creates.
fn without_dependents(p: &Program, op: &Op) -> Option<Program> {
    match *op {
        Op::Fork { child, .. } | Op::CloneVm { child, .. } => {
            let mut gone = [false; caps::MAX_PROCS];
            gone[child.0 as usize] = true;
            let mut ops = Vec::new();
            for o in &p.ops {
                if let Some(c) = o.born()
                    && gone[o.proc().0 as usize]
                {
                    gone[c.0 as usize] = true;
                }
                if *o == *op || gone[o.proc().0 as usize] {
                    continue;
                }
                ops.push(*o);
            }
            Some(Program::new(ops))
        }
        Op::Map { map, .. } | Op::MapAt { map, .. } => {
            // A race on the mapping goes, and so does its stop.
            let raced: Vec<_> = p
                .ops
                .iter()
                .filter_map(|o| match *o {
                    Op::Race { thread, map: m, .. } if m == map => Some(thread),
                    _ => None,
                })
                .collect();
            Some(Program::new(
                p.ops
                    .iter()
                    .filter(|o| !o.maps().contains(&map))
                    .filter(|o| !matches!(o, Op::Stop { thread, .. } if raced.contains(thread)))
                    .copied()
                    .collect(),
            ))
        }
        // A race goes with its stop.
        Op::Race { thread, .. } => Some(Program::new(
            p.ops
                .iter()
                .filter(|o| *o != op && !matches!(o, Op::Stop { thread: t, .. } if *t == thread))
                .copied()
                .collect(),
        )),
        _ => None,
    }
}

/// Highest page index + 1 that any op names in `map`.
fn pages_used(p: &Program, map: MapId) -> u16 {
    p.ops
        .iter()
        .map(|o| match *o {
            Op::Write { map: m, span, .. } | Op::Read { map: m, span, .. } if m == map => {
                span.page_range().end
            }
            Op::Unmap { map: m, pages, .. }
            | Op::Protect { map: m, pages, .. }
            | Op::Advise { map: m, pages, .. }
                if m == map =>
            {
                pages.end
            }
            Op::Remap { map: m, old, .. } if m == map => old.end.max(1),
            // A handle used as a placement target, or by a bad call, keeps its size.
            Op::MapAt { at, .. } if at.map == map => u16::MAX,
            Op::Remap { flags, .. } if flags.fixed.is_some_and(|a| a.map == map) => u16::MAX,
            Op::Invalid { map: m, .. } if m == map => u16::MAX,
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Simpler variants of op `i`, simplest first.
fn simplifications(p: &Program, i: usize) -> Vec<Op> {
    let op = p.ops[i];
    let mut out = Vec::new();
    // The same op in the root: lets a fork that only served to host it go.
    if op.proc() != ProcId::ROOT {
        out.push(op.with_proc(ProcId::ROOT));
    }
    let smaller_spans = |span: Span| -> Vec<Span> {
        match span {
            Span::Pages(r) if r.len() > 1 => vec![
                Span::Pages(PageRange::new(r.start, r.start + 1)),
                Span::Pages(PageRange::new(r.end - 1, r.end)),
                Span::Pages(PageRange::new(r.start, r.start + r.len() / 2)),
            ],
            Span::Bytes { page, start, end } if end - start > 1 => vec![
                Span::Bytes {
                    page,
                    start,
                    end: start + 1,
                },
                Span::Pages(PageRange::new(page, page + 1)),
            ],
            Span::Bytes { page, .. } => vec![Span::Pages(PageRange::new(page, page + 1))],
            _ => vec![],
        }
    };
    match op {
        Op::Map {
            proc,
            map,
            kind,
            pages,
            tail,
            args,
        } => {
            let simpler = match kind {
                MapKind::PrivateZero => Some(MapKind::Private),
                MapKind::SharedZero => Some(MapKind::Shared),
                _ => None,
            };
            if let Some(kind) = simpler {
                out.push(Op::Map {
                    proc,
                    map,
                    kind,
                    pages,
                    tail,
                    args: MapArgs {
                        offset: Default::default(),
                        ..args
                    },
                });
            }
            // Whole pages, and the default fd and offset.
            if tail != 0 || !args.is_default() {
                out.push(Op::Map {
                    proc,
                    map,
                    kind,
                    pages,
                    tail: 0,
                    args: MapArgs::default(),
                });
            }
        }
        Op::Write {
            proc,
            map,
            span,
            pattern,
        } => {
            for s in smaller_spans(span) {
                out.push(Op::Write {
                    proc,
                    map,
                    span: s,
                    pattern,
                });
            }
            let simple = match pattern {
                Pattern::Ramp(b) => vec![Pattern::Fill(b.max(1))],
                Pattern::Fill(b) if b != 0x01 => vec![Pattern::Fill(0x01)],
                _ => vec![],
            };
            for pattern in simple {
                out.push(Op::Write {
                    proc,
                    map,
                    span,
                    pattern,
                });
            }
        }
        Op::Read { proc, map, span } => {
            for s in smaller_spans(span) {
                out.push(Op::Read { proc, map, span: s });
            }
        }
        // A placed map becomes a plain one: the handle it aimed at may then go.
        Op::MapAt {
            proc,
            map,
            kind,
            pages,
            tail,
            args,
            ..
        } => out.push(Op::Map {
            proc,
            map,
            kind,
            pages,
            tail,
            args,
        }),
        Op::Remap {
            proc,
            map,
            old,
            old_tail,
            new_pages,
            new_tail,
            flags,
            result,
        } => {
            let with = |flags| Op::Remap {
                proc,
                map,
                old,
                old_tail,
                new_pages,
                new_tail,
                flags,
                result,
            };
            // A fresh map of the result, when what the remap carried over does not matter.
            if let Some(kind) = kind_of(p, map) {
                out.push(Op::Map {
                    proc,
                    map: result,
                    kind,
                    pages: new_pages,
                    tail: 0,
                    args: MapArgs::default(),
                });
            }
            if old_tail != 0 || new_tail != 0 {
                out.push(Op::Remap {
                    proc,
                    map,
                    old,
                    old_tail: 0,
                    new_pages,
                    new_tail: 0,
                    flags,
                    result,
                });
            }
            if flags.fixed.is_some() {
                out.push(with(crate::program::RemapFlags {
                    fixed: None,
                    ..flags
                }));
            }
            if flags.dontunmap {
                out.push(with(crate::program::RemapFlags {
                    dontunmap: false,
                    ..flags
                }));
            }
        }
        // Ranges narrow to their first or last page (a length in bytes keeps its last page's
        // bytes only with that page), and lengths in bytes become whole pages.
        Op::Protect { pages, tail, .. }
        | Op::Advise { pages, tail, .. }
        | Op::Unmap { pages, tail, .. } => {
            let mut narrowings = Vec::new();
            if pages.len() > 1 {
                narrowings.push((PageRange::new(pages.start, pages.start + 1), 0));
                narrowings.push((PageRange::new(pages.end - 1, pages.end), tail));
            }
            if tail != 0 {
                narrowings.push((pages, 0));
            }
            for (r, t) in narrowings {
                let mut narrowed = op;
                if let Op::Protect { pages, tail, .. }
                | Op::Advise { pages, tail, .. }
                | Op::Unmap { pages, tail, .. } = &mut narrowed
                {
                    *pages = r;
                    *tail = t;
                }
                out.push(narrowed);
            }
        }
        // An allocation becomes a plain malloc (a realloc then needs no old block).
        Op::Alloc {
            proc,
            map,
            call,
            size,
        } if call != crate::program::AllocCall::Malloc => out.push(Op::Alloc {
            proc,
            map,
            call: crate::program::AllocCall::Malloc,
            size,
        }),
        _ => {}
    }
    out
}

/// The kind of mapping a handle names (a remap's result has its source's kind).
fn kind_of(p: &Program, map: MapId) -> Option<MapKind> {
    p.ops.iter().find_map(|o| match *o {
        Op::Map { map: m, kind, .. } | Op::MapAt { map: m, kind, .. } if m == map => Some(kind),
        Op::Remap {
            map: src, result, ..
        } if result == map => kind_of(p, src),
        _ => None,
    })
}

/// Renames process, mapping and thread handles to 0, 1, 2, ... in order of creation.
pub fn renumber(p: &Program) -> Program {
    let mut procs = [None::<u8>; caps::MAX_PROCS];
    procs[0] = Some(0);
    let mut maps = [None::<u8>; caps::MAX_MAPS];
    let mut threads = [None::<u8>; MAX_THREADS];
    let (mut np, mut nm, mut nt) = (1u8, 0u8, 0u8);
    let mut ops = Vec::with_capacity(p.ops.len());
    for op in &p.ops {
        let mut op = *op;
        if let Some(child) = op.born() {
            procs[child.0 as usize] = Some(np);
            np += 1;
        }
        if let Some(map) = op.creates() {
            maps[map.0 as usize] = Some(nm);
            nm += 1;
        }
        if let Some(t) = op.starts_thread()
            && let Some(slot) = threads.get_mut(t.0 as usize)
        {
            *slot = Some(nt);
            nt += 1;
        }
        let rp = |x: ProcId| ProcId(procs[x.0 as usize].unwrap_or(x.0));
        let rm = |x: MapId| MapId(maps[x.0 as usize].unwrap_or(x.0));
        let rt =
            |x: ThreadId| ThreadId(threads.get(x.0 as usize).copied().flatten().unwrap_or(x.0));
        op = op.rename(rp, rm).rename_thread(rt);
        ops.push(op);
    }
    Program::new(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::generate::{GenConfig, random_program};

    /// A pure oracle: "fails" while a fork and a later write by the child remain. The shrinker
    /// must find the 3-op core and renumber it.
    #[test]
    fn shrinks_to_the_core_deterministically() {
        let fails = |p: &Program| {
            p.ops.iter().enumerate().any(|(i, op)| {
                if let Op::Fork { child, .. } = op {
                    p.ops[i..]
                        .iter()
                        .any(|o| matches!(o, Op::Write { proc, .. } if proc == child))
                } else {
                    false
                }
            })
        };
        for i in 0..200 {
            let p = random_program(3, i, GenConfig::default());
            if !fails(&p) {
                continue;
            }
            let s = shrink(&p, fails);
            assert!(fails(&s));
            assert!(s.ops.len() <= 3, "{s}");
            assert_eq!(s, shrink(&p, fails), "deterministic");
            assert_eq!(s, renumber(&s));
        }
    }

    /// Thread handles are renumbered in order of creation, racing and op threads alike, and
    /// every op that names one follows (`stop`, `by`, `end`).
    #[test]
    fn renumbers_thread_handles() {
        let p = crate::program::trace::parse_str(
            "cowcheck-trace 1\n\
             p0 map m0 private 2\n\
             p0 thread t5\n\
             t5 write m0 0 fill 0x11\n\
             p0 race t3 write m0 1\n\
             p0 stop t3\n\
             t5 end\n",
        )
        .expect("parses");
        let r = renumber(&p);
        assert_eq!(
            r.to_string(),
            "cowcheck-trace 1\n\
             p0 map m0 private 2\n\
             p0 thread t0\n\
             t0 write m0 0 fill 0x11\n\
             p0 race t1 write m0 1\n\
             p0 stop t1\n\
             t0 end\n"
        );
        assert!(p.validate().is_ok(), "the input is valid");
        assert!(r.validate().is_ok(), "so is its renumbering");
    }
}

//! T15-T17: what `free`, `pageout` and `fault` threads leave, and what ThreadRules lets run
//! beside them.

use super::super::Model;
use crate::program::outcome::{Outcome, digest};
use crate::program::trace::parse_str;
use crate::program::{MapId, Op, ProcId, RaceKind, ThreadId, ThreadRules};

/// Steps `trace` with every op as the model predicts it (a fork as counters 10 before and 20
/// after, a stop as 50 rounds), but the last, whose prediction with `seen` as the observation is returned.
fn last_seen(trace: &str, seen: Outcome) -> Outcome {
    let program = parse_str(trace).expect("parses");
    let mut model = Model::new(4096);
    let (last, head) = program.ops.split_last().expect("ops");
    for op in head {
        let o = model.clone().step(op, None).expect("steps");
        let o = match (op, o) {
            (Op::Fork { .. }, Outcome::Forked { .. }) => Outcome::Forked {
                before: 10,
                after: 20,
            },
            (Op::Stop { .. }, Outcome::Stopped { .. }) => Outcome::Stopped { rounds: 50 },
            (_, o) => o,
        };
        model.step(op, Some(&o)).expect("steps");
    }
    model.step(last, Some(&seen)).expect("steps")
}

/// A page of `body` bytes with `word` in its last 8.
fn page(body: u8, word: u64) -> Outcome {
    let mut b = vec![body; 4096];
    b[4088..].copy_from_slice(&word.to_le_bytes());
    Outcome::Read {
        digests: vec![digest(&b)],
    }
}

const FAULT: &str = "cowcheck-trace 1\np0 map m0 private 1\np0 write m0 0 fill 0x11\n\
    p0 race t0 fault m0 0\np0 fork p1\np1 read m0 0\n";

/// T17: a fork's child's copy of a page a fault thread faults in holds zeros with a counter of
/// the fork's range, or zeros alone; never the page's old bytes, never a later counter.
#[test]
fn a_fault_threads_child_copy_is_zero_or_a_counter_of_the_fork() {
    for ok in [page(0, 10), page(0, 21), page(0, 0)] {
        assert_eq!(last_seen(FAULT, ok.clone()), ok);
    }
    for bad in [page(0, 22), page(0, 9), page(0x11, 15), page(0x11, 0)] {
        assert_ne!(last_seen(FAULT, bad.clone()), bad);
    }
}

/// T17: after `stop` the private page holds the rounds on zeros.
#[test]
fn a_stopped_fault_thread_leaves_its_rounds_on_zeros() {
    let trace = "cowcheck-trace 1\np0 map m0 private 1\np0 write m0 0 fill 0x11\n\
        p0 race t0 fault m0 0\np0 stop t0\np0 read m0 0\n";
    let program = parse_str(trace).expect("parses");
    let mut model = Model::new(4096);
    for op in &program.ops[..program.ops.len() - 1] {
        let seen = match op {
            Op::Stop { .. } => Some(Outcome::Stopped { rounds: 50 }),
            _ => None,
        };
        model.step(op, seen.as_ref()).expect("steps");
    }
    let read = model
        .step(program.ops.last().expect("a read"), None)
        .expect("steps");
    assert_eq!(read, page(0, 50));
}

/// T16: a pageout thread changes no byte, in its process or a fork's child.
#[test]
fn a_pageout_thread_changes_no_byte() {
    let trace = "cowcheck-trace 1\np0 map m0 private 1\np0 write m0 0 fill 0x11\n\
        p0 race t0 pageout m0 0\np0 fork p1\np1 read m0 0\n";
    let old = Outcome::Read {
        digests: vec![digest(&[0x11; 4096])],
    };
    assert_eq!(last_seen(trace, old.clone()), old);
    let zero = Outcome::Read {
        digests: vec![digest(&[0; 4096])],
    };
    assert_ne!(last_seen(trace, zero.clone()), zero);
}

/// T15: a free thread's page (and a fork's copy) reads old or zero; a torn page differs; a
/// shared page refuses MADV_FREE.
#[test]
fn a_free_threads_page_reads_old_or_zero() {
    let trace = "cowcheck-trace 1\np0 map m0 private 1\np0 write m0 0 fill 0x11\n\
        p0 race t0 free m0 0\np0 fork p1\np1 read m0 0\n";
    let mut torn = vec![0x11; 4096];
    torn[..2048].fill(0);
    for ok in [[0x11; 4096], [0; 4096]] {
        let ok = Outcome::Read {
            digests: vec![digest(&ok)],
        };
        assert_eq!(last_seen(trace, ok.clone()), ok);
    }
    let torn = Outcome::Read {
        digests: vec![digest(&torn)],
    };
    assert_ne!(last_seen(trace, torn.clone()), torn);
    let shared = "cowcheck-trace 1\np0 map m0 shared 1\np0 race t0 free m0 0\n";
    let refused = Outcome::Failed {
        errno: super::super::errno::EINVAL,
    };
    assert_eq!(last_seen(shared, refused.clone()), refused);
}

const PAIR: &str = "cowcheck-trace 1\np0 map m0 private 1\np0 write m0 0 fill 0x11\n\
    p0 race t0 write m0 0\np0 race t1 free m0 0\n";

/// T15 beside a storing thread: a fork's child's copy holds a counter of the fork's range on
/// the old bytes or on zeros, or zeros alone; never another counter or a relative's bytes.
#[test]
fn a_freed_storers_child_copy_is_old_or_zero_under_a_counter_of_the_fork() {
    let trace = format!("{PAIR}p0 fork p1\np1 read m0 0\n");
    for ok in [page(0x11, 15), page(0, 15), page(0, 0), page(0x11, 21)] {
        assert_eq!(last_seen(&trace, ok.clone()), ok);
    }
    for bad in [page(0x11, 22), page(0, 9), page(0x22, 15), page(0x11, 0)] {
        assert_ne!(last_seen(&trace, bad.clone()), bad);
    }
}

/// T15 beside a storing thread: after the storer stops, its last value on old bytes or zeros,
/// or (the free thread going on) zeros alone; once the free thread stopped first, never zeros
/// alone.
#[test]
fn a_freed_storers_stop_leaves_its_value_on_old_bytes_or_zeros() {
    let trace = format!("{PAIR}p0 stop t0\np0 read m0 0\n");
    for ok in [page(0x11, 50), page(0, 50), page(0, 0)] {
        assert_eq!(last_seen(&trace, ok.clone()), ok);
    }
    for bad in [page(0x11, 49), page(0x11, 0)] {
        assert_ne!(last_seen(&trace, bad.clone()), bad);
    }
    let trace = format!("{PAIR}p0 stop t1\np0 stop t0\np0 read m0 0\n");
    for ok in [page(0x11, 50), page(0, 50)] {
        assert_eq!(last_seen(&trace, ok.clone()), ok);
    }
    assert_ne!(last_seen(&trace, page(0, 0)), page(0, 0));
}

fn race(proc: u8, thread: u8, kind: RaceKind) -> Op {
    Op::Race {
        proc: ProcId(proc),
        thread: ThreadId(thread),
        kind,
        map: MapId(0),
        page: 0,
    }
}

/// T15-T17: free and pageout threads pair with a storing thread as a dontneed one does; a
/// fault thread races alone: no advice or reader thread joins it.
#[test]
fn who_races_beside_the_newest_kinds() {
    let mut r = ThreadRules::default();
    r.admit(&race(0, 0, RaceKind::Write)).expect("the writer");
    r.admit(&race(0, 1, RaceKind::PageOut))
        .expect("pageout beside it");
    let mut r = ThreadRules::default();
    r.admit(&race(0, 0, RaceKind::PageOut)).expect("pageout");
    r.admit(&race(0, 1, RaceKind::Poke))
        .expect("a poke beside it");
    let mut r = ThreadRules::default();
    r.admit(&race(0, 0, RaceKind::Free)).expect("free");
    r.admit(&race(0, 1, RaceKind::Write))
        .expect("a writer beside it");
    for (first, second) in [
        (RaceKind::Free, RaceKind::PageOut),
        (RaceKind::Fault, RaceKind::Free),
        (RaceKind::Fault, RaceKind::DontNeed),
        (RaceKind::Fault, RaceKind::PageOut),
        (RaceKind::Fault, RaceKind::Read),
        (RaceKind::Fault, RaceKind::Vmsplice),
        (RaceKind::PageOut, RaceKind::Fault),
    ] {
        let mut r = ThreadRules::default();
        r.admit(&race(0, 0, first)).expect("alone");
        assert!(
            r.admit(&race(0, 1, second)).is_err(),
            "{second:?} beside {first:?}"
        );
    }
    let mut r = ThreadRules::default();
    r.admit(&race(0, 0, RaceKind::Fault)).expect("alone");
    assert!(
        r.admit(&race(1, 1, RaceKind::Read)).is_err(),
        "a reader in another process"
    );
}

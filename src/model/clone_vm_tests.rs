//! The shared address space's bookkeeping (T30 to T33): one space for a clone child and its
//! parent, its frames released only by its last user, and a fork's copy of its own.

use super::super::{Life, Model};
use crate::program::ProcId;
use crate::program::outcome::Outcome;
use crate::program::trace::parse_str;

/// The model after each op of `trace`: its outcome and the frames then in use.
fn run(trace: &str) -> (Model, Vec<(Outcome, usize)>) {
    let program = parse_str(&format!("cowcheck-trace 1\n{trace}")).expect("parses");
    let mut m = Model::new(4096);
    let steps = program
        .ops
        .iter()
        .map(|op| {
            let out = m.apply(op, None).expect("applies");
            (out, m.frames_in_use())
        })
        .collect();
    (m, steps)
}

#[test]
fn the_last_user_releases_the_space() {
    let (m, steps) = run(
        "p0 map m0 private 2\np0 write m0 0..2 fill 0x11\np0 clone p1\n\
         p1 write m0 1 fill 0x22\np0 exit\np1 exit\n",
    );
    // One space: the child's store is the parent's own page, no copy (T31).
    assert_eq!(steps[3].1, 2);
    // The parent's exit releases nothing while the child uses the space (T33).
    assert_eq!(steps[4].1, 2);
    assert_eq!(steps[5].1, 0);
    assert_eq!(m.life(ProcId(1)), Life::Exited);
}

#[test]
fn a_fork_from_the_clone_child_gets_a_copy() {
    let (_, steps) = run(
        "p0 map m0 private 1\np0 write m0 0 fill 0x11\np0 clone p1\n\
         p1 fork p2\np2 write m0 0 fill 0x22\np0 read m0 0\np2 read m0 0\np2 exit\n",
    );
    // The grandchild copied on its write (T32): the parent still reads 0x11.
    assert_ne!(steps[5].0, steps[6].0);
    assert_eq!(steps[6].1, 2);
    assert_eq!(steps[7].1, 1);
}

#[test]
fn a_death_releases_nothing_while_the_other_lives() {
    let (m, steps) = run("p0 map m0 private 2\np0 write m0 0 fill 0x11\n\
         p0 protect m0 1 read\np0 clone p1\np1 write m0 1 fill 0x22\n");
    assert!(steps[4].0.death().is_some(), "{:?}", steps[4].0);
    assert_eq!(m.life(ProcId(0)), Life::Alive);
    assert_eq!(steps[4].1, 1);
}

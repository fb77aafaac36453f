//! [`Program`]: ops in order, plus the comments and inline expectations of the trace it came
//! from, with the questions asked of a whole program (its shape, its mapping sizes, its
//! expectations). Whether a program is valid is [`Validator`](super::Validator)'s to say.

use super::caps;
use super::ops::Op;
use crate::program::expect::Expect;

/// A comment line of a trace, kept so that `print(parse(t)) == t`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Comment {
    /// The comment stands before op `before_op` (or, if `inline`, at the end of that op's line).
    pub before_op: usize,
    pub inline: bool,
    /// The text after `#`, without the line break; `None` for a blank line.
    pub text: Option<String>,
}

/// A program: ops in order, plus the comments of the trace it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Program {
    pub ops: Vec<Op>,
    pub comments: Vec<Comment>,
    /// Inline expectations (`=> ...` on an op's line): `(op index, expectation)`, ascending,
    /// at most one per op (the printer writes the first).
    pub expects: Vec<(usize, Expect)>,
}

impl Program {
    pub fn new(ops: Vec<Op>) -> Program {
        Program {
            ops,
            comments: Vec::new(),
            expects: Vec::new(),
        }
    }

    /// The inline expectation of op `index`, if the trace wrote one.
    pub fn expect_of(&self, index: usize) -> Option<&Expect> {
        self.expects
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, e)| e)
    }

    /// Number of `fork` ops.
    pub fn forks(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o, Op::Fork { .. }))
            .count()
    }

    /// The program with handles, pages and values left out: what groups findings that are
    /// the same bug (`run --keep-going`), as crash triage groups crashes by signature.
    pub fn shape(&self) -> String {
        self.ops
            .iter()
            .map(|op| match *op {
                Op::Map { kind, .. } => format!("map {}", kind.name()),
                Op::MapAt { kind, how, .. } => format!("map {} {}", kind.name(), how.name()),
                Op::Protect { prot, .. } => format!("protect {}", prot.name()),
                Op::Advise { advice, .. } => format!("advise {}", advice.name()),
                Op::Remap { old, flags, .. } => format!(
                    "remap{}{}{}{}",
                    if old.start == old.end { " old0" } else { "" },
                    if flags.maymove { " maymove" } else { "" },
                    if flags.dontunmap { " dontunmap" } else { "" },
                    if flags.fixed.is_some() { " fixed" } else { "" }
                ),
                Op::Invalid { call, bad, .. } => {
                    format!("invalid {} {}", call.name(), bad.name())
                }
                Op::Poke { via, .. } => format!("poke {}", via.name()),
                _ => op.kind().name().to_string(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The pages of each mapping handle, as its `map` op declared them.
    pub fn map_sizes(&self) -> Vec<Option<u16>> {
        let mut sizes = vec![None; caps::MAX_MAPS];
        for op in &self.ops {
            if let Op::Map { map, pages, .. } = *op
                && let Some(slot) = sizes.get_mut(map.0 as usize)
            {
                *slot = Some(pages);
            }
        }
        sizes
    }
}

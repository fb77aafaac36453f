//! Inline expectations (`p0 read m0 0 => 0x02`): a trace's own claims about what an op does.
//! Both sides must meet them: the model alone (placing mappings itself, so its prediction does
//! not lean on the kernel) and the kernel's run. `replay` and `corpus` both judge them here.

use crate::model::Model;
use crate::program::Program;
use crate::program::outcome::Outcome;

/// Which side missed an expectation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Model,
    Kernel,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Model => "model",
            Side::Kernel => "kernel",
        }
    }
}

/// One expectation one side did not meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Miss {
    pub op_index: usize,
    /// The op's line in the canonical trace (1-based; the header is line 1).
    pub line: usize,
    pub side: Side,
    pub reason: String,
}

impl Miss {
    /// `line 7 (op 3, p0 read m0 0 => 0x02): kernel: ...`.
    pub fn describe(&self, program: &Program) -> String {
        format!(
            "line {} (op {}, {}): {}: {}",
            self.line,
            self.op_index + 1,
            op_text(program, self.op_index),
            self.side.name(),
            self.reason
        )
    }
}

/// The trace text of op `i`, with its expectation.
pub fn op_text(program: &Program, i: usize) -> String {
    match (program.ops.get(i), program.expect_of(i)) {
        (Some(op), Some(e)) => format!("{op} => {e}"),
        (Some(op), None) => op.to_string(),
        (None, _) => "end".into(),
    }
}

/// The line of op `i` in the canonical trace: the header, every comment or blank line that
/// stands before it on a line of its own, and the ops before it.
pub fn op_line(program: &Program, i: usize) -> usize {
    let own_lines = program
        .comments
        .iter()
        .filter(|c| !c.inline && c.before_op <= i)
        .count();
    1 + own_lines + i + 1
}

/// Every expectation of `program` that the model alone, or the kernel's `outcomes`, missed.
/// An error of the model itself (a program it cannot run) is a miss of the model's.
pub fn misses(program: &Program, outcomes: &[Outcome], page_size: usize) -> Vec<Miss> {
    if program.expects.is_empty() {
        return Vec::new();
    }
    let mut model = Model::new(page_size);
    let mut predicted = Vec::with_capacity(program.ops.len());
    let mut found = Vec::new();
    for (i, op) in program.ops.iter().enumerate() {
        match model.apply(op, None) {
            Ok(o) => predicted.push(o),
            Err(e) => {
                found.push(Miss {
                    op_index: i,
                    line: op_line(program, i),
                    side: Side::Model,
                    reason: format!("the model cannot run the program: {e}"),
                });
                break;
            }
        }
    }
    for (i, expect) in &program.expects {
        let op = &program.ops[*i];
        for (side, outcome) in [
            (Side::Model, predicted.get(*i)),
            (Side::Kernel, outcomes.get(*i)),
        ] {
            let reason = match outcome {
                Some(o) => expect.check(op, o, page_size).err(),
                None if side == Side::Model => Some("no prediction".into()),
                None => Some("the op did not run".into()),
            };
            if let Some(reason) = reason {
                found.push(Miss {
                    op_index: *i,
                    line: op_line(program, *i),
                    side,
                    reason,
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::trace;

    const TRACE: &str = "cowcheck-trace 1\n# shared memory\n\np0 map m0 shared 1\np0 write m0 0 fill 0x01 # inline\np0 read m0 0 => 0x02\n";

    #[test]
    fn lines_count_the_header_comments_and_blank_lines() {
        let p = trace::parse(TRACE.as_bytes()).expect("parses");
        assert_eq!(op_line(&p, 0), 4);
        assert_eq!(op_line(&p, 1), 5);
        assert_eq!(op_line(&p, 2), 6);
    }

    /// The counter-test: a wrong expectation is missed by both sides, and a right one by none.
    #[test]
    fn a_wrong_expectation_is_missed_on_both_sides() {
        let p = trace::parse(TRACE.as_bytes()).expect("parses");
        let mut model = Model::new(4096);
        let outcomes: Vec<Outcome> = p
            .ops
            .iter()
            .map(|op| model.apply(op, None).expect("runs"))
            .collect();
        let m = misses(&p, &outcomes, 4096);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!((m[0].side, m[1].side), (Side::Model, Side::Kernel));
        assert_eq!(m[0].line, 6);
        assert!(
            m[1].describe(&p)
                .starts_with("line 6 (op 3, p0 read m0 0 => 0x02): kernel:")
        );
        let right = TRACE.replace("=> 0x02", "=> 0x01");
        let p = trace::parse(right.as_bytes()).expect("parses");
        assert!(misses(&p, &outcomes, 4096).is_empty());
    }
}

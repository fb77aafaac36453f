//! Op threads' lines (docs/SEMANTICS.md T20 to T22):
//!
//! ```text
//! p0 thread t1                        p0 starts op thread t1 (pthread_create)
//! t1 write m0 0 fill 0x11             t1 runs the op: the pair `p0 by t1`, `p0 write ...`
//! t1 fork p1                          t1 forks; p1's only thread is (a copy of) t1
//! t1 end                              t1 ends (it returns; p0 joins it)
//! ```
//!
//! A line that starts with a thread handle is its owner's op, run by the thread: the owner is
//! the process whose `thread` op started it, which the validator knows (`owner`).

use super::super::error::TraceError;
use super::{Columns, OpLine};
use crate::program::{Op, ProcId, ThreadId};

impl OpLine<'_> {
    /// Reads an op line that may start with a thread handle: `(by, op)`, where `by` is the
    /// `by` op that hands `op` to the thread (`None` for a process's own op, and for `tK end`).
    /// `owner` says whose a live thread is.
    pub(in crate::program::trace) fn parse_line(
        mut self,
        owner: impl Fn(ThreadId) -> Option<ProcId>,
    ) -> Result<(Option<Op>, Op, Columns), TraceError> {
        let first = self.take("a process handle (like p0) or a thread handle (like t1)")?;
        if !first.text.starts_with('t') {
            self.next -= 1;
            let (op, columns) = self.parse()?;
            return Ok((None, op, columns));
        }
        let thread = ThreadId(self.handle(first, 't', "thread handle", "t1")?);
        let Some(proc) = owner(thread) else {
            return Err(self.error(
                first,
                format!("{thread} is no live thread (a `pN thread {thread}` starts it)"),
            ));
        };
        if self.tokens.get(self.next).is_some_and(|t| t.text == "end") {
            self.next += 1;
            let columns = Columns {
                proc: first.column,
                child: Some(first.column),
                ..Columns::default()
            };
            let (op, columns) = self.finish(Op::End { proc, thread }, columns)?;
            return Ok((None, op, columns));
        }
        let (op, columns) = self.parse_verb(proc, first)?;
        Ok((Some(Op::By { proc, thread }), op, columns))
    }
}

#[cfg(test)]
mod tests {
    use crate::program::{Op, ProcId, Program, ThreadId};

    const TRACE: &str = "cowcheck-trace 1\n\
        p0 map m0 private 2\n\
        p0 thread t1\n\
        # the thread writes\n\
        t1 write m0 0 fill 0x11 => ok\n\
        t1 fork p1 # a comment\n\
        p1 read m0 0\n\
        t1 end\n";

    /// `tK OP` is the pair `by`, OP; printing gives the line back.
    #[test]
    fn thread_lines_round_trip() {
        let p: Program = TRACE.parse().expect("parses");
        assert_eq!(p.ops.len(), 8);
        assert_eq!(
            p.ops[2],
            Op::By {
                proc: ProcId(0),
                thread: ThreadId(1)
            }
        );
        assert_eq!(p.ops[3].proc(), ProcId(0));
        assert_eq!(p.to_string(), TRACE);
        // A lone `by` (something between it and its op) prints in its own form and reads back.
        let mut lone = p.clone();
        lone.comments.push(crate::program::Comment {
            before_op: 3,
            inline: false,
            text: Some(" between".into()),
        });
        let text = lone.to_string();
        assert!(text.contains("p0 by t1\n# between\np0 write"), "{text}");
        let back: Program = text.parse().expect("parses");
        assert_eq!(back.ops, p.ops);
    }

    #[test]
    fn thread_lines_are_checked() {
        let err = |body: &str| {
            format!("cowcheck-trace 1\n{body}")
                .parse::<Program>()
                .expect_err(body)
                .to_string()
        };
        assert!(err("t1 write m0 0 fill 1").contains("no live thread"));
        assert!(err("p0 thread t1\nt1 exit").contains("does not exit"));
        assert!(err("p0 thread t1\np0 end t1").contains("tK end"));
        assert!(err("p0 thread t1\nt1 end\nt1 end").contains("no live thread"));
        assert!(err("p0 thread t1\nt1 end extra").contains("trailing"));
    }
}

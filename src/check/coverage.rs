//! Semantic coverage: which cells of cowcheck's semantic space a program reaches.
//!
//! A cell is one op kind x one mapping kind x one page state x one kind of sharing between
//! processes, for example "a write to a private page whose frame is shared copy-on-write with a
//! live descendant" (`write private private-cow-shared with-descendant`). The cells of an op are
//! read off the model *before* the op is applied, through [`Model::page_state`], for every page
//! the op touches: the pages of its span for `write`, `read`, `unmap` and `vfork` (the child's
//! write), the one page of a `race`, the fresh pages for `map`, none for an `advise` of length
//! 0, and every page the process maps for `fork` and `exit`.
//!
//! The fuzzer feeds the cells to libFuzzer as extra coverage, so that it looks for new
//! semantics rather than only new branches of Rust code; `cowcheck run` prints how many cells
//! its programs reached. This module only reads the model: it never changes it and never makes
//! a syscall.
//!
//! New op kinds extend the space by themselves: the op axis is [`OpKind::ALL`], and an op
//! that [`touched`] does not know yet counts the whole mapping it names, or everything its
//! process maps if it names none.

use std::fmt;

use crate::model::{Life, Model, ObjectPages, PageState};
use crate::program::{MapId, MapKind, Op, OpKind, PageRange, ProcId, Program, caps};

/// What a comparison reports about semantic coverage as it goes (see `coverage`): the cells
/// each op reaches, and the page configurations present after it.
pub trait CoverageSink {
    fn cell(&mut self, op_index: usize, cell: Cell);
    fn config(&mut self, op_index: usize, config: usize);
}

/// Who else, among the live processes, maps the page at the same address. In a model run
/// without a kernel, addresses are never reused, so another process that maps the address
/// inherited it through fork from the same `map`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sharing(u8);

impl Sharing {
    /// No other live process maps the page.
    pub const ALONE: Sharing = Sharing(0);
    const ANCESTOR: u8 = 1;
    const DESCENDANT: u8 = 2;
    /// A relative that is neither an ancestor nor a descendant (a sibling, a cousin).
    const KIN: u8 = 4;
    /// Number of distinct values (every combination of the three bits).
    pub const COUNT: usize = 8;

    pub fn with_ancestor(self) -> bool {
        self.0 & Self::ANCESTOR != 0
    }
    pub fn with_descendant(self) -> bool {
        self.0 & Self::DESCENDANT != 0
    }
    pub fn with_kin(self) -> bool {
        self.0 & Self::KIN != 0
    }

    /// The sharing of `proc`'s page at `addr`, as the model stands.
    pub fn of(model: &Model, proc: ProcId, addr: u64) -> Sharing {
        Sharing::among(model, &Relatives::of(model, proc), addr)
    }

    /// The sharing of the page at `addr` among `relatives` (computed once per op: a span
    /// touches many pages, and the relatives stay the same).
    fn among(model: &Model, relatives: &Relatives, addr: u64) -> Sharing {
        let mut bits = 0;
        for &(q, bit) in &relatives.0 {
            if bits & bit != 0 {
                continue;
            }
            if model.maps_page(q, addr) {
                bits |= bit;
            }
        }
        Sharing(bits)
    }

    pub fn name(self) -> String {
        if self == Self::ALONE {
            return "alone".into();
        }
        let parts: Vec<&str> = [
            (Self::ANCESTOR, "ancestor"),
            (Self::DESCENDANT, "descendant"),
            (Self::KIN, "kin"),
        ]
        .iter()
        .filter(|(bit, _)| self.0 & bit != 0)
        .map(|(_, name)| *name)
        .collect();
        format!("with-{}", parts.join("+"))
    }
}

/// The other live processes, each with its relation to one process (a `Sharing` bit).
struct Relatives(Vec<(ProcId, u8)>);

impl Relatives {
    fn of(model: &Model, proc: ProcId) -> Relatives {
        let others = (0..caps::MAX_PROCS as u8)
            .map(ProcId)
            .filter(|q| *q != proc && model.life(*q) == Life::Alive)
            .map(|q| {
                let bit = if descends(model, proc, q) {
                    Sharing::ANCESTOR
                } else if descends(model, q, proc) {
                    Sharing::DESCENDANT
                } else {
                    Sharing::KIN
                };
                (q, bit)
            })
            .collect();
        Relatives(others)
    }
}

/// Whether `p` descends from `ancestor` (through any number of forks).
fn descends(model: &Model, p: ProcId, ancestor: ProcId) -> bool {
    let mut cur = model.parent(p);
    // The tree has at most MAX_PROCS levels; the bound guards against a cycle.
    for _ in 0..caps::MAX_PROCS {
        match cur {
            Some(a) if a == ancestor => return true,
            Some(a) => cur = model.parent(a),
            None => return false,
        }
    }
    false
}

/// One cell of the semantic space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cell {
    pub op: OpKind,
    /// The kind of the mapping the page belongs to; `None` for an op that touched no mapping
    /// (a fork or exit of a process that maps nothing).
    pub kind: Option<MapKind>,
    pub state: PageState,
    pub sharing: Sharing,
}

const KINDS: usize = MapKind::ALL.len() + 1;

/// Number of cells in the space (most of them reachable, some not: a fresh `map` page is never
/// shared).
pub const CELLS: usize = OpKind::ALL.len() * KINDS * PageState::ALL.len() * Sharing::COUNT;

fn position<T: PartialEq>(all: &[T], x: &T) -> usize {
    all.iter().position(|y| y == x).expect("listed in ALL")
}

impl Cell {
    /// The cell's number, `0..CELLS`.
    pub fn index(&self) -> usize {
        let op = position(&OpKind::ALL, &self.op);
        let kind = self.kind.map_or(0, |k| 1 + position(&MapKind::ALL, &k));
        let state = position(&PageState::ALL, &self.state);
        ((op * KINDS + kind) * PageState::ALL.len() + state) * Sharing::COUNT
            + self.sharing.0 as usize
    }

    /// The cell numbered `index`, if `index < CELLS`.
    pub fn from_index(index: usize) -> Option<Cell> {
        if index >= CELLS {
            return None;
        }
        let sharing = Sharing((index % Sharing::COUNT) as u8);
        let rest = index / Sharing::COUNT;
        let state = PageState::ALL[rest % PageState::ALL.len()];
        let rest = rest / PageState::ALL.len();
        let kind = match rest % KINDS {
            0 => None,
            k => Some(MapKind::ALL[k - 1]),
        };
        let op = OpKind::ALL[rest / KINDS];
        Some(Cell {
            op,
            kind,
            state,
            sharing,
        })
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.op.name(),
            self.kind.map_or("no-mapping", |k| k.name()),
            self.state.name(),
            self.sharing.name()
        )
    }
}

/// A set of cells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CellSet {
    bits: Vec<u64>,
}

impl CellSet {
    pub fn new() -> CellSet {
        CellSet::default()
    }

    /// Adds a cell; `true` if it was not there yet.
    pub fn insert(&mut self, cell: Cell) -> bool {
        let i = cell.index();
        if self.bits.len() <= i / 64 {
            self.bits.resize(CELLS.div_ceil(64), 0);
        }
        let new = self.bits[i / 64] & 1 << (i % 64) == 0;
        self.bits[i / 64] |= 1 << (i % 64);
        new
    }

    pub fn contains(&self, cell: Cell) -> bool {
        let i = cell.index();
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & 1 << (i % 64) != 0)
    }

    /// Adds every cell of `other`; the number of cells that were new.
    pub fn union(&mut self, other: &CellSet) -> usize {
        other.iter().filter(|c| self.insert(*c)).count()
    }

    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cells in index order.
    pub fn iter(&self) -> impl Iterator<Item = Cell> + '_ {
        self.bits.iter().enumerate().flat_map(|(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(w * 64 + bit)
            })
            .filter_map(Cell::from_index)
        })
    }
}

impl CoverageSink for CellSet {
    fn cell(&mut self, _op_index: usize, cell: Cell) {
        self.insert(cell);
    }
    fn config(&mut self, _op_index: usize, _config: usize) {}
}

impl Extend<Cell> for CellSet {
    fn extend<I: IntoIterator<Item = Cell>>(&mut self, cells: I) {
        for c in cells {
            self.insert(c);
        }
    }
}

/// What an op touches, for coverage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch {
    /// Fresh pages of a new mapping of this kind.
    New(MapKind),
    /// These pages of a mapping.
    Pages(MapId, PageRange),
    /// The whole mapping.
    Mapping(MapId),
    /// Every page the process maps.
    Process,
}

/// What `op` touches. Op kinds that this function does not name yet fall back to the whole
/// mapping they name, or to the whole process.
pub fn touched(op: &Op) -> Touch {
    match *op {
        Op::Map { kind, .. } => Touch::New(kind),
        Op::Write { map, span, .. } | Op::Read { map, span, .. } => {
            Touch::Pages(map, span.page_range())
        }
        Op::Unmap { map, pages, .. } => Touch::Pages(map, pages),
        // The vfork child's write, and the one page a racing thread works on (the fuzzer's
        // later families, docs/FUZZING.md).
        Op::Vfork { map, span, .. } => Touch::Pages(map, span.page_range()),
        Op::Race { map, page, .. } => Touch::Pages(map, PageRange::new(page, page + 1)),
        // A length of 0 names no page (docs/SEMANTICS.md F14).
        Op::Advise { map, pages, .. } if pages.is_empty() => Touch::Pages(map, pages),
        _ => match op.map() {
            Some(m) => Touch::Mapping(m),
            None => Touch::Process,
        },
    }
}

/// The cells `op` reaches if applied to `model` now, each once, in index order. An op that the
/// model would skip (its process is not alive, its mapping never came to be) reaches none.
pub fn cells_before(model: &Model, op: &Op) -> Vec<Cell> {
    let proc = op.proc();
    if model.life(proc) != Life::Alive {
        return Vec::new();
    }
    let kind = op.kind();
    let ps = model.page_size() as u64;
    // An op reaches a handful of cells: a small list beats a set of thousands of bits.
    let mut set = SmallSet(Vec::new());
    let relatives = || Relatives::of(model, proc);
    let mut counts = ObjectPages::default();
    let mut page_cell =
        |set: &mut SmallSet, relatives: &Relatives, handle_kind: MapKind, addr: u64| {
            let (state, k) = model.page_state_counted(proc, addr, &mut counts);
            set.insert(Cell {
                op: kind,
                // An unmapped page still belongs to the mapping the op names.
                kind: Some(k.unwrap_or(handle_kind)),
                state,
                sharing: Sharing::among(model, relatives, addr),
            });
        };
    match touched(op) {
        Touch::New(k) => {
            set.insert(Cell {
                op: kind,
                kind: Some(k),
                state: PageState::Unmapped,
                sharing: Sharing::ALONE,
            });
        }
        Touch::Pages(m, range) => {
            let Some(h) = model.handle(m) else {
                return Vec::new();
            };
            let relatives = relatives();
            for page in range.pages().filter(|p| *p < h.pages) {
                page_cell(&mut set, &relatives, h.kind, h.base + page as u64 * ps);
            }
        }
        Touch::Mapping(m) => match model.handle(m) {
            Some(h) => {
                let relatives = relatives();
                for page in 0..h.pages {
                    page_cell(&mut set, &relatives, h.kind, h.base + page as u64 * ps);
                }
            }
            // An op that creates the mapping it names, of a kind this module does not know.
            None => {
                set.insert(Cell {
                    op: kind,
                    kind: None,
                    state: PageState::Unmapped,
                    sharing: Sharing::ALONE,
                });
            }
        },
        Touch::Process => {
            process_cells(model, proc, kind, &mut set);
            if set.is_empty() {
                set.insert(Cell {
                    op: kind,
                    kind: None,
                    state: PageState::Unmapped,
                    sharing: Sharing::ALONE,
                });
            }
        }
    }
    let mut cells = set.0;
    cells.sort_by_key(Cell::index);
    cells
}

/// The cells of `op` over every page that `proc` maps.
fn process_cells(model: &Model, proc: ProcId, op: OpKind, set: &mut SmallSet) {
    let ps = model.page_size() as u64;
    let relatives = Relatives::of(model, proc);
    let mut counts = ObjectPages::default();
    for m in (0..caps::MAX_MAPS as u8).map(MapId) {
        let Some(h) = model.handle(m) else {
            continue;
        };
        // The sharing of a mapping is read once, at its first page that the process maps: a
        // fork or exit touches hundreds of pages, and this keeps it cheap.
        let mut sharing = None;
        for page in 0..h.pages {
            let addr = h.base + page as u64 * ps;
            let (state, k) = model.page_state_counted(proc, addr, &mut counts);
            if state == PageState::Unmapped {
                continue;
            }
            let sharing = *sharing.get_or_insert_with(|| Sharing::among(model, &relatives, addr));
            set.insert(Cell {
                op,
                kind: k,
                state,
                sharing,
            });
        }
    }
}

/// Number of page configurations: mapping kind x page state x sharing, a cell without its op.
pub const CONFIGS: usize = KINDS * PageState::ALL.len() * Sharing::COUNT;

impl Cell {
    /// The cell's page configuration (its index without the op), `0..CONFIGS`.
    pub fn config_index(&self) -> usize {
        self.index() % CONFIGS
    }
}

/// Runs `program` on a model alone (it places mappings itself) and reports to `sink` every
/// cell that each op reaches, and the page configurations present in the child after each fork:
/// configurations that no op has touched yet. The fuzzer rewards them as stepping stones: a
/// program that builds a rare process tree over a mapping is worth keeping before any op lands
/// on that mapping, since the next inserted op then reaches a new cell.
pub fn walk_covered(program: &Program, page_size: usize, sink: &mut dyn CoverageSink) {
    let mut model = Model::new(page_size);
    for (i, op) in program.ops.iter().enumerate() {
        for cell in cells_before(&model, op) {
            sink.cell(i, cell);
        }
        // The model alone places every mapping itself, so it cannot fail.
        if model.apply(op, None).is_err() {
            break;
        }
        configs_after(&model, op, |c| sink.config(i, c));
    }
}

/// The cells alone: `visit(i, cell)` for every cell that op `i` reaches.
pub fn walk(program: &Program, page_size: usize, visit: impl FnMut(usize, Cell)) {
    struct Cells<F>(F);
    impl<F: FnMut(usize, Cell)> CoverageSink for Cells<F> {
        fn cell(&mut self, op_index: usize, cell: Cell) {
            (self.0)(op_index, cell)
        }
        fn config(&mut self, _op_index: usize, _config: usize) {}
    }
    walk_covered(program, page_size, &mut Cells(visit));
}

/// The page configurations present after `op` (just applied to `model`) that
/// `walk_covered` reports: after a fork or a CLONE_VM clone, those of the child.
pub fn configs_after(model: &Model, op: &Op, mut present: impl FnMut(usize)) {
    // Sharing between processes is made by forks: look after each, in the child (the parent's
    // pages changed sharing the same way). Looking after every op costs the fuzzer more than a
    // tenth of its time, measured.
    // A CLONE_VM child shares its parent's pages as they are: a configuration of its own.
    let (Op::Fork { child, .. } | Op::CloneVm { child, .. }) = *op else {
        return;
    };
    let mut set = SmallSet(Vec::new());
    if model.life(child) == Life::Alive {
        process_cells(model, child, op.kind(), &mut set);
    }
    for cell in set.0 {
        present(cell.config_index());
    }
}

/// A few distinct cells.
struct SmallSet(Vec<Cell>);

impl SmallSet {
    fn insert(&mut self, cell: Cell) {
        if !self.0.contains(&cell) {
            self.0.push(cell);
        }
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::trace;

    fn cells(text: &str) -> Vec<(usize, String)> {
        let p = trace::parse_str(text).expect("trace");
        let mut out = Vec::new();
        walk(&p, 4096, |i, c| out.push((i, c.to_string())));
        out
    }

    #[test]
    fn index_and_from_index_are_inverse() {
        for i in 0..CELLS {
            let c = Cell::from_index(i).expect("in range");
            assert_eq!(c.index(), i, "{c}");
        }
        assert_eq!(Cell::from_index(CELLS), None);
    }

    #[test]
    fn a_write_to_a_private_page_shared_with_a_live_child() {
        let got = cells(
            "cowcheck-trace 1\n\
             p0 map m0 private 1\n\
             p0 write m0 0 fill 0x01\n\
             p0 fork p1\n\
             p0 write m0 0 fill 0x02\n\
             p1 write m0 0 fill 0x03\n",
        );
        assert_eq!(
            got,
            vec![
                (0, "map private unmapped alone".to_string()),
                (1, "write private private-untouched alone".to_string()),
                (2, "fork private private-exclusive alone".to_string()),
                (
                    3,
                    "write private private-cow-shared with-descendant".to_string()
                ),
                // p0 took its own copy: p1's frame is now its alone, but p0 still maps the page.
                (
                    4,
                    "write private private-exclusive with-ancestor".to_string()
                ),
            ]
        );
    }

    #[test]
    fn shared_pages_siblings_unmapped_pages_and_exits() {
        let got = cells(
            "cowcheck-trace 1\n\
             p0 map m0 shared 2\n\
             p0 fork p1\n\
             p0 fork p2\n\
             p1 unmap m0 1\n\
             p1 read m0 0..2\n\
             p2 exit\n\
             p0 exit\n\
             p1 exit\n",
        );
        let want = [
            (0, "map shared unmapped alone"),
            (1, "fork shared shared-alone alone"),
            (2, "fork shared shared-with-others with-descendant"),
            (3, "unmap shared shared-with-others with-ancestor+kin"),
            (4, "read shared unmapped with-ancestor+kin"),
            (4, "read shared shared-with-others with-ancestor+kin"),
            // p1 died on the unmapped page: p2 shares with p0 alone, and p0 with no one.
            (5, "exit shared shared-with-others with-ancestor"),
            (6, "exit shared shared-alone alone"),
        ];
        let want: Vec<(usize, String)> = want.iter().map(|(i, s)| (*i, s.to_string())).collect();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        assert_eq!(got_sorted, want_sorted, "{got:#?}");
    }

    #[test]
    fn ops_the_model_skips_reach_no_cell() {
        let got = cells(
            "cowcheck-trace 1\n\
             p0 fork p1\n\
             p0 map m0 private 1\n\
             p1 read m0 0\n\
             p1 write m0 0 fill 0x01\n",
        );
        assert_eq!(
            got,
            vec![
                (0, "fork no-mapping unmapped alone".to_string()),
                (1, "map private unmapped alone".to_string()),
                // p1 never mapped m0: the read kills it, and its next op is skipped.
                (2, "read private unmapped with-ancestor".to_string()),
            ]
        );
    }

    #[test]
    fn cell_sets_count_and_merge() {
        let mut a = CellSet::new();
        assert!(a.is_empty());
        let c0 = Cell::from_index(0).expect("cell");
        let c9 = Cell::from_index(CELLS - 1).expect("cell");
        assert!(a.insert(c0));
        assert!(!a.insert(c0));
        let mut b = CellSet::new();
        b.insert(c9);
        assert_eq!(a.union(&b), 1);
        assert_eq!(a.len(), 2);
        assert!(a.contains(c9));
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![c0, c9]);
    }
}

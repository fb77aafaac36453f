//! The worlds a failed MREMAP_FIXED move leaves open (G5): 6.1 and 6.12 may have unmapped its
//! destination before the check that failed, 6.18 has not. `Model::others` holds the worlds the
//! observations cannot yet tell apart; these step them along and keep the one the kernel shows.

use super::super::{Model, ModelError};
use crate::program::Op;
use crate::program::outcome::{Outcome, Snapshot};

/// At most this many worlds are held at once (this one and its `others`); past it the newest
/// are dropped (the learning then follows the kernel less far, never wrongly).
pub(super) const MAX_WORLDS: usize = 8;

impl Model {
    /// Steps this world and the `others` (G5): a world whose outcome differs from the kernel's is
    /// dropped; where this one's does and another's does not, that one becomes this.
    pub(in crate::model) fn step_worlds(
        &mut self,
        op: &Op,
        observed: Option<&Outcome>,
    ) -> Result<Outcome, ModelError> {
        let others = std::mem::take(&mut self.others);
        let mine = self.step_one(op, observed);
        let Some(seen) = observed else {
            return mine;
        };
        let agrees = |r: &Result<Outcome, ModelError>| matches!(r, Ok(o) if o == seen);
        let mut worlds = Vec::new();
        for mut w in others {
            let r = w.step_one(op, observed);
            if agrees(&r) {
                worlds.append(&mut w.others);
                worlds.push(w);
            }
        }
        if !agrees(&mine)
            && let Some(mut w) = worlds.pop()
        {
            w.others = worlds;
            w.others.truncate(MAX_WORLDS - 1);
            *self = w;
            return Ok(seen.clone());
        }
        self.others.append(&mut worlds);
        self.others.truncate(MAX_WORLDS - 1);
        mine
    }

    /// Before a snapshot is compared: keeps the world whose layout (each live process's
    /// regions) is the one observed, this one where it fits (G5).
    pub(in crate::model) fn choose_world(&mut self, observed: &Snapshot) {
        if self.others.is_empty() {
            return;
        }
        let fits = |m: &mut Model| {
            let s = m.snapshot();
            s.procs.len() == observed.procs.len()
                && s.procs
                    .iter()
                    .zip(&observed.procs)
                    .all(|(a, b)| a.proc == b.proc && a.regions == b.regions)
        };
        if fits(self) {
            self.others.clear();
            return;
        }
        let others = std::mem::take(&mut self.others);
        if let Some(w) = others
            .into_iter()
            .find_map(|mut w| fits(&mut w).then_some(w))
        {
            *self = w;
        }
    }
}

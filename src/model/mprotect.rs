//! mprotect, as in mm/mprotect.c: protections change page by page up to the first hole (E1),
//! the range becomes a VMA of its own, and the errnos of bad arguments. Never touches data
//! (E2).

use super::Model;
use super::errno::*;
use crate::program::outcome::{Outcome, PROT_R, PROT_W};
use crate::program::{BadArg, PageRange, ProcId, Prot};

fn prot_bits(p: Prot) -> u8 {
    match p {
        Prot::None => 0,
        Prot::Read => PROT_R,
        Prot::ReadWrite => PROT_R | PROT_W,
        Prot::Write => PROT_W,
    }
}

impl Model {
    /// mprotect: pages change up to the first hole, then ENOMEM (E1; probe
    /// R14.mprotect-hole). Data is never touched (E2).
    pub(super) fn mprotect(
        &mut self,
        proc: ProcId,
        base: u64,
        pages: PageRange,
        prot: Prot,
    ) -> Outcome {
        let start = self.vpn(base) + pages.start as u64;
        // A hugetlb VMA is never split inside a huge page (L8): `hugetlb.rs`.
        let end = start + pages.len() as u64;
        if let Some(stop) = self.hugetlb_protect_stop(proc, start, end, prot_bits(prot)) {
            if stop > start {
                let before = PageRange {
                    start: pages.start,
                    end: pages.start + (stop - start) as u16,
                };
                if let failed @ Outcome::Failed { .. } = self.mprotect(proc, base, before, prot) {
                    return failed;
                }
            }
            return Outcome::Failed { errno: EINVAL };
        }
        // The range becomes a VMA of its own; whether the kernel merges it back with its
        // neighbours once their attributes match again is its business (anon_vma, accounting),
        // so a later "is this one VMA" has both answers (`one_vma` says `OneVma::Maybe`;
        // measured: a write-only-then-none page did not merge back).
        let mut renamed = Vec::new();
        for vpn in start..start + pages.len() as u64 {
            let Some(old) = self.space(proc).get(vpn).map(|p| p.vma) else {
                return Outcome::Failed { errno: ENOMEM };
            };
            let vma = self.split_vma(&mut renamed, old);
            let pte = self.space_mut(proc).get_mut(vpn).expect("mapped");
            pte.prot = prot_bits(prot);
            pte.vma = vma;
        }
        Outcome::Done
    }
}

/// mprotect with a bad argument, measured on 6.18 with the probe that cowcheck's `invalid` op
/// mirrors (man mprotect ERRORS agrees): length 0 succeeds doing nothing; unaligned EINVAL;
/// wrapping ENOMEM (the end is below the start); unknown PROT bits EINVAL (E1).
pub(super) fn mprotect_bad_arg(bad: BadArg) -> Outcome {
    let errno = match bad {
        BadArg::ZeroLength => return Outcome::Done,
        BadArg::Overflow => ENOMEM,
        _ => EINVAL,
    };
    Outcome::Failed { errno }
}

//! The smaps comparison can fail: a page's bounds against what smaps might say, for the cases
//! the rules name (I11 to I14).

use super::*;

const PS: u64 = 4096;

fn pred(identity: Option<Identity>, shared: bool, open: bool) -> Prediction {
    Prediction {
        addr: 0x1000,
        identity,
        open,
        presence: Presence::May,
        shared,
        huge: false,
    }
}

/// smaps words for one entry: (field, kB) pairs, the rest 0.
fn said(fields: &[(usize, u64)]) -> Vec<u64> {
    let mut w = vec![0; smaps::WORDS];
    w[0] = 1;
    for &(f, kb) in fields {
        w[1 + f] = kb;
    }
    w
}

fn one(p: Prediction, word: u64, entries: (usize, usize)) -> Bounds {
    let mut b = Bounds::default();
    b.page(PS, &p, word, entries);
    b
}

const PRESENT: u64 = pm::PRESENT;

#[test]
fn the_zero_page_is_not_resident() {
    let b = one(pred(Some(Identity::Zero), false, false), PRESENT, (1, 1));
    assert_eq!(compare(&b, &said(&[])), None);
    let r = compare(&b, &said(&[(smaps::RSS, 4)])).expect("a zero page counted");
    assert_eq!((r.0, r.1), ("smaps Rss", "I11"));
}

#[test]
fn a_private_frame_is_anonymous_dirty_and_shared_after_fork() {
    let p = pred(Some(Identity::Frame(3)), false, false);
    let own = one(p, PRESENT, (1, 1));
    let all = [
        (smaps::RSS, 4),
        (smaps::PSS, 4),
        (smaps::ANON, 4),
        (smaps::PRIVATE_DIRTY, 4),
    ];
    assert_eq!(compare(&own, &said(&all)), None);
    // Copied eagerly at fork, or never shared: Pss whole where the model says halved.
    let forked = one(p, PRESENT, (2, 2));
    let r = compare(&forked, &said(&all)).expect("not shared");
    assert_eq!(r.0, "smaps Pss");
    let shared = [
        (smaps::RSS, 4),
        (smaps::PSS, 2),
        (smaps::ANON, 4),
        (smaps::SHARED_DIRTY, 4),
    ];
    assert_eq!(compare(&forked, &said(&shared)), None);
    // Every private frame of the model's was written (or copied by a write fault): dirty.
    let clean = [
        (smaps::RSS, 4),
        (smaps::PSS, 4),
        (smaps::ANON, 4),
        (smaps::PRIVATE_CLEAN, 4),
    ];
    assert_eq!(
        compare(&own, &said(&clean)).map(|r| r.0),
        Some("smaps Private_Clean")
    );
}

#[test]
fn a_sole_mapper_of_a_shared_object_has_it_whole() {
    // What the munmap-alive fault gives the survivor: a hidden holder halves its Pss and makes
    // its page Shared_*.
    let p = pred(Some(Identity::ObjPage(0, 0)), true, false);
    let b = one(p, PRESENT | pm::FILE | pm::EXCLUSIVE, (1, 1));
    let alone = [(smaps::RSS, 4), (smaps::PSS, 4), (smaps::PRIVATE_CLEAN, 4)];
    assert_eq!(compare(&b, &said(&alone)), None);
    let alone_dirty = [(smaps::RSS, 4), (smaps::PSS, 4), (smaps::PRIVATE_DIRTY, 4)];
    assert_eq!(compare(&b, &said(&alone_dirty)), None);
    let held = [(smaps::RSS, 4), (smaps::PSS, 2), (smaps::SHARED_DIRTY, 4)];
    let r = compare(&b, &said(&held)).expect("a hidden mapper");
    assert_eq!((r.0, r.1), ("smaps Pss", "I12"));
    let held_whole = [(smaps::RSS, 4), (smaps::PSS, 4), (smaps::SHARED_DIRTY, 4)];
    assert_eq!(
        compare(&b, &said(&held_whole)).map(|r| r.0),
        Some("smaps Shared_Dirty")
    );
}

#[test]
fn a_shared_page_a_digest_may_have_mapped_is_a_range() {
    let p = pred(Some(Identity::ObjPage(0, 0)), true, false);
    let b = one(p, PRESENT | pm::FILE, (1, 2));
    for pss in [2, 4] {
        assert_eq!(
            compare(
                &b,
                &said(&[(smaps::RSS, 4), (smaps::PSS, pss), (smaps::SHARED_CLEAN, 4)])
            ),
            None
        );
    }
    assert!(
        compare(
            &b,
            &said(&[(smaps::RSS, 4), (smaps::PSS, 1), (smaps::SHARED_CLEAN, 4)])
        )
        .is_some()
    );
}

#[test]
fn an_open_page_may_be_anything() {
    let b = one(pred(Some(Identity::Frame(1)), false, true), PRESENT, (1, 1));
    assert_eq!(compare(&b, &said(&[])), None);
    let huge = [
        (smaps::RSS, 4),
        (smaps::PSS, 4),
        (smaps::ANON, 4),
        (smaps::PRIVATE_CLEAN, 4),
        (smaps::LAZYFREE, 4),
        (smaps::ANON_HUGE, 4),
    ];
    assert_eq!(compare(&b, &said(&huge)), None);
    // An open page absent in the pagemap word may be resident when smaps is read a moment
    // later (a racing dontneed thread's page, `run --seed 5`), and the other way round.
    let gone = one(pred(Some(Identity::Frame(1)), false, true), 0, (1, 1));
    assert_eq!(compare(&gone, &said(&[(smaps::RSS, 4)])), None);
    // But never more than the page.
    assert_eq!(
        compare(&gone, &said(&[(smaps::RSS, 8)])).map(|r| r.0),
        Some("smaps Rss")
    );
}

#[test]
fn a_page_not_present_and_not_open_counts_nowhere() {
    let gone = one(pred(Some(Identity::Frame(1)), false, false), 0, (1, 1));
    assert_eq!(
        compare(&gone, &said(&[(smaps::RSS, 4)])).map(|r| r.0),
        Some("smaps Rss")
    );
    assert_eq!(compare(&gone, &said(&[])), None);
}

#[test]
fn a_hugetlb_page_counts_only_in_its_hugetlb_field() {
    // One base page of a private huge page that one page table maps: Private_Hugetlb, no Rss.
    let p = pred(Some(Identity::TlbPrivate(3, 0)), false, false);
    let own = one(p, PRESENT, (1, 1));
    assert_eq!(compare(&own, &said(&[(smaps::PRIVATE_HUGETLB, 4)])), None);
    let r =
        compare(&own, &said(&[(smaps::RSS, 4), (smaps::PRIVATE_HUGETLB, 4)])).expect("Rss counted");
    assert_eq!((r.0, r.1), ("smaps Rss", "I11"));
    // Shared with a fork child: Shared_Hugetlb; Private_Hugetlb is an eager copy at fork.
    let forked = one(p, PRESENT, (2, 2));
    assert_eq!(compare(&forked, &said(&[(smaps::SHARED_HUGETLB, 4)])), None);
    let r = compare(&forked, &said(&[(smaps::PRIVATE_HUGETLB, 4)])).expect("not shared");
    assert_eq!((r.0, r.1), ("smaps Private_Hugetlb", "I17"));
    // Not mapped: nothing.
    let gone = one(p, 0, (1, 1));
    let r = compare(&gone, &said(&[(smaps::PRIVATE_HUGETLB, 4)])).expect("counted");
    assert_eq!(r.1, "I17");
    // A shared object's page mapped by one page table is private too.
    let s = pred(Some(Identity::TlbShared(0, 7)), true, false);
    assert_eq!(
        compare(
            &one(s, PRESENT, (1, 1)),
            &said(&[(smaps::PRIVATE_HUGETLB, 4)])
        ),
        None
    );
}

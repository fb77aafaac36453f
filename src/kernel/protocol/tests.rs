//! Round trips of every wire format: typed value -> words (or bytes) -> the same typed value,
//! for every variant and every enum value, property-style over ranges of the numbers; and
//! decoding garbage gives an error (or a value that encodes to the very same words), never a
//! panic.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::front::{Dec, Enc, FrontRequest, Hello, decode_request, encode_fork_bench};
use super::*;
use crate::program::features::Features;
use crate::program::generate::{GenConfig, random_program};
use crate::program::outcome::{Backing, Death, Outcome, ProcView, Region, Snapshot};
use crate::program::{
    Advice, At, BadArg, MapArgs, MapId, MapKind, Offset, PageRange, Pattern, PlaceHow, ProcId,
    Prot, RemapFlags, Syscall, Via, caps,
};
use crate::program::{AllocCall, MalloptParam, Tune};
use crate::program::{MAX_THREADS, RaceKind};

fn map_id() -> impl Strategy<Value = MapId> {
    (0..caps::MAX_MAPS as u8).prop_map(MapId)
}

fn at() -> impl Strategy<Value = At> {
    (map_id(), any::<u16>(), 0..caps::MAX_BYTE_OFFSET).prop_map(|(map, page, byte)| At {
        map,
        page,
        byte,
    })
}

/// The bytes of a length's last page: 0 (all of it) or 1 to 4096.
fn tail() -> impl Strategy<Value = u16> {
    prop_oneof![Just(0u16), 1..=caps::MAX_BYTE_OFFSET]
}

/// A length: pages and a tail, the tail only with pages.
fn length() -> impl Strategy<Value = (u16, u16)> {
    (any::<u16>(), tail()).prop_map(|(pages, tail)| (pages, if pages == 0 { 0 } else { tail }))
}

/// Any range with a tail where it is not empty.
fn extent() -> impl Strategy<Value = (PageRange, u16)> {
    (pages(), tail()).prop_map(|(r, tail)| (r, if r.is_empty() { 0 } else { tail }))
}

fn args() -> impl Strategy<Value = MapArgs> {
    (
        any::<bool>(),
        any::<u16>(),
        0..caps::MAX_BYTE_OFFSET,
        any::<bool>(),
    )
        .prop_map(|(fd, pages, bytes, hugetlb)| MapArgs {
            fd,
            offset: Offset { pages, bytes },
            hugetlb,
        })
}

/// Any range of pages, empty ones included.
fn pages() -> impl Strategy<Value = PageRange> {
    any::<u16>()
        .prop_flat_map(|start| (Just(start), start..=u16::MAX))
        .prop_map(|(start, end)| PageRange { start, end })
}

fn bytes() -> impl Strategy<Value = ByteRange> {
    (any::<u32>(), any::<u32>()).prop_map(|(a, b)| ByteRange {
        start: a.min(b),
        end: a.max(b),
    })
}

fn kind() -> impl Strategy<Value = MapKind> {
    select(MapKind::ALL.to_vec())
}

fn how() -> impl Strategy<Value = PlaceHow> {
    select(PlaceHow::ALL.to_vec())
}

fn pattern() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        any::<u8>().prop_map(Pattern::Fill),
        any::<u8>().prop_map(Pattern::Ramp)
    ]
}

fn via() -> impl Strategy<Value = Via> {
    select(vec![Via::Mem, Via::Vm])
}

fn remap_flags() -> impl Strategy<Value = RemapFlags> {
    (any::<bool>(), any::<bool>(), proptest::option::of(at())).prop_map(
        |(maymove, dontunmap, fixed)| RemapFlags {
            maymove,
            dontunmap,
            fixed,
        },
    )
}

fn barrier() -> impl Strategy<Value = Barrier> {
    (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
        |(serial, mask, next, late)| Barrier {
            serial,
            mask,
            next,
            late,
        },
    )
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (kind(), length(), map_id(), args()).prop_map(|(kind, (pages, tail), creates, args)| {
            Request::Map {
                kind,
                pages,
                tail,
                creates,
                args,
            }
        }),
        (kind(), length(), map_id(), at(), how(), args()).prop_map(
            |(kind, (pages, tail), creates, at, how, args)| Request::MapAt {
                kind,
                pages,
                tail,
                creates,
                at,
                how,
                args,
            }
        ),
        (map_id(), pages(), bytes(), pattern()).prop_map(|(map, pages, bytes, pattern)| {
            Request::Write {
                map,
                pages,
                bytes,
                pattern,
            }
        }),
        (map_id(), pages(), bytes()).prop_map(|(map, pages, bytes)| Request::Read {
            map,
            pages,
            bytes
        }),
        (map_id(), pages(), bytes(), pattern(), via()).prop_map(
            |(map, pages, bytes, pattern, via)| Request::Poke {
                map,
                pages,
                bytes,
                pattern,
                via
            }
        ),
        (map_id(), extent()).prop_map(|(map, (pages, tail))| Request::Unmap { map, pages, tail }),
        (map_id(), extent(), select(Prot::ALL.to_vec())).prop_map(|(map, (pages, tail), prot)| {
            Request::Protect {
                map,
                pages,
                tail,
                prot,
            }
        }),
        (map_id(), extent(), select(Advice::ALL.to_vec())).prop_map(
            |(map, (pages, tail), advice)| Request::Advise {
                map,
                pages,
                tail,
                advice
            }
        ),
        (map_id(), extent(), length(), map_id(), remap_flags()).prop_map(
            |(map, (old, old_tail), (new_pages, new_tail), creates, flags)| Request::Remap {
                map,
                old,
                old_tail,
                new_pages,
                new_tail,
                creates,
                flags
            }
        ),
        (
            map_id(),
            select(Syscall::ALL.to_vec()),
            select(BadArg::ALL.to_vec())
        )
            .prop_map(|(map, call, bad)| Request::Invalid { map, call, bad }),
        at().prop_map(|at| Request::Vmsplice { at }),
        Just(Request::PipeRead),
        (at(), select(RaceKind::ALL.to_vec()), 0..MAX_THREADS as u8)
            .prop_map(|(at, kind, thread)| Request::Race { at, kind, thread }),
        (0..MAX_THREADS as u8).prop_map(|thread| Request::Stop { thread }),
        (0..MAX_THREADS as u8).prop_map(|thread| Request::Thread { thread }),
        (0..MAX_THREADS as u8).prop_map(|thread| Request::By { thread }),
        (0..MAX_THREADS as u8).prop_map(|thread| Request::End { thread }),
        (map_id(), pages(), bytes(), pattern()).prop_map(|(map, pages, bytes, pattern)| {
            Request::Vfork {
                map,
                pages,
                bytes,
                pattern,
            }
        }),
        (0..caps::MAX_PROCS as u8, any::<bool>(), barrier()).prop_map(
            |(child, direct_reads, barrier)| Request::Fork {
                child: ProcId(child),
                direct_reads,
                barrier
            }
        ),
        (0..caps::MAX_PROCS as u8, any::<bool>(), barrier()).prop_map(
            |(child, direct_reads, barrier)| Request::CloneVm {
                child: ProcId(child),
                direct_reads,
                barrier
            }
        ),
        Just(Request::PrepareClones),
        any::<u32>().prop_map(|pass| Request::Exit { pass }),
        (any::<bool>(), any::<bool>(), barrier()).prop_map(|(direct_reads, smaps, barrier)| {
            Request::Snapshot {
                direct_reads,
                smaps,
                barrier,
            }
        }),
        at().prop_map(|at| Request::Dump { at }),
        Just(Request::SpawnRoot),
        any::<u32>().prop_map(|turn| Request::Await { turn }),
        any::<u32>().prop_map(|turn| Request::Pass { turn }),
        (0..5u8, map_id(), any::<u32>(), map_id(), any::<u32>()).prop_map(
            |(c, from, align, creates, size)| Request::Alloc {
                call: match c {
                    0 => AllocCall::Malloc,
                    1 => AllocCall::Calloc,
                    2 => AllocCall::Realloc { from },
                    3 => AllocCall::Memalign { align },
                    _ => AllocCall::AlignedAlloc { align },
                },
                size,
                creates
            }
        ),
        map_id().prop_map(|map| Request::Free { map }),
        (0..4u8, any::<u32>()).prop_map(|(w, value)| Request::Tune {
            tune: match w {
                0 => Tune::Mallopt {
                    param: MalloptParam::MmapThreshold,
                    value
                },
                1 => Tune::Mallopt {
                    param: MalloptParam::MmapMax,
                    value
                },
                2 => Tune::Mallopt {
                    param: MalloptParam::TrimThreshold,
                    value
                },
                _ => Tune::Trim { pad: value },
            }
        }),
    ]
}

/// A number per variant, by a `match` without a wildcard: a new variant fails to compile here
/// until it is added to `request()` and to `every_variant_is_generated`.
fn request_variant(r: &Request) -> usize {
    match r {
        Request::Map { .. } => 0,
        Request::MapAt { .. } => 1,
        Request::Write { .. } => 2,
        Request::Read { .. } => 3,
        Request::Poke { .. } => 4,
        Request::Unmap { .. } => 5,
        Request::Protect { .. } => 6,
        Request::Advise { .. } => 7,
        Request::Remap { .. } => 8,
        Request::Invalid { .. } => 9,
        Request::Vmsplice { .. } => 10,
        Request::PipeRead => 11,
        Request::Fork { .. } => 12,
        Request::Exit { .. } => 13,
        Request::Snapshot { .. } => 14,
        Request::Dump { .. } => 15,
        Request::SpawnRoot => 16,
        Request::Await { .. } => 17,
        Request::Pass { .. } => 18,
        Request::Alloc { .. } => 19,
        Request::Free { .. } => 20,
        Request::Tune { .. } => 21,
        Request::Race { .. } => 22,
        Request::Stop { .. } => 23,
        Request::Vfork { .. } => 24,
        Request::CloneVm { .. } => 25,
        Request::PrepareClones => 26,
        Request::Thread { .. } => 27,
        Request::By { .. } => 28,
        Request::End { .. } => 29,
    }
}
const REQUEST_VARIANTS: usize = 30;

fn reply() -> impl Strategy<Value = Reply> {
    let n = 0..=REPLY_PAYLOAD;
    prop_oneof![
        any::<u64>().prop_map(|value| Reply::Done { value }),
        any::<i32>().prop_map(|errno| Reply::Failed { errno }),
        n.clone().prop_map(|count| Reply::Digests { count }),
        n.clone().prop_map(|words| Reply::Page { words }),
        (0..=REPLY_PAYLOAD / 3)
            .prop_flat_map(|regions| (Just(regions), 0..=(REPLY_PAYLOAD - regions * 3) / 2))
            .prop_flat_map(|(regions, pages)| (
                Just(regions),
                Just(pages),
                0..=REPLY_PAYLOAD - regions * 3 - pages * 2
            ))
            .prop_map(|(regions, pages, phys)| Reply::View {
                regions,
                pages,
                phys
            }),
        (any::<i32>(), any::<i32>(), any::<u64>(), n).prop_map(|(signal, code, addr, partial)| {
            Reply::Fault {
                signal,
                code,
                addr,
                partial,
            }
        }),
        Just(Reply::Refused),
        Just(Reply::Skipped),
    ]
}

/// Garbage words: random, or a valid request's words with one word replaced.
fn request_garbage() -> impl Strategy<Value = [u64; REQ_WORDS]> {
    prop_oneof![
        any::<[u64; REQ_WORDS]>(),
        (request(), 0..REQ_WORDS, any::<u64>()).prop_map(|(r, i, v)| {
            let mut w = r.encode();
            w[i] = v;
            w
        }),
        (request(), 0..REQ_WORDS, 0..64u32).prop_map(|(r, i, bit)| {
            let mut w = r.encode();
            w[i] ^= 1 << bit;
            w
        }),
    ]
}

fn reply_garbage() -> impl Strategy<Value = [u64; REPLY_HEAD]> {
    prop_oneof![
        any::<[u64; REPLY_HEAD]>(),
        (reply(), 0..REPLY_HEAD, 0..64u32).prop_map(|(r, i, bit)| {
            let mut w = r.encode();
            w[i] ^= 1 << bit;
            w
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn requests_round_trip(r in request()) {
        prop_assert_eq!(Request::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn request_garbage_is_an_error_or_canonical(w in request_garbage()) {
        if let Ok(r) = Request::decode(&w) {
            prop_assert_eq!(r.encode(), w);
        }
    }

    #[test]
    fn replies_round_trip(r in reply()) {
        let w = r.encode();
        prop_assert_eq!(w[reply::PAYLOAD_WORD] as usize, r.payload_words());
        prop_assert_eq!(Reply::decode(&w), Ok(r));
    }

    #[test]
    fn reply_garbage_is_an_error_or_canonical(w in reply_garbage()) {
        if let Ok(r) = Reply::decode(&w) {
            prop_assert_eq!(r.encode(), w);
            prop_assert!(r.payload_words() <= REPLY_PAYLOAD);
        }
    }

    #[test]
    fn regions_round_trip(
        start in any::<u64>(),
        end in any::<u64>(),
        prot in 0u8..8,
        shared in any::<bool>(),
        backing in select(vec![Backing::Anon, Backing::DevZero, Backing::Shmem, Backing::Other, Backing::Hugetlb]),
    ) {
        let r = Region { start, end, prot, shared, backing };
        prop_assert_eq!(region_from_words(start, end, region_flags(&r)), Some(r));
    }

    #[test]
    fn front_garbage_is_an_error_not_a_panic(bytes in vec(any::<u8>(), 0..256)) {
        let _ = Dec::new(&bytes).run();
        let _ = Dec::new(&bytes).hello();
        let _ = Dec::new(&bytes).samples();
        let _ = decode_request(&bytes);
    }

    /// A valid run reply with one byte changed, or cut short.
    #[test]
    fn damaged_runs_are_an_error_not_a_panic(at in any::<usize>(), byte in any::<u8>()) {
        let mut enc = Enc::default();
        enc.run(&sample_run());
        let mut bytes = enc.buf;
        let at = at % bytes.len();
        bytes[at] = byte;
        let _ = Dec::new(&bytes).run();
        prop_assert!(Dec::new(&bytes[..at]).run().is_err());
    }

    #[test]
    fn run_requests_round_trip(seed in any::<u64>(), index in 0u64..1000) {
        let program = random_program(seed, index, GenConfig::default());
        let dumps = vec![DumpRequest { after_op: 3, proc: ProcId(1), map: MapId(2), page: 7 }];
        match decode_request(&encode_request(&program, &dumps)) {
            Ok(FrontRequest::Run { program: p, dumps: d }) => {
                prop_assert_eq!(p.ops, program.ops);
                prop_assert_eq!(d, dumps);
            }
            other => prop_assert!(false, "decoded {:?}", other),
        }
    }
}

#[test]
fn every_variant_is_generated() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut seen = [false; REQUEST_VARIANTS];
    let mut runner = TestRunner::deterministic();
    let strategy = request();
    for _ in 0..10_000 {
        let r = strategy.new_tree(&mut runner).unwrap().current();
        seen[request_variant(&r)] = true;
    }
    assert!(
        seen.iter().all(|s| *s),
        "variants never generated: {seen:?}"
    );
}

/// Every value of every enum a request carries, each alone and each with a distinct word.
#[test]
fn every_enum_value_has_its_own_code() {
    fn distinct(words: Vec<[u64; REQ_WORDS]>) {
        for (i, a) in words.iter().enumerate() {
            assert_eq!(Request::decode(a).map(|r| r.encode()), Ok(*a));
            for b in &words[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
    let m = MapId(0);
    let range = PageRange { start: 1, end: 3 };
    let kinds = MapKind::ALL.iter().map(|&kind| Request::Map {
        kind,
        pages: 1,
        tail: 0,
        creates: m,
        args: MapArgs::default(),
    });
    distinct(kinds.map(|r| r.encode()).collect());
    let calls = Syscall::ALL.iter().flat_map(|&call| {
        BadArg::ALL
            .iter()
            .map(move |&bad| Request::Invalid { map: m, call, bad })
    });
    distinct(calls.map(|r| r.encode()).collect());
    let advice = Advice::ALL.iter().map(|&advice| Request::Advise {
        map: m,
        pages: range,
        tail: 0,
        advice,
    });
    distinct(advice.map(|r| r.encode()).collect());
    let prots = Prot::ALL.iter().map(|&prot| Request::Protect {
        map: m,
        pages: range,
        tail: 0,
        prot,
    });
    distinct(prots.map(|r| r.encode()).collect());
    let hows = PlaceHow::ALL.into_iter().map(|how| Request::MapAt {
        kind: MapKind::Private,
        pages: 1,
        tail: 0,
        creates: m,
        at: At::page(m, 0),
        how,
        args: MapArgs::default(),
    });
    distinct(hows.map(|r| r.encode()).collect());
    // Advice travels as Linux's MADV_* number, so the worker passes it on as it is.
    for a in Advice::ALL {
        let w = Request::Advise {
            map: m,
            pages: range,
            tail: 0,
            advice: a,
        }
        .encode();
        assert!(w.contains(&(a.number() as u64)));
    }
}

#[test]
fn decoding_refuses_what_encode_never_makes() {
    let ok = Request::Pass { turn: 5 }.encode();
    let mut w = ok;
    w[0] = 0;
    assert!(Request::decode(&w).is_err(), "verb 0");
    w = ok;
    w[0] = 1000;
    assert!(Request::decode(&w).is_err(), "unknown verb");
    w = ok;
    w[REQ_WORDS - 1] = 1;
    assert!(Request::decode(&w).is_err(), "a word after the arguments");
    w = ok;
    w[1] = u32::MAX as u64 + 1;
    assert!(Request::decode(&w).is_err(), "a turn past u32");
    let map = Request::Unmap {
        map: MapId(0),
        pages: PageRange { start: 0, end: 1 },
        tail: 0,
    }
    .encode();
    w = map;
    w[1] = caps::MAX_MAPS as u64;
    assert!(Request::decode(&w).is_err(), "a handle past the caps");
    w = map;
    w[2] = u16::MAX as u64;
    assert!(Request::decode(&w).is_err(), "pages past the last page");
    w = map;
    w[3] = (caps::MAX_BYTE_OFFSET as u64 + 1) << 32 | 1;
    assert!(
        Request::decode(&w).is_err(),
        "a tail past the smallest page"
    );
    w = map;
    w[3] = 4 << 32;
    assert!(Request::decode(&w).is_err(), "a tail of no pages");
    w = map;
    w[3] = 1 << 16 | 1;
    assert!(Request::decode(&w).is_err(), "a length past u16");
    let mut v = Request::Vmsplice {
        at: At::page(MapId(0), 1),
    }
    .encode();
    v[1] |= (caps::MAX_BYTE_OFFSET as u64) << 16;
    assert!(
        Request::decode(&v).is_err(),
        "an address a page or more into its page"
    );
    assert!(Reply::decode(&[0; REPLY_HEAD]).is_err(), "status 0");
    let mut h = Reply::View {
        regions: 1,
        pages: 1,
        phys: 0,
    }
    .encode();
    h[reply::PAYLOAD_WORD] = 4;
    assert!(
        Reply::decode(&h).is_err(),
        "a view's length that is not its own"
    );
    h = Reply::Done { value: 1 }.encode();
    h[reply::PAYLOAD_WORD] = 3;
    assert!(
        Reply::decode(&h).is_err(),
        "a length that is not the kind's"
    );
    h = Reply::Digests { count: 0 }.encode();
    h[reply::PAYLOAD_WORD] = REPLY_PAYLOAD as u64 + 1;
    assert!(Reply::decode(&h).is_err(), "a payload past the reply area");
}

#[test]
fn feature_bits_round_trip_and_name_one_bit_each() {
    let fields: [fn(&mut Features); 17] = [
        |f| f.guard = true,
        |f| f.guard_shared = true,
        |f| f.populate = true,
        |f| f.cold_pageout = true,
        |f| f.wipeonfork = true,
        |f| f.free = true,
        |f| f.dontunmap = true,
        |f| f.dontunmap_shared = true,
        |f| f.noreplace = true,
        |f| f.force_write = true,
        |f| f.move_multi_vma = true,
        |f| f.collapse = true,
        |f| f.thp_align = true,
        |f| f.glibc_malloc = true,
        |f| f.glibc_dynamic_threshold = true,
        |f| f.clone_vm = true,
        |f| f.hugetlb = true,
    ];
    let none = features_from_bits(0).unwrap();
    assert_eq!(features_bits(&none), 0);
    let mut all = 0;
    for set in fields {
        let mut f = none;
        set(&mut f);
        let b = features_bits(&f);
        assert_eq!(b.count_ones(), 1);
        assert_eq!(all & b, 0, "two features share a bit");
        all |= b;
    }
    assert_eq!(features_bits(&Features::ALL), all);
    // Every set of the bits in use (other branches' bits sit between them until merged).
    for b in (0..=all).filter(|b| b & !all == 0) {
        let f = features_from_bits(b).unwrap();
        assert_eq!(features_bits(&f), b);
    }
    assert_eq!(features_from_bits(all + 1), None);
    assert_eq!(features_from_bits(1 << 31), None);
}

#[test]
fn frames_round_trip() {
    let hello = Hello {
        page_size: 4096,
        release: "6.1.0".into(),
        machine: "x86_64".into(),
        features: Features::ALL,
        physical: crate::program::physical::Channels {
            pagemap: Ok(()),
            scan: Err(crate::program::physical::Skip::NoIoctl),
            pfn: Ok(()),
            mincore: Ok(()),
            smaps: Ok(()),
            cgroup: Err(crate::program::physical::Skip::NoCgroupMemory),
        },
    };
    let mut enc = Enc::default();
    enc.hello(&hello);
    assert_eq!(Dec::new(&enc.buf).hello().unwrap(), hello);

    let run = sample_run();
    let mut enc = Enc::default();
    enc.run(&run);
    assert_eq!(Dec::new(&enc.buf).run().unwrap(), run);

    let mut enc = Enc::default();
    enc.samples(&[5, 6, 7]);
    assert_eq!(Dec::new(&enc.buf).samples().unwrap(), vec![5, 6, 7]);
    assert_eq!(
        decode_request(&encode_fork_bench(250)),
        Ok(FrontRequest::ForkBench { samples: 250 })
    );
    // A yardstick request cut short asks for nothing; an unknown request is an error.
    assert_eq!(
        decode_request(&[1]),
        Ok(FrontRequest::ForkBench { samples: 0 })
    );
    assert!(decode_request(&[7]).is_err());
    assert!(decode_request(&[]).is_err());
}

/// A run with every kind of outcome, a snapshot and both kinds of dump.
fn sample_run() -> KernelRun {
    KernelRun {
        outcomes: vec![
            Outcome::Skipped,
            Outcome::Mapped { addr: 0x7f00_0000 },
            Outcome::Failed { errno: 22 },
            Outcome::Done,
            Outcome::Read {
                digests: vec![1, 2, 3],
            },
            Outcome::Killed {
                death: Death {
                    signal: 11,
                    code: -6,
                    page: 0x1000,
                },
                digests: vec![9],
            },
            Outcome::Hung,
            Outcome::Allocated {
                addr: 0x7f00_0000_0010,
                appeared: 200704,
                vanished: 4096,
            },
        ],
        snapshots: vec![(
            4,
            Snapshot {
                procs: vec![ProcView {
                    proc: ProcId(1),
                    regions: vec![Region {
                        start: 0x1000,
                        end: 0x3000,
                        prot: 3,
                        shared: true,
                        backing: Backing::Shmem,
                    }],
                    pages: vec![(0x1000, 7), (0x2000, 8)],
                    phys: vec![1 << 63 | 0x1234, 0],
                }],
            },
        )],
        dumps: vec![
            (
                DumpRequest {
                    after_op: 1,
                    proc: ProcId(0),
                    map: MapId(1),
                    page: 2,
                },
                Some(vec![0xaa; 16]),
            ),
            (
                DumpRequest {
                    after_op: 2,
                    proc: ProcId(3),
                    map: MapId(0),
                    page: 0,
                },
                None,
            ),
        ],
        harness_error: Some("broken".into()),
    }
}

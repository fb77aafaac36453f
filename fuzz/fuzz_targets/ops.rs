//! Model against kernel: every input decodes to a valid program (`generate::from_bytes`), which
//! runs on the real kernel through one long-lived executor process and on the model. On a
//! divergence the target shrinks it and panics with the readable trace. The semantic cells the
//! program reaches are libFuzzer extra coverage. A program that needs what the kernel lacks
//! (or hugetlb, without COWCHECK_FUZZ_HUGETLB=1) is skipped and rejected. See docs/FUZZING.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| -> libfuzzer_sys::Corpus {
    // Checks the program, hands its semantic cells to libFuzzer and counts what ran.
    cowcheck_fuzz::check_input(data)
});

libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    cowcheck_fuzz::mutate(data, size, max_size, seed)
});

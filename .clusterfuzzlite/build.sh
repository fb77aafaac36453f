#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build: the fuzz targets with the engine's sanitizer and libFuzzer,
# and beside them a plain (uninstrumented) cowcheck binary, which the `ops` target starts as its
# executor: it finds a `cowcheck` next to its own executable (see docs/FUZZING.md).
cd "$SRC/cowcheck"

# 1. The executor: a normal release build. None of the fuzzing flags may reach it; it forks a
#    process tree per program, and instrumentation would only slow those forks down.
env -u RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
    -u CFLAGS -u CXXFLAGS -u LDFLAGS \
    cargo build --release --bin cowcheck --target-dir "$WORK/executor-target"
cp "$WORK/executor-target/release/cowcheck" "$OUT/cowcheck"

# 2. The fuzz targets (naive_fork is a benchmark baseline, not a campaign target).
cargo fuzz build -O --debug-assertions
FUZZ_TARGET_OUTPUT_DIR=fuzz/target/x86_64-unknown-linux-gnu/release
for target in ops trace_parse model; do
    cp "$FUZZ_TARGET_OUTPUT_DIR/$target" "$OUT/$target"
done

# 3. Seed corpora, generated from the project's traces (tests/fuzz_corpus.rs); `model` decodes
#    its input like `ops` and starts from the same seeds.
(cd fuzz/corpus/ops && zip -q -r "$OUT/ops_seed_corpus.zip" . && cp "$OUT/ops_seed_corpus.zip" "$OUT/model_seed_corpus.zip")
(cd fuzz/corpus/trace_parse && zip -q -r "$OUT/trace_parse_seed_corpus.zip" .)

# libFuzzer options for every run: inputs are 9 bytes per op (10 and a 10-byte prefix in
# dialect 3) and at most 40 ops.
printf '[libfuzzer]\nmax_len = 512\n' > "$OUT/ops.options"

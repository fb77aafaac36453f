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

# 3. Seed corpora, generated from the project's traces (tests/fuzz_corpus.rs).
for target in ops trace_parse; do
    if [ -d "fuzz/corpus/$target" ]; then
        (cd "fuzz/corpus/$target" && zip -q -r "$OUT/${target}_seed_corpus.zip" .)
    fi
done

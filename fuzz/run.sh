#!/usr/bin/env bash
# Runs every fuzz target in turn: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly-capable compiler (RUSTC_BOOTSTRAP=1 is used).
# New corpus entries go to fuzz/corpus/TARGET (not committed); the seeds stay in fuzz/seeds/TARGET.
# Limits, as fuzz/README.md states: a run is a failure on a panic, a hang over a second (three for
# wasm_module, whose inputs are compiled by cranelift and set up under a 500 ms deadline) or more than
# 256 MiB of memory.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=${*:-graph manifest wav wasm_module decode preset package}
mkdir -p logs
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    timeout=1
    [ "$t" = wasm_module ] && timeout=3
    echo "== $t for ${seconds}s"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" --sanitizer none -O "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -runs=10000000 -rss_limit_mb=256 -timeout="$timeout" -max_len=16384 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>&1 | tee "logs/$t.log" | grep -E "^(#[0-9]+ +DONE|Done|==|stat::)|ERROR|panicked" || true
done

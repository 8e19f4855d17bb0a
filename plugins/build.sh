#!/usr/bin/env bash
# Rebuilds the WebAssembly plugins from source with Debian's toolchains:
#   rustc (1.63, /usr/bin/rustc) with libstd-rust-dev-wasm32, and clang + lld.
# apt-get install rustc libstd-rust-dev-wasm32 clang lld
# Usage: plugins/build.sh [OUT_DIR]   (default: plugins/wasm)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/wasm}
mkdir -p "$out"
rustc=${WASM_RUSTC:-/usr/bin/rustc}

"$rustc" --edition 2021 --crate-type cdylib --target wasm32-unknown-unknown \
    -C opt-level=3 -C target-feature=+simd128 -C panic=abort -C link-arg=-zstack-size=65536 -C strip=symbols --remap-path-prefix "$here=plugins" \
    -o "$out/biquad_filter.wasm" "$here/src/biquad_rust/lib.rs"

# Compiled and linked in two steps: clang's own link step runs binaryen's wasm-opt when it finds it, which
# then refuses SIMD it was not told to enable.
obj=$(mktemp --suffix=.o)
trap 'rm -f "$obj"' EXIT
clang --target=wasm32 -msimd128 -nostdlib -O2 -ffp-contract=off -c -o "$obj" "$here/src/biquad_c/biquad.c"
wasm-ld --no-entry -z stack-size=65536 --strip-all -o "$out/biquad_filter_c.wasm" "$obj"

for m in biquad_filter biquad_filter_c; do
    cp "$here/src/biquad_filter.json" "$out/$m.json"
done
echo "built $(ls "$out"/*.wasm | tr '\n' ' ')"

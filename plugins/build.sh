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
    -C opt-level=3 -C panic=abort -C link-arg=-zstack-size=65536 -C strip=symbols --remap-path-prefix "$here=plugins" \
    -o "$out/biquad_filter.wasm" "$here/src/biquad_rust/lib.rs"

clang --target=wasm32 -nostdlib -O2 -ffp-contract=off \
    -Wl,--no-entry -Wl,-z,stack-size=65536 -Wl,--strip-all \
    -o "$out/biquad_filter_c.wasm" "$here/src/biquad_c/biquad.c"

for m in biquad_filter biquad_filter_c; do
    cp "$here/src/biquad_filter.json" "$out/$m.json"
done
echo "built $(ls "$out"/*.wasm | tr '\n' ' ')"

#!/usr/bin/env sh
# Writes the C API's header from capi/src/lib.rs with cbindgen (Debian's package, 0.24): to
# capi/include/fxgraph.h, or to the path given (CI compares the two).
set -eu
out=$(realpath -m "${1:-$(dirname "$0")/include/fxgraph.h}")
cd "$(dirname "$0")"
cbindgen --quiet --config cbindgen.toml --crate fxgraph-capi --output "$out" .

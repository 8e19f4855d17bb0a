#!/usr/bin/env sh
# Writes capi/include/fxgraph.h from capi/src/lib.rs with cbindgen (Debian's package, 0.24).
set -eu
cd "$(dirname "$0")"
cbindgen --quiet --config cbindgen.toml --crate fxgraph-capi --output include/fxgraph.h .

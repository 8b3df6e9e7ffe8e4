#!/usr/bin/env bash
# Regenerates the committed Kotlin and Swift bindings in ffi/bindings/ from the debug library.
# The library and the uniffi-bindgen binary are built by one cargo command (built separately
# they would rebuild each other). Run from anywhere; CARGO_TARGET_DIR is honoured.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

cargo build -p phakhi-ffi --lib --bin uniffi-bindgen

case "$(uname -s)" in
    Darwin) lib="$target/debug/libphakhi_ffi.dylib" ;;
    *) lib="$target/debug/libphakhi_ffi.so" ;;
esac

for language in kotlin swift; do
    out="$root/ffi/bindings/$language"
    rm -rf "$out"
    mkdir -p "$out"
    # --no-format: the committed files must not depend on which formatters are installed.
    "$target/debug/uniffi-bindgen" generate --library "$lib" --language "$language" \
        --no-format --out-dir "$out"
done
echo "bindings written to ffi/bindings/{kotlin,swift}"

#!/usr/bin/env bash
# Builds every plugin in plugins/ for wasm32-wasip2 and puts each component next to its
# manifest (plugins/<name>/<crate>.wasm), where `arca serve` finds it by default.
# Each plugin is built alone: the SDK's world features must not be unified across plugins.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/../target/wasm}"
for manifest in "$here"/*/plugin.toml; do
    dir="$(dirname "$manifest")"
    crate="$(basename "$dir")"
    cargo build --quiet --locked --release --target wasm32-wasip2 \
        --manifest-path "$here/Cargo.toml" -p "$crate"
    cp "$CARGO_TARGET_DIR/wasm32-wasip2/release/${crate//-/_}.wasm" "$dir/"
done

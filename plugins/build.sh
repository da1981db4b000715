#!/usr/bin/env bash
# Builds the plugins of a plugin workspace for wasm32-wasip2 and puts each component next to
# its manifest (<dir>/<name>/<crate>.wasm). With no argument: the shipped plugins in plugins/,
# where `arca serve` finds them by default. `plugins/build.sh tests/components` builds the
# test components.
# Each plugin is built alone: the SDK's world features must not be unified across plugins.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="$(cd "${1:-$here}" && pwd)"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/../target/wasm}"
for manifest in "$dir"/*/plugin.toml; do
    plugin="$(dirname "$manifest")"
    crate="$(basename "$plugin")"
    # From inside the workspace, so its .cargo/config.toml (stack size) applies.
    (cd "$dir" && cargo build --quiet --locked --release --target wasm32-wasip2 -p "$crate")
    cp "$CARGO_TARGET_DIR/wasm32-wasip2/release/${crate//-/_}.wasm" "$plugin/"
done

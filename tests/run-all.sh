#!/usr/bin/env bash
# Arca's whole test suite, as CI runs it: installs what the tests need (apt packages such as
# PostgreSQL and SoftHSM2, the official Python SDKs in a virtualenv, the wasm32-wasip2
# target), builds the plugins and the
# test components, then runs format and lint gates, the Rust unit and end-to-end tests, and
# the official-SDK suite against the real server, and a short run of every fuzz target.
#
# `tests/run-all.sh --quick` is the contributors' tier: format, lints and the unit tests of
# every crate (no servers, SDKs, components or fuzzing), a few minutes on a warm build.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's wall time, printed as it ends and summed up at the end: where CI's time goes.
timings=()
step_name=""
step_start=$SECONDS
end_step() {
  if [[ -n "$step_name" ]]; then
    timings+=("$(printf '%5d s  %s' $((SECONDS - step_start)) "$step_name")")
    printf '    (%s: %d s)\n' "$step_name" $((SECONDS - step_start))
  fi
}
step() {
  end_step
  step_name="$*"
  step_start=$SECONDS
  printf '\n==> %s\n' "$*"
}
summary() {
  end_step
  step_name=""
  printf '\n==> time per step (%d s in all)\n' "$SECONDS"
  printf '%s\n' "${timings[@]}"
}

if [[ "${1:-}" == "--quick" ]]; then
  step "format, lints and unit tests (the quick tier)"
  cargo fmt --all -- --check
  cargo clippy --workspace --all-targets --locked -- -D warnings
  cargo test --workspace --locked --lib --bins
  summary
  exit 0
fi

step "system packages"
need=()
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v cc >/dev/null || need+=(build-essential)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[[ -e /usr/lib/softhsm/libsofthsm2.so ]] || need+=(softhsm2)
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}"
fi

step "python virtualenv with the official SDKs (tests/python/requirements.txt)"
venv=.venv
stamp="$venv/.requirements.sha256"
want=$(sha256sum tests/python/requirements.txt | cut -d' ' -f1)
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/python/requirements.txt
  echo "$want" > "$stamp"
fi

step "the wasm32-wasip2 target, the shipped plugins and the test components"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
plugins/build.sh
plugins/build.sh tests/components

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
for world in rotator sse-integration access-policy; do
  cargo clippy -p arca-plugin-sdk --features "$world" --locked -- -D warnings
done
for dir in plugins tests/components; do
  cargo fmt --manifest-path "$dir/Cargo.toml" --all -- --check
done

step "build"
cargo build --workspace --bins --locked

step "Rust unit and end-to-end tests"
cargo test --workspace --locked

step "official SDKs against the real server"
ARCA_BIN="$PWD/target/debug/arca" "$venv/bin/python" -m pytest -q tests/python

fuzz_seconds="${ARCA_FUZZ_SECONDS:-15}"
step "fuzzing: the instrumented build (cargo fuzz on stable, no sanitizer)"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
# cargo fuzz has no --locked: refuse a stale tests/fuzz/Cargo.lock here instead of letting the
# build rewrite it.
cargo metadata --locked --format-version 1 --manifest-path tests/fuzz/Cargo.toml >/dev/null
# 16 codegen units instead of cargo fuzz's default of 1: the instrumented build of arca-host
# (wasmtime included) is much shorter, for somewhat slower fuzzing.
fuzz=(--fuzz-dir tests/fuzz -s none --codegen-units 16)
cargo fuzz build "${fuzz[@]}"
step "fuzzing: every target for ${fuzz_seconds} s"
for target in $(cargo fuzz list --fuzz-dir tests/fuzz); do
  mkdir -p "tests/fuzz/corpus/$target"
  log="tests/fuzz/target/$target.log"
  if ! cargo fuzz run "${fuzz[@]}" "$target" \
      "tests/fuzz/corpus/$target" "tests/fuzz/seeds/$target" -- \
      -max_total_time="$fuzz_seconds" -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz target $target failed (input kept in tests/fuzz/artifacts/$target)"
    exit 1
  fi
  echo "$target: $(grep -E '^stat::(number_of_executed_units|new_units_added)' "$log" | tr -s ' ' | tr '\n' ' ')"
done
summary

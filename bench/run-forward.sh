#!/bin/sh
# Runs bench_forward on a release build (optimised, no asserts), building it first.
# Usage: bench/run-forward.sh [bench_forward options]   (BUILD=dir picks the build folder)
# Build output goes to stderr, so stdout holds only the results.
# Takes about 3 minutes and needs ~5 GB of free memory for the TinyLlama-shaped model.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build-release}
cd "$src"
if [ ! -d "$build" ]; then
    meson setup "$build" --buildtype=release >&2
fi
ninja -C "$build" bench/bench_forward >&2
exec "$build/bench/bench_forward" "$@"

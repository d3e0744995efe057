#!/bin/sh
# Several models under one budget (issue 17 item 5), end to end: compresses stories260K and
# babyllama-d128 afresh with the default store settings, then runs bench_models on the two
# stores (the daemon's split against an equal-bytes split, perplexity measured at each).
# Usage: bench/run-models.sh [bench_models options]   e.g. --points 8 --oracle 8
#   BUILD=dir picks the build folder (default build-release, set up if missing);
#   BS_SHARED the shared folder (default ../shared); OUT where the stores go (default out/models).
# Build and compression output goes to stderr, so stdout holds only the results.
# Takes about a minute (8 totals); --oracle 8 adds about 6 minutes on this 2-core machine.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
cd "$src"
build=${BUILD:-build-release}
shared=${BS_SHARED:-../shared}
out=${OUT:-out/models}
if [ ! -d "$build" ]; then
    meson setup "$build" --buildtype=release >&2
fi
ninja -C "$build" client/bitstackctl bench/bench_models >&2
mkdir -p "$out"
ctl="$build/client/bitstackctl"
calib="$shared/data/tinystories_train_head.txt"
"$ctl" compress --model "$shared/models/stories260K.bin" --tokenizer "$shared/models/tok512.bin" \
    --calib "$calib" --out "$out/stories260K.bstk" --threads 1 -q >&2
"$ctl" compress --model "$shared/models/babyllama-d128.bin" --tokenizer "$shared/models/babyllama-tok105.bin" \
    --calib "$calib" --out "$out/babyllama-d128.bstk" --threads 1 -q >&2
echo "stores: bitstackctl compress --model M --tokenizer T --calib $calib --out S --threads 1 (defaults otherwise)"
exec "$build/bench/bench_models" --text "$shared/data/tinystories_valid_head.txt" "$@" \
    "$out/stories260K.bstk" "$shared/models/stories260K.bin" \
    "$out/babyllama-d128.bstk" "$shared/models/babyllama-d128.bin"

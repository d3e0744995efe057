#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS each (default 3600: the hour-long run), one
# after another, from the in-tree seed corpora, and prints per target the executions,
# the coverage (libFuzzer's "cov:" edges) and whether it found anything.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     targets: store gguf llama2c tokenizer proto
# Builds build-fuzz with clang (ASan+UBSan) when it is missing. New inputs go to
# build-fuzz/corpus/TARGET (not the tree); a crash leaves crash-* in build-fuzz/.
# Exit 1 when any target failed.
set -uo pipefail
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=abort_on_error=1
cd "$(dirname "$0")/.."
secs=${1:-3600}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(store gguf llama2c tokenizer proto)
B=build-fuzz
if [ ! -f "$B/build.ninja" ]; then
  CC=clang meson setup "$B" -Db_sanitize=address,undefined -Db_lundef=false \
      --buildtype=debugoptimized >/dev/null || exit 1
fi
exes=()
for t in "${targets[@]}"; do
  [ "$t" = proto ] && exes+=(proto/fuzz_proto) || exes+=(tests/fuzz_"$t")
done
ninja -C "$B" "${exes[@]}" >/dev/null || exit 1
failed=0
for i in "${!targets[@]}"; do
  t=${targets[$i]}
  corpus=$B/corpus/$t
  mkdir -p "$corpus"
  seeds=tests/fuzz/$t
  [ "$t" = proto ] && seeds=
  log=$B/fuzz-$t.log
  (cd "$B" && "./${exes[$i]}" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 \
      -max_len=65536 "corpus/$t" ${seeds:+"../$seeds"}) >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  if [ $rc -eq 0 ]; then
    echo "fuzz $t: ok, ${runs:-?} runs in ${secs} s, ${cov:-cov: ?} edges, corpus $(ls "$corpus" | wc -l) inputs"
  else
    echo "fuzz $t: FAILED (exit $rc), see $log:"
    grep -m3 -E 'ERROR|invariant|SUMMARY' "$log"
    failed=1
  fi
done
exit $failed

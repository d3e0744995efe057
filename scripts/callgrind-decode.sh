#!/bin/sh
# Instructions of one decode step (one bs_forward call on one token) of a store, per kernel
# path, counted by valgrind's callgrind: `bitstackctl run -n 1` runs two forward calls
# (the BOS prompt and one decode step, both one token), collected only inside bs_forward.
# Valgrind's CPU has no AVX-512, so that path cannot be counted here (BS_KERNEL=avx512
# falls back to avx2 under valgrind).
# Usage: scripts/callgrind-decode.sh BITSTACKCTL STORE [BUDGET] [PATHS]
#   e.g. scripts/callgrind-decode.sh build-rel/client/bitstackctl s260k.bstk max "portable lut avx2"
set -eu
ctl=$1 store=$2 budget=${3:-max} paths=${4:-"portable lut avx2"}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-10s %16s %s\n' path "Ir/decode step" "(store $store, budget $budget, 1 thread)"
for p in $paths; do
    BS_KERNEL=$p valgrind --tool=callgrind --toggle-collect=bs_forward --callgrind-out-file="$out/cg.$p" \
        "$ctl" run --store "$store" --budget "$budget" -n 1 --temperature 0 --threads 1 >/dev/null 2>"$out/log.$p"
    ir=$(callgrind_annotate "$out/cg.$p" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
    printf '%-10s %16.0f\n' "$p" "$(echo "$ir / 2" | bc -l)"
done

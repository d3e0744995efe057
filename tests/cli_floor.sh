#!/bin/sh
# A store with a LittleBit floor end to end: compress --floor-bpw with a few steps of
# training (progress lines, the default checkpoint removed once the store is written; an
# interrupted run's checkpoint is resumed), eval at min (the floor alone) and max, and
# bitstackd shrinking to the floor (0 blocks) and generating there, then growing back.
#
# Usage: cli_floor.sh BITSTACKCTL BITSTACKD SHARED_DIR
set -u
ctl="$1"; daemon="$2"; shared="$3"; fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
tmp=$(mktemp -d) || exit 1
pid=""
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
store="$tmp/f.bstk"; sock="$tmp/d.sock"
m="$shared/models/stories260K.bin"; t="$shared/models/tok512.bin"; calib="$shared/data/tinystories_train_head.txt"

"$ctl" compress --help >/dev/null 2>&1 && ok "compress --help: exit 0" || bad "compress --help"
"$ctl" compress --model "$m" --tokenizer "$t" --calib "$calib" --out "$store" --qat-steps 3 >/dev/null 2>&1
[ $? -eq 2 ] && ok "training without a floor: usage error" || bad "--qat-steps without --floor-bpw"

# a named checkpoint is kept: a second run resumes from it
"$ctl" compress --model "$m" --tokenizer "$t" --calib "$calib" --out "$store" --floor-bpw 0.8 --levels 4 \
    --qat-steps 6 --qat-batch 2 --qat-seq 32 --qat-checkpoint "$tmp/ck" >"$tmp/out" 2>"$tmp/err" ||
    { cat "$tmp/err"; echo "FAIL: compress with a floor"; exit 1; }
grep -q "qat: step 6 .*tok/s.*ETA" "$tmp/err" && ok "progress: step, loss, tok/s, ETA" || { bad "progress"; cat "$tmp/err"; }
[ -f "$tmp/ck" ] && ok "named checkpoint kept" || bad "named checkpoint missing"
"$ctl" compress --model "$m" --tokenizer "$t" --calib "$calib" --out "$store" --floor-bpw 0.8 --levels 4 \
    --qat-steps 9 --qat-batch 2 --qat-seq 32 --qat-checkpoint "$tmp/ck" >"$tmp/out" 2>"$tmp/err" ||
    { cat "$tmp/err"; echo "FAIL: resumed compress"; exit 1; }
grep -q "qat: step 9 .*(resumed)" "$tmp/err" && ok "resumed from step 6 to 9" || { bad "resume"; cat "$tmp/err"; }
"$ctl" compress --model "$m" --tokenizer "$t" --calib "$calib" --out "$store" --floor-bpw 0.8 --levels 4 \
    --qat-steps 2 --qat-batch 2 --qat-seq 32 --quiet >/dev/null 2>&1 || bad "compress, default checkpoint"
[ ! -e "$store.qat" ] && ok "default checkpoint removed after the store is written" || bad "$store.qat left behind"

out=$("$ctl" inspect "$store")
case "$out" in *"smallest working prefix 0 blocks"*) ok "inspect: min is the floor (0 blocks)";; *) bad "inspect: $out";; esac
out=$("$ctl" eval --store "$store" --text "$shared/data/tinystories_valid_head.txt" --max-chunks 2 --budgets min,max 2>&1) ||
    bad "eval at min and max: $out"
echo "$out" | grep -q "^min  *0 " && ok "eval at min: 0 blocks" || bad "eval min: $out"

"$daemon" --store "$store" --socket "$sock" 2>"$tmp/log" &
pid=$!
i=0
until "$ctl" status --socket "$sock" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "FAIL: bitstackd did not come up"; cat "$tmp/log"; exit 1
    fi
    sleep 0.1
done
"$ctl" budget min --socket "$sock" >/dev/null || bad "budget min"
i=0
until "$ctl" status --socket "$sock" | grep -q "^stack  *0/"; do
    i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.1
done
"$ctl" status --socket "$sock" | grep -q "^stack  *0/" && ok "daemon shrank to the floor (0 blocks)" || bad "no shrink to 0"
out=$("$ctl" generate "Once upon" --max-tokens 8 --socket "$sock") && [ -n "$out" ] && ok "generates on the floor alone" ||
    bad "generate at the floor"
"$ctl" budget max --socket "$sock" >/dev/null || bad "budget max"
i=0
until "$ctl" status --socket "$sock" | grep -q "^stack  *\([0-9]*\)/\1 "; do
    i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.1
done
"$ctl" status --socket "$sock" | grep -q "^stack  *\([0-9]*\)/\1 " && ok "grew back to the full stack" || bad "no grow"
exit $fail

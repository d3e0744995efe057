#!/bin/sh
# bitstackctl run: greedy stories260K output, GGUF with its own vocabulary, and usage errors.
set -u
ctl="$1"; shared="$2"; fail=0
expect="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
out=$("$ctl" run --model "$shared/models/stories260K.bin" --tokenizer "$shared/models/tok512.bin" \
      --prompt "Once upon a time" -n 40 --temperature 0 2>/dev/null)
case "$out" in "$expect"*) echo "ok: bin greedy";; *) echo "FAIL: bin greedy: $out"; fail=1;; esac
out=$("$ctl" run --model "$shared/models/stories260K.gguf" --prompt "Once upon a time" -n 40 --temperature 0 2>/dev/null)
case "$out" in "$expect"*) echo "ok: gguf greedy";; *) echo "FAIL: gguf greedy: $out"; fail=1;; esac
# seeded sampling is reproducible, and different seeds differ
a=$("$ctl" run --model "$shared/models/stories260K.gguf" --prompt "Once" -n 40 --temperature 1 --seed 7 2>/dev/null)
b=$("$ctl" run --model "$shared/models/stories260K.gguf" --prompt "Once" -n 40 --temperature 1 --seed 7 2>/dev/null)
c=$("$ctl" run --model "$shared/models/stories260K.gguf" --prompt "Once" -n 40 --temperature 1 --seed 8 2>/dev/null)
[ "$a" = "$b" ] && echo "ok: seed reproducible" || { echo "FAIL: same seed differs"; fail=1; }
[ "$a" != "$c" ] && echo "ok: seeds differ" || { echo "FAIL: seeds 7 and 8 agree"; fail=1; }
# tokens/s goes to stderr
err=$("$ctl" run --model "$shared/models/stories260K.gguf" --prompt "Once" -n 5 --temperature 0 2>&1 >/dev/null)
case "$err" in *tok/s*) echo "ok: stderr stats";; *) echo "FAIL: no tok/s on stderr: $err"; fail=1;; esac
# usage errors exit 2; a missing model exits 1 naming the file
"$ctl" run --bogus >/dev/null 2>&1; [ $? -eq 2 ] && echo "ok: usage 2" || { echo "FAIL: usage code"; fail=1; }
"$ctl" run --model /nonexistent.bin --tokenizer x >/dev/null 2>&1; [ $? -eq 1 ] && echo "ok: missing 1" || { echo "FAIL: missing code"; fail=1; }
err=$("$ctl" run --model "$shared/models/stories260K.bin" 2>&1 >/dev/null)
case "$err" in *--tokenizer*) echo "ok: asks for tokenizer";; *) echo "FAIL: $err"; fail=1;; esac
# a store at full budget reproduces the float model's greedy story; a small budget still talks
st=$(mktemp /tmp/bs_cli_XXXXXX.bstk)
if "$ctl" compress --model "$shared/models/stories260K.bin" --tokenizer "$shared/models/tok512.bin" \
      --calib "$shared/data/tinystories_train_head.txt" --calib-windows 16 --out "$st" -q >/dev/null; then
  out=$("$ctl" run --store "$st" --budget max --prompt "Once upon a time" -n 40 --temperature 0 2>/dev/null)
  case "$out" in "$expect"*) echo "ok: store max greedy";; *) echo "FAIL: store max greedy: $out"; fail=1;; esac
  out=$("$ctl" run --store "$st" --budget 4.0bpw --prompt "Once upon a time" -n 20 --temperature 0 2>/dev/null)
  case "$out" in "Once upon a time, there was"*) echo "ok: store 4bpw";; *) echo "FAIL: store 4bpw: $out"; fail=1;; esac
  err=$("$ctl" run --store "$st" --budget 1K --prompt "x" 2>&1 >/dev/null); rc=$?
  case "$err" in *"smallest working model"*) [ $rc -eq 1 ] && echo "ok: budget below minimum";; *) echo "FAIL: $err"; fail=1;; esac
  out=$("$ctl" inspect "$st")
  case "$out" in *"stack       420 blocks over 35 matrices"*"every crc32c checked"*) echo "ok: inspect";; *) echo "FAIL: inspect: $out"; fail=1;; esac
  # one flipped byte near the end of the file (a block, not the header): inspect names it
  bad=$(mktemp /tmp/bs_cli_XXXXXX.bstk); cp "$st" "$bad"
  size=$(stat -c %s "$bad"); printf '\377' | dd of="$bad" bs=1 seek=$((size - 100)) conv=notrunc status=none
  err=$("$ctl" inspect "$bad" 2>&1 >/dev/null); rc=$?
  case "$err" in *block*) [ $rc -eq 1 ] && echo "ok: inspect finds a bad block";; *) echo "FAIL: inspect of a damaged store: rc $rc: $err"; fail=1;; esac
  "$ctl" inspect --no-verify "$bad" >/dev/null 2>&1 && echo "ok: --no-verify" || { echo "FAIL: --no-verify"; fail=1; }
  rm -f "$bad"
  out=$("$ctl" eval --store "$st" --budget 4.0bpw --text "$shared/data/tinystories_valid_head.txt" --max-chunks 2 | tail -1)
  bpw=$(echo "$out" | awk '{print $4}'); ppl=$(echo "$out" | awk '{print $5}')
  if awk -v b="$bpw" -v p="$ppl" 'BEGIN { exit !(b <= 4.0 && b > 3.5 && p > 1 && p < 20) }'; then echo "ok: eval at 4.0bpw ($bpw bpw, ppl $ppl)"
  else echo "FAIL: eval --store: $out"; fail=1; fi
  out=$("$ctl" eval --store "$st" --sweep --text "$shared/data/tinystories_valid_head.txt" --max-chunks 1)
  rows=$(echo "$out" | grep -c '^stack:')
  [ "$rows" -eq 10 ] && echo "ok: sweep table and csv" || { echo "FAIL: sweep csv rows $rows"; fail=1; }
  "$ctl" run --store "$st" --model x >/dev/null 2>&1; [ $? -eq 2 ] && echo "ok: store xor model" || { echo "FAIL: both accepted"; fail=1; }
else
  echo "FAIL: compress"; fail=1
fi
rm -f "$st"
exit $fail

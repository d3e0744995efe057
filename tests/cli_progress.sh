#!/bin/sh
# bitstackctl compress and quantize report progress on stderr (plain lines when piped,
# nothing with --quiet) and keep stdout to their result; model/ itself never prints.
set -u
ctl="$1"; shared="$2"; src="$3"; fail=0
dir=$(mktemp -d /tmp/bs_progress_XXXXXX)
m="$shared/models/stories260K.bin"; tk="$shared/models/tok512.bin"; calib="$shared/data/tinystories_train_head.txt"

"$ctl" compress --model "$m" --tokenizer "$tk" --calib "$calib" --calib-windows 16 --out "$dir/s.bstk" \
    >"$dir/out" 2>"$dir/err"; rc=$?
[ $rc -eq 0 ] && echo "ok: compress" || { echo "FAIL: compress exit $rc: $(cat "$dir/err")"; fail=1; }
for want in "calibration: 16/16 done in" "encode: 35/35 done in" "order (level-major): 12/12 done in" "write: 1/1 done in"; do
  grep -qF "$want" "$dir/err" && echo "ok: stderr has '$want'" || { echo "FAIL: no '$want' on stderr:"; cat "$dir/err"; fail=1; }
done
# piped: plain lines, no terminal control
if grep -q "$(printf '\r')\|$(printf '\033')" "$dir/err"; then echo "FAIL: escape codes on a pipe"; fail=1; else echo "ok: plain lines"; fi
# stdout: the one result line, nothing progress-like
if [ "$(wc -l <"$dir/out")" -eq 1 ] && grep -q "^wrote $dir/s.bstk: gq blocks" "$dir/out" &&
   ! grep -qi "calibration\|encode\|ETA\|done in\|note:" "$dir/out"; then
  echo "ok: stdout is the result only"
else
  echo "FAIL: stdout:"; cat "$dir/out"; fail=1
fi

"$ctl" compress --model "$m" --tokenizer "$tk" --calib "$calib" --calib-windows 16 --out "$dir/q.bstk" --quiet \
    >"$dir/out" 2>"$dir/err"
[ -s "$dir/err" ] && { echo "FAIL: --quiet printed:"; cat "$dir/err"; fail=1; } || echo "ok: --quiet is silent"

"$ctl" quantize --model "$m" --tokenizer "$tk" --method gptq --bits 3 --calib "$calib" --calib-windows 8 \
    --out "$dir/g.bstk" >"$dir/out" 2>"$dir/err"; rc=$?
if [ $rc -eq 0 ] && grep -qF "calibration: 8/8 done in" "$dir/err" && grep -qF "gptq: 35/35 done in" "$dir/err" &&
   ! grep -qi "gptq:\|calibration" "$dir/out"; then
  echo "ok: quantize progress on stderr"
else
  echo "FAIL: quantize (exit $rc):"; cat "$dir/out" "$dir/err"; fail=1
fi

python3 "$src/tests/model_no_print.py" "$src/model" || fail=1
rm -rf "$dir"
exit $fail

#!/bin/sh
# The command line as a new user meets it: --help/-h on every command prints its usage to
# standard output and exits 0; --version on both programs; a usage error exits 2 on every
# command; an empty budget is an error; compress/quantize refuse an --out they cannot
# write before any work, naming the path as given; generate --json shows the seed
# unsigned, as --stats does. Uses the tiny synthesized store of tests/fuzz/store.
#
# Usage: cli_usage.sh BITSTACKCTL BITSTACKD SHARED_DIR SOURCE_DIR
set -u
ctl="$1"; daemon="$2"; shared="$3"; src="$4"; fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
tmp=$(mktemp -d) || exit 1
pid=""
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
store="$src/tests/fuzz/store/tiny_gq.bstk"

for c in run eval compress quantize inspect status generate chat budget metrics; do
    for h in --help -h; do
        out=$("$ctl" $c $h 2>"$tmp/err"); rc=$?
        case "$rc:$out" in 0:usage:*) ;; *) bad "$c $h: exit $rc, stdout '$out', stderr $(cat "$tmp/err")";; esac
    done
    "$ctl" $c --no-such-option >/dev/null 2>&1; rc=$?
    [ $rc -eq 2 ] || bad "$c --no-such-option: exit $rc, not 2"
done
ok "help and usage exit codes of every command"
out=$("$ctl" --help); [ $? -eq 0 ] && case "$out" in *generate*budget*) ok "bitstackctl --help";; *) bad "--help: $out";; esac
"$ctl" >/dev/null 2>&1; [ $? -eq 2 ] && ok "bare bitstackctl: 2" || bad "bare bitstackctl: not 2"
"$ctl" frobnicate >/dev/null 2>&1; [ $? -eq 2 ] && ok "unknown command: 2" || bad "unknown command: not 2"
out=$("$ctl" --version); [ $? -eq 0 ] && case "$out" in "bitstackctl "[0-9]*) ok "$out";; *) bad "--version: $out";; esac
out=$("$daemon" --version); [ $? -eq 0 ] && case "$out" in "bitstackd "[0-9]*) ok "$out";; *) bad "bitstackd --version: $out";; esac
"$daemon" --help >/dev/null 2>&1; [ $? -eq 0 ] && ok "bitstackd --help: 0" || bad "bitstackd --help"
"$daemon" --no-such-option >/dev/null 2>&1; [ $? -eq 2 ] && ok "bitstackd usage error: 2" || bad "bitstackd usage error: not 2"

printf 'Once upon a time there was a cat.\n' >"$tmp/t.txt"
for b in '' ',' ' '; do
    out=$("$ctl" eval --store "$store" --budget "$b" --text "$tmp/t.txt" 2>"$tmp/err"); rc=$?
    [ $rc -eq 2 ] && [ -z "$out" ] && ok "eval --budget '$b': exit 2, no table" || bad "eval --budget '$b': exit $rc, '$out'"
done
"$ctl" eval --store "$store" --budget max --ctx 16 --text "$tmp/t.txt" >/dev/null 2>&1 && ok "eval --budget max" || bad "eval max"

# the sweep plot: gnuplot runs without a warning and writes the PNG (x: bits per weight)
if command -v gnuplot >/dev/null 2>&1; then
    err=$("$ctl" eval --store "$store" --sweep --ctx 16 --text "$tmp/t.txt" --csv "$tmp/s.csv" --png "$tmp/s.png" \
          --baselines "$src/tests/fuzz/store/tiny_saq.bstk" 2>&1 >/dev/null); rc=$?
    case "$rc:$err" in
        *gnuplot*|*warning*) bad "sweep plot: $err";;
        0:*"wrote $tmp/s.png"*) [ -s "$tmp/s.png" ] && ok "sweep plot, no gnuplot output" || bad "no PNG";;
        *) bad "sweep plot: exit $rc: $err";;
    esac
fi

# eval draws a progress bar with ETA on a terminal (script(1) gives it one), none into a pipe
long="$tmp/long.txt"
for i in 1 2 3 4 5 6 7 8; do cat "$shared/data/tinystories_valid_head.txt"; done | head -c 200000 >"$long"
if command -v script >/dev/null 2>&1; then
    out=$(script -qc "'$ctl' eval --store '$store' --sweep --budgets min,max --ctx 16 --text '$long'" /dev/null)
    case "$out" in *"sweep ["*"budget 2/2"*ETA*) ok "eval --sweep on a terminal: a bar with ETA";;
        *) bad "no progress bar on a terminal: $(echo "$out" | tail -c 300)";; esac
fi
err=$("$ctl" eval --store "$store" --sweep --budgets min,max --ctx 16 --text "$long" 2>&1 >/dev/null)
case "$err" in *"["*|*ETA*) bad "progress drawn into a pipe: $err";; *) ok "eval piped: no progress";; esac

# --out checked before the model is even loaded: a missing model would be exit 1 too,
# so give a real one and time it (calibration of stories260K takes over a second)
for out in "$tmp/no/such/dir/s.bstk" "$tmp"; do
    start=$(date +%s%N)
    err=$("$ctl" compress --model "$shared/models/stories260K.bin" --tokenizer "$shared/models/tok512.bin" \
          --calib "$shared/data/tinystories_train_head.txt" --out "$out" 2>&1 >/dev/null); rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    case "$rc:$err" in
        1:*"$out"*.tmp*) bad "compress --out $out: names the .tmp: $err";;
        1:*"--out $out:"*) [ $ms -lt 500 ] && ok "compress --out $out refused in $ms ms" ||
                               bad "compress --out $out took $ms ms";;
        *) bad "compress --out $out: exit $rc: $err";;
    esac
done
err=$("$ctl" quantize --model "$shared/models/stories260K.bin" --tokenizer "$shared/models/tok512.bin" \
      --method rtn --bits 4 --out "$tmp/no/q.bstk" 2>&1); rc=$?
case "$rc:$err" in 1:*"--out $tmp/no/q.bstk:"*) ok "quantize --out checked";; *) bad "quantize: $rc $err";; esac
ls "$tmp"/*.tmp >/dev/null 2>&1 && bad "a .tmp was left behind"

# generate --json: the seed as --stats shows it (unsigned), even above 2^63
sock="$tmp/d.sock"
"$daemon" --store "$store" --socket "$sock" 2>"$tmp/log" &
pid=$!
i=0
until "$ctl" status --socket "$sock" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 100 ] && { bad "daemon did not start: $(cat "$tmp/log")"; exit 1; }
    sleep 0.1
done
out=$("$ctl" --socket "$sock" generate "the" -n 3 --json --stats --seed 18446744073709551615 2>"$tmp/err")
case "$out" in *'"seed":18446744073709551615'*) ok "--json seed unsigned";; *) bad "--json seed: $out";; esac
case "$(cat "$tmp/err")" in *"seed 18446744073709551615;"*) ok "--stats seed unsigned";; *) bad "--stats: $(cat "$tmp/err")";; esac
out=$("$ctl" --socket "$sock" generate "the" -n 3 --no-echo --stats 2>&1)
case "$out" in *"
prompt "*) ok "text ends with a newline before the stats";; *) bad "no newline before stats: $out";; esac

# chat on a terminal: /help lists the commands, /reset says what it did
if command -v script >/dev/null 2>&1; then
    out=$( (printf '/help\n'; sleep 0.5; printf '/reset\n'; sleep 0.5; printf '/quit\n'; sleep 0.5) |
          XDG_STATE_HOME="$tmp" script -qc "'$ctl' --socket '$sock' chat --system hi" /dev/null | tr -d '\r')
    case "$out" in *"/reset  forget"*"(conversation forgotten: 0 messages; the system message stays)"*)
        ok "chat /help and /reset feedback";; *) bad "chat on a terminal: $out";; esac
fi

[ $fail -eq 0 ] && echo "all ok"
exit $fail

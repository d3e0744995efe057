#!/bin/sh
# bitstackctl against a real bitstackd: exit codes (0 ok, 1 daemon error, 2 usage,
# 3 cannot connect), the status table and --json, streamed and whole generations, stop
# strings, chat from a pipe (including a conversation longer than the model's context),
# the socket path rule (--socket over $BITSTACK_SOCKET), and a clean stop on SIGTERM.
#
# Usage: cli_daemon.sh BITSTACKCTL BITSTACKD SHARED_DIR
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
store="$tmp/s.bstk"; sock="$tmp/d.sock"

"$ctl" compress --model "$shared/models/stories260K.bin" --tokenizer "$shared/models/tok512.bin" \
    --calib "$shared/data/tinystories_train_head.txt" --out "$store" --quiet >/dev/null ||
    { echo "FAIL: cannot make a store"; exit 1; }
blocks=$("$ctl" inspect "$store" | sed -n 's/^stack *\([0-9]*\) blocks.*/\1/p')
[ -n "$blocks" ] || { echo "FAIL: inspect gives no block count"; exit 1; }

# --- no daemon: exit 3, and the message names the path and where it came from
err=$(BITSTACK_SOCKET="$sock" "$ctl" status 2>&1 >/dev/null); rc=$?
[ $rc -eq 3 ] && ok "no daemon: exit 3" || bad "no daemon: exit $rc"
case "$err" in *"$sock"*BITSTACK_SOCKET*) ok "message names $sock";; *) bad "message: $err";; esac
err=$("$ctl" generate hi --socket "$tmp/other.sock" 2>&1 >/dev/null); rc=$?
case "$rc:$err" in 3:*"$tmp/other.sock"*--socket*) ok "generate, no daemon: exit 3 naming --socket";;
    *) bad "generate, no daemon: $rc $err";; esac
err=$(env -u BITSTACK_SOCKET -u RUNTIME_DIRECTORY XDG_RUNTIME_DIR="$tmp/xdg" "$ctl" chat --once </dev/null 2>&1)
rc=$?
# root looks in /run/bitstackd, anyone else in $XDG_RUNTIME_DIR
case "$rc:$err" in 3:*/run/bitstackd/bitstackd.sock*|3:*"$tmp/xdg/bitstackd.sock"*) ok "default path: exit 3";;
    *) bad "default path: $rc $err";; esac

# --- start the daemon
# The portable kernels keep a greedy run to the end of the context at a few seconds, so
# the busy-status and cancel checks below find it still running (the SIMD ones finish
# it in a fraction of a second).
BS_KERNEL=portable "$daemon" --store "$store" --socket "$sock" 2>"$tmp/log" &
pid=$!
i=0
until "$ctl" status --socket "$sock" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "FAIL: bitstackd did not come up"; cat "$tmp/log"; exit 1
    fi
    sleep 0.1
done
ok "bitstackd answers on $sock"

# --- status
out=$("$ctl" status --socket "$sock"); rc=$?
[ $rc -eq 0 ] && ok "status: exit 0" || bad "status: exit $rc"
for key in model stack budget sessions tokens/s uptime; do
    printf '%s\n' "$out" | grep -q "^$key " && ok "status row $key" || bad "status has no $key row: $out"
done
printf '%s\n' "$out" | grep -q "^stack *[0-9]*/$blocks blocks" && ok "status: stack N/$blocks" ||
    bad "status stack row: $out"
json=$("$ctl" status --json --socket "$sock"); rc=$?
[ $rc -eq 0 ] && ok "status --json: exit 0" || bad "status --json: exit $rc"
printf '%s' "$json" | grep -Eq "\"stack_total\": *$blocks[,}]" && ok "status --json: stack_total $blocks" ||
    bad "status --json: $json"
[ "$(printf '%s\n' "$json" | wc -l)" -eq 1 ] && ok "status --json is one line" || bad "status --json lines"

# --- the socket path rule: $BITSTACK_SOCKET, and --socket over it
BITSTACK_SOCKET="$sock" "$ctl" status >/dev/null 2>&1 && ok "BITSTACK_SOCKET" || bad "BITSTACK_SOCKET not used"
"$ctl" --socket "$sock" status >/dev/null 2>&1 && ok "--socket before the command" || bad "global --socket refused"
"$ctl" --socket="$sock" status --json >/dev/null 2>&1 && ok "--socket= before the command" || bad "global --socket= refused"
BITSTACK_SOCKET="$tmp/nope.sock" "$ctl" status --socket "$sock" >/dev/null 2>&1 &&
    ok "--socket wins over BITSTACK_SOCKET" || bad "--socket does not win"
BITSTACK_SOCKET="$tmp/nope.sock" RUNTIME_DIRECTORY="$tmp" "$ctl" status >/dev/null 2>&1
[ $? -eq 3 ] && ok "BITSTACK_SOCKET wins over RUNTIME_DIRECTORY" || bad "BITSTACK_SOCKET does not win"
# A bound socket keeps working under another name: give it the default one.
mv "$sock" "$tmp/bitstackd.sock" && {
    env -u BITSTACK_SOCKET RUNTIME_DIRECTORY="$tmp:/nonexistent" "$ctl" status >/dev/null 2>&1 &&
        ok "RUNTIME_DIRECTORY/bitstackd.sock (first of a list)" || bad "RUNTIME_DIRECTORY not used"
    env -u BITSTACK_SOCKET -u RUNTIME_DIRECTORY XDG_RUNTIME_DIR="$tmp" "$ctl" status >/dev/null 2>&1; rc=$?
    if [ "$(id -u)" -eq 0 ]; then
        [ $rc -eq 3 ] && ok "root ignores XDG_RUNTIME_DIR" || bad "root used XDG_RUNTIME_DIR: $rc"
    else
        [ $rc -eq 0 ] && ok "XDG_RUNTIME_DIR/bitstackd.sock" || bad "XDG_RUNTIME_DIR: $rc"
    fi
    mv "$tmp/bitstackd.sock" "$sock"
}
export BITSTACK_SOCKET="$sock"

# --- generate
g1=$("$ctl" generate "Once upon a time" -n 24 --temperature 0); rc=$?
[ $rc -eq 0 ] && ok "generate: exit 0" || bad "generate: exit $rc"
case "$g1" in "Once upon a time"?*) ok "generate echoes the prompt and continues";; *) bad "generate: '$g1'";; esac
g2=$("$ctl" generate "Once upon a time" -n 24 --temperature 0)
[ "$g1" = "$g2" ] && ok "greedy is repeatable" || bad "greedy differs: '$g1' vs '$g2'"
s=$("$ctl" generate "Once upon a time" -n 24 --temperature 0 --no-echo)
w=$("$ctl" generate "Once upon a time" -n 24 --temperature 0 --no-echo --no-stream)
[ -n "$s" ] && [ "$s" = "$w" ] && ok "streamed text = whole text" || bad "stream '$s' vs whole '$w'"
[ "Once upon a time$s" = "$g1" ] && ok "--no-echo leaves out the prompt" || bad "--no-echo: '$s'"
lines=$("$ctl" generate "Once upon a time" -n 24 --temperature 0 --json)
ntok=$(printf '%s\n' "$lines" | grep -c '"token":')
last=$(printf '%s\n' "$lines" | tail -n 1)
[ "$ntok" -ge 2 ] && ok "--json: $ntok token lines" || bad "--json: $ntok token lines: $lines"
case "$last" in *'"done":true'*'"generated_tokens":'*) ok "--json: done line last";; *) bad "--json last: $last";; esac
printf '%s\n' "$lines" | head -n -1 | grep -q '"done"' && bad "--json: done before the end" || true
gen=$(printf '%s\n' "$last" | sed -n 's/.*"generated_tokens":\([0-9]*\).*/\1/p')
[ "$gen" = "$ntok" ] && ok "one token line per generated token" || bad "generated_tokens $gen vs $ntok lines"
# a stop string taken from the greedy text ends generation before it
word=$(printf '%s\n' "$s" | awk '{print $3}')
if [ -n "$word" ]; then
    st=$("$ctl" generate "Once upon a time" -n 24 --temperature 0 --no-echo --stop "$word" --json | tail -n 1)
    case "$st" in *'"finish_reason":"stop"'*) ok "--stop '$word' stops";; *) bad "--stop: $st";; esac
    t=$("$ctl" generate "Once upon a time" -n 24 --temperature 0 --no-echo --stop "$word" --stop zzz)
    case "$t" in *"$word"*) bad "--stop text contains '$word': $t";; *) ok "--stop text ends before '$word'";; esac
fi
# the prompt from standard input, and --stats on stderr
e=$(printf 'Once upon a time' | "$ctl" generate - -n 4 --temperature 0 --stats 2>&1 >/dev/null)
case "$e" in *"generated 4 tokens"*finish*) ok "generate - and --stats";; *) bad "--stats: $e";; esac
# seeded sampling repeats
a=$("$ctl" generate "Once" -n 24 --seed 7); b=$("$ctl" generate "Once" -n 24 --seed 7)
[ "$a" = "$b" ] && ok "same seed, same text" || bad "seed 7 differs"

# --- daemon errors: exit 1 with the code
long=$(head -c 40000 /dev/zero | tr '\0' 'a')
err=$("$ctl" generate "$long" -n 4 2>&1 >/dev/null); rc=$?
case "$rc:$err" in 1:*prompt_too_long*) ok "prompt too long: exit 1 with the code";; *) bad "long prompt: $rc $err";; esac

# --- usage errors: exit 2
for args in "generate" "generate a b" "generate x --top-p 2" "generate x -n 0" "generate x --seed 1x" \
            "status --bogus" "status extra" "budget 5X" "budget 1M --min 2M" "chat --json" \
            "generate x --stop" "metrics --json=1"; do
    # shellcheck disable=SC2086
    "$ctl" $args >/dev/null 2>&1 </dev/null; rc=$?
    [ $rc -eq 2 ] && ok "usage: '$args' exit 2" || bad "usage: '$args' exit $rc"
done
"$ctl" generate x --stop a --stop b --stop c --stop d --stop e >/dev/null 2>&1
[ $? -eq 2 ] && ok "five --stop: exit 2" || bad "five --stop accepted"

# --- chat from a pipe
out=$(printf 'Hello!\n\nTell me about the park.\n' | "$ctl" chat -n 16 --temperature 0); rc=$?
[ $rc -eq 0 ] && ok "chat pipe: exit 0" || bad "chat pipe: exit $rc"
[ "$(printf '%s\n' "$out" | grep -c .)" -ge 1 ] && ok "chat pipe: replies" || bad "chat pipe: no reply: '$out'"
case "$out" in "> "*) bad "chat pipe prints the prompt";; *) ok "chat pipe: no prompt";; esac
once=$(printf 'Hello!\nTell me a story.\n' | "$ctl" chat --once -n 8 --temperature 0); rc=$?
[ $rc -eq 0 ] && [ -n "$once" ] && ok "chat --once" || bad "chat --once: $rc '$once'"
arg=$("$ctl" chat "Hello!" -n 8 --temperature 0 --system "Be kind."); rc=$?
[ $rc -eq 0 ] && [ -n "$arg" ] && ok "chat MESSAGE --system" || bad "chat MESSAGE: $rc '$arg'"
# Long turns outgrow the model's 512-token context: the oldest ones must be forgotten
# (said on stderr) and every message still answered.
n=0; : > "$tmp/turns"
while [ $n -lt 12 ]; do
    echo "Tell me more about the little dog number $n, the one who played with a big red ball in the park all day long with Lily and Tom." >> "$tmp/turns"
    n=$((n + 1))
done
"$ctl" chat -n 16 --temperature 0 < "$tmp/turns" > "$tmp/replies" 2>"$tmp/chat.err"; rc=$?
[ $rc -eq 0 ] && ok "long chat: exit 0" || bad "long chat: exit $rc: $(cat "$tmp/chat.err")"
grep -q "forgot" "$tmp/chat.err" && ok "long chat: old turns forgotten" || bad "long chat: nothing forgotten"

# --- status while a generation runs: a live rate; closing the client cancels it
# greedy runs to the end of the context (~500 tokens): seconds, never an early EOS
"$ctl" generate "Once upon a time" -n 4000 --temperature 0 >/dev/null 2>&1 &
gpid=$!
i=0
until "$ctl" status | grep -q '^sessions *1 open'; do
    i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.1
done
row=$("$ctl" status | grep '^tokens/s')
case "$row" in *"(over the last"*) ;; *) row="";; esac
rate=$(printf '%s\n' "$row" | awk '{print $2}')
if [ -n "$row" ] && awk "BEGIN { exit !($rate > 0) }"; then ok "busy status: $row"; else bad "busy status: '$row'"; fi
kill "$gpid"; wait "$gpid" 2>/dev/null
i=0
until "$ctl" status | grep -q '^sessions *0 open'; do
    i=$((i + 1)); if [ $i -gt 100 ]; then bad "a closed client's session stays open"; break; fi; sleep 0.1
done
[ $i -le 100 ] && ok "a closed client's generation is cancelled"
"$ctl" status | grep -q '^tokens/s *0.0 (idle)' && ok "idle status: 0.0" || bad "idle status: $("$ctl" status)"

# --- budget and metrics: the daemon may not know them yet (exit 1, said plainly)
out=$("$ctl" budget 2>&1); rc=$?
case "$rc:$out" in 0:budget*|1:*"not supported by this daemon"*) ok "budget: $rc";; *) bad "budget: $rc $out";; esac
out=$("$ctl" metrics 2>&1); rc=$?
case "$rc" in 0|1) ok "metrics: $rc";; *) bad "metrics: $rc $out";; esac

# --- SIGTERM: a clean exit, and then exit 3
kill -TERM "$pid"; wait "$pid"; rc=$?; pid=""
[ $rc -eq 0 ] && ok "bitstackd exits 0 on SIGTERM" || { bad "bitstackd exit $rc on SIGTERM"; cat "$tmp/log"; }
"$ctl" status >/dev/null 2>&1; rc=$?
[ $rc -eq 3 ] && ok "after stop: exit 3" || bad "after stop: exit $rc"
exit $fail

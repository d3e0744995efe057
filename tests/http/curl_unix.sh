#!/bin/sh
# curl over the daemon's Unix socket (HTTP on the socket JSON lines also use): models,
# chat and completions non-streamed and streamed, stop, an error, a mid-stream hang-up that
# cancels its session, JSON lines still answered on the same socket, the session limit
# (429), and SIGTERM during streams (they end with finish_reason "shutdown" and [DONE]).
# usage: curl_unix.sh BITSTACKD BITSTACKCTL SHARED_DIR
set -u
D=$1 CTL=$2 SHARED=$3
command -v curl >/dev/null || { echo "FAIL: curl not found (scripts/install-deps.sh installs it)"; exit 1; }
command -v socat >/dev/null || { echo "FAIL: socat not found (scripts/install-deps.sh installs it)"; exit 1; }
T=$(mktemp -d /tmp/bsc-XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; }
trap cleanup EXIT
fails=0 checks=0
ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "CHECK failed: $*"; }
has() { # has WHAT FILE PATTERN
    if grep -q -- "$3" "$2"; then ok; else bad "$1: no '$3' in: $(head -c 600 "$2")"; fi
}

"$CTL" compress --model "$SHARED/models/stories260K.bin" --tokenizer "$SHARED/models/tok512.bin" \
    --calib "$SHARED/data/tinystories_train_head.txt" --out "$T/s.bstk" --calib-windows 8 --ctx 64 --quiet \
    >"$T/compress.log" 2>&1 || { cat "$T/compress.log"; echo "FAIL: compress"; exit 1; }
S=$T/d.sock
"$D" --store "$T/s.bstk" --socket "$S" --max-sessions 2 >"$T/d.log" 2>&1 &
PID=$!
i=0
until curl -sf --unix-socket "$S" http://x/health >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 600 ] || ! kill -0 $PID 2>/dev/null; then cat "$T/d.log"; echo "FAIL: bitstackd did not come up"; exit 1; fi
    sleep 0.1
done
C="curl -s --unix-socket $S"

$C http://x/v1/models >"$T/models"
has models "$T/models" '"object":"list"'
has models "$T/models" '"id":"s"'

$C -o "$T/chat" -w '%{http_code}' http://x/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"model":"s","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8}' >"$T/code"
has chat "$T/code" '^200$'
has chat "$T/chat" '"object":"chat.completion"'
has chat "$T/chat" '"finish_reason":"length"'
has chat "$T/chat" '"completion_tokens":8'

$C -N http://x/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8,"stream":true,"stream_options":{"include_usage":true}}' \
    >"$T/chats" -D "$T/chats.h"
has chat-stream "$T/chats.h" 'Content-Type: text/event-stream'
has chat-stream "$T/chats" '^data: {.*"object":"chat.completion.chunk"'
has chat-stream "$T/chats" '"bitstack":{"stack_n"'
has chat-stream "$T/chats" '"usage":{"prompt_tokens"'
has chat-stream "$T/chats" '^data: \[DONE\]$'
n=$(grep -c '^data: ' "$T/chats")
[ "$n" -ge 10 ] && ok || bad "chat-stream: $n events"

$C http://x/v1/completions -H 'Content-Type: application/json' \
    -d '{"prompt":"Once upon a time","max_tokens":30,"temperature":0}' >"$T/comp"
has completion "$T/comp" '"object":"text_completion"'
# stop: the greedy text cut before its first "the"
full=$(sed 's/.*"text":"\([^"]*\)".*/\1/' "$T/comp")
case "$full" in
*" the"*)
    want=${full%%" the"*}
    $C http://x/v1/completions -H 'Content-Type: application/json' \
        -d '{"prompt":"Once upon a time","max_tokens":30,"temperature":0,"stop":" the"}' >"$T/stop"
    has stop "$T/stop" '"finish_reason":"stop"'
    has stop "$T/stop" "\"text\":\"$want\""
    ;;
*) bad "stop: no ' the' in the greedy text: $full" ;;
esac
$C -N http://x/v1/completions -H 'Content-Type: application/json' \
    -d '{"prompt":"Once upon a time","max_tokens":8,"stream":true}' >"$T/comps"
has completion-stream "$T/comps" '"object":"text_completion"'
has completion-stream "$T/comps" '^data: \[DONE\]$'

# errors
$C -o "$T/err" -w '%{http_code}' http://x/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":0}' >"$T/code"
has error "$T/code" '^400$'
has error "$T/err" '"error":{"message":'
has error "$T/err" '"type":"invalid_request_error"'
$C -o "$T/err" -w '%{http_code}' http://x/v1/nothing >"$T/code"
has 404 "$T/code" '^404$'
$C -o "$T/err" -w '%{http_code}' http://x/v1/completions >"$T/code"
has 405 "$T/code" '^405$'
$C -o "$T/err" -w '%{http_code}' http://x/v1/completions -H 'Content-Type: text/plain' -d '{"prompt":"x"}' >"$T/code"
has 415 "$T/code" '^415$'

# a hang-up mid-stream cancels the session
metric() { $C http://x/metrics | sed -n "s/^$1 //p"; }
before=$(metric bitstack_sessions_cancelled_total)
$C -N --max-time 30 http://x/v1/completions -H 'Content-Type: application/json' \
    -d '{"prompt":"Once","max_tokens":4000,"stream":true}' 2>/dev/null | head -c 2000 >"$T/cut"
has hang-up "$T/cut" '^data: '
i=0
while [ "$(metric bitstack_sessions)" != 0 ] && [ $i -lt 300 ]; do i=$((i + 1)); sleep 0.1; done
after=$(metric bitstack_sessions_cancelled_total)
[ "$after" = $((before + 1)) ] && ok || bad "hang-up: sessions cancelled $before -> $after"

# JSON lines on the same socket
echo '{"id":1,"op":"status"}' | socat -t 5 - "UNIX-CONNECT:$S" >"$T/jl"
has json-lines "$T/jl" '"id":1,"result":{'

# two long streams fill the session limit: a third request gets 429; then SIGTERM ends both
long='{"prompt":"Once","max_tokens":4000,"stream":true}'
$C -N --max-time 60 http://x/v1/completions -H 'Content-Type: application/json' -d "$long" >"$T/long1" &
L1=$!
$C -N --max-time 60 http://x/v1/completions -H 'Content-Type: application/json' -d "$long" >"$T/long2" &
L2=$!
i=0
while [ "$(metric bitstack_sessions)" != 2 ] && [ $i -lt 300 ]; do i=$((i + 1)); sleep 0.1; done
$C -o "$T/busy" -w '%{http_code}' http://x/v1/completions -H 'Content-Type: application/json' \
    -d '{"prompt":"Once","max_tokens":4}' >"$T/code"
has 429 "$T/code" '^429$'
has 429 "$T/busy" '"type":"rate_limit_error"'
kill -TERM $PID
wait $L1 $L2
for f in long1 long2; do
    has "shutdown $f" "$T/$f" '"finish_reason":"shutdown"'
    has "shutdown $f" "$T/$f" '^data: \[DONE\]$'
done
wait $PID
rc=$?
PID=
[ $rc = 0 ] && ok || { bad "bitstackd exited $rc"; cat "$T/d.log"; }
echo "$checks checks, $fails failed"
if [ $fails = 0 ]; then rm -rf "$T"; exit 0; fi
echo "test folder kept: $T"
exit 1

#!/bin/sh
# bitstackctl budget and status against bs-fake-daemon (a bitstackd that resizes live):
# usage errors before connecting, the exact budget request lines, the status rows for the
# new fields, status --watch into a pipe, and its exit when the daemon goes away.
#
# Usage: cli_budget.sh BITSTACKCTL BS_FAKE_DAEMON
set -u
ctl="$1"; fake="$2"; fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
tmp=$(mktemp -d) || exit 1
fpid=""
cleanup() {
    [ -n "$fpid" ] && kill "$fpid" 2>/dev/null && wait "$fpid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
sock="$tmp/d.sock"; export BITSTACK_SOCKET="$sock"

# --- --help: usage on stdout, exit 0
for cmd in status budget metrics generate chat; do
    out=$("$ctl" $cmd --help 2>/dev/null); rc=$?
    case "$rc:$out" in "0:usage: bitstackctl $cmd"*) ok "$cmd --help";; *) bad "$cmd --help: $rc '$out'";; esac
done

# --- usage errors: exit 2 with a message, before connecting (no daemon is running)
check_usage() {
    err=$("$ctl" "$@" 2>&1 >/dev/null); rc=$?
    case "$rc:$err" in "2:"*"$want"*) ok "usage '$*'";; *) bad "usage '$*': $rc $err";; esac
}
want="--auto takes the whole range"; check_usage budget --auto --fixed 1M
want="--auto takes the whole range"; check_usage budget --auto 30%
want="--auto takes the whole range"; check_usage budget --auto --min 1M
want="not both"; check_usage budget --fixed 1M --max 2M
want="same; give one"; check_usage budget 1M --fixed 2M
want="budget: empty"; check_usage budget ""
want="budget: empty"; check_usage budget --min=
want="unknown unit 'X'"; check_usage budget 5X
want="a percentage must be 0..100"; check_usage budget --max 101%
want="min 2M is above max 1M"; check_usage budget --min 2M --max 1M
want="goes with --watch"; check_usage status --interval 2
want="--interval must be"; check_usage status --watch --interval 0
want="takes no value"; check_usage budget --auto=1
"$ctl" budget --auto >/dev/null 2>&1; [ $? -eq 3 ] && ok "a good budget, no daemon: exit 3" || bad "no daemon"

# --- a fake daemon with every new status field
cat > "$tmp/status.json" <<'J'
{"model":"fake","stack_n":180,"stack_total":240,"resident_bytes":524288,"full_bytes":1048576,
 "bpw":5.5,"target_bytes":786432,"target_n":200,"target_reason":"headroom minus reserve",
 "budget":{"mode":"auto","min":"10%","max":"max","min_bytes":104857,"max_bytes":1048576},
 "headroom_bytes":2097152,"headroom_source":"cgroup v2 memory.max",
 "psi":{"trigger":"/sys/fs/cgroup/x/memory.pressure","why":null,"some_avg10":0.25,"full_avg10":0.0},
 "io_backend":"pread","bad_blocks":[],"kv_bytes":65536,"sessions":0,
 "resizes":[{"t":1700000000,"from_n":240,"to_n":180,"from_bytes":1048576,"to_bytes":524288,
   "reason":"psi trigger","ms":3.25,"mb_s":161.3}]}
J
start_fake() {
    rm -f "$sock"
    "$fake" "$sock" "$tmp/status.json" "$tmp/log" "$1" &
    fpid=$!
    i=0
    until [ -S "$sock" ]; do i=$((i + 1)); [ $i -gt 100 ] && { bad "fake daemon did not start"; exit 1; }; sleep 0.05; done
}
start_fake 1000

# budget: the request line each form sends, and the human answer
: > "$tmp/log"
"$ctl" budget --fixed 30% >"$tmp/out"; rc=$?
"$ctl" budget 4bpw >/dev/null
"$ctl" budget --min 10% --max 2M >/dev/null
"$ctl" budget --max 80% >/dev/null
"$ctl" budget --auto >/dev/null
"$ctl" budget >/dev/null
sed 's/"id":[0-9]*,//' "$tmp/log" > "$tmp/sent"
want='{"op":"budget","budget":"30%"}
{"op":"budget","budget":"4bpw"}
{"op":"budget","min":"10%","max":"2M"}
{"op":"budget","max":"80%"}
{"op":"budget","auto":true}
{"op":"budget"}'
[ "$(cat "$tmp/sent")" = "$want" ] && ok "budget request lines" || bad "budget sent: $(cat "$tmp/sent")"
[ $rc -eq 0 ] && grep -q '^budget *fixed: 30% ' "$tmp/out" && grep -q '^target *512.0 KiB' "$tmp/out" &&
    grep -q '^stack *120 blocks, 488.3 KiB resident' "$tmp/out" && ok "budget --fixed output" ||
    bad "budget --fixed: $rc $(cat "$tmp/out")"
out=$("$ctl" budget --auto --json)
case "$out" in '{"mode": "auto"'*|'{"mode":"auto"'*) ok "budget --json";; *) bad "budget --json: $out";; esac

# status: the new rows
out=$("$ctl" status); rc=$?
[ $rc -eq 0 ] && ok "status: exit 0" || bad "status: exit $rc"
for row in "stack *180/240 blocks" "target *768.0 KiB, 200 blocks (resident growing): headroom minus reserve" \
           "budget *auto: 10% .. max" "headroom *2.00 MiB (cgroup v2 memory.max)" "psi *avg10 some 0.25" \
           "io *pread" "kv cache *64.0 KiB" "bad blocks 0" "resizes"; do
    printf '%s\n' "$out" | grep -q "^$row" && ok "status row: $row" || bad "status row '$row': $out"
done
printf '%s\n' "$out" | grep -q "240→180 .*3.2 .*161.3  psi trigger" && ok "status resize table" ||
    bad "resize table: $out"

# status --watch into a pipe: one line per refresh; SIGINT ends it with 0
"$ctl" status --watch --interval 0.1 >"$tmp/watch" 2>&1 &
wpid=$!
sleep 1
kill -INT "$wpid"; wait "$wpid"; rc=$?
n=$(grep -c '^180/240 blocks resident \[#####..|..\] 512.0 KiB target 768.0 KiB headroom 2.00 MiB N ' "$tmp/watch")
[ $rc -eq 0 ] && ok "watch: SIGINT, exit 0" || bad "watch: SIGINT exit $rc"
[ "$n" -ge 3 ] && [ "$n" -eq "$(wc -l < "$tmp/watch")" ] && ok "watch: $n lines" || bad "watch: $(cat "$tmp/watch")"
grep -q "N ▆▆▆.* last .*240→180 blocks (psi trigger, 3.2 ms)" "$tmp/watch" && ok "watch: sparkline and last resize" ||
    bad "watch line: $(tail -n 1 "$tmp/watch")"
out=$("$ctl" status --watch --json --interval 0.1 | head -n 2)
[ "$(printf '%s\n' "$out" | grep -c '"target_reason"')" -eq 2 ] && ok "watch --json | head" || bad "watch --json: $out"
kill "$fpid"; wait "$fpid" 2>/dev/null; fpid=""

# the daemon goes away after 3 answers: message, exit 1
start_fake 3
err=$("$ctl" status --watch --interval 0.05 2>&1 >"$tmp/watch"); rc=$?
[ $rc -eq 1 ] && ok "watch: daemon gone, exit 1" || bad "watch: daemon gone, exit $rc"
case "$err" in *"went away"*) ok "watch: says the daemon went away";; *) bad "watch message: $err";; esac
[ "$(wc -l < "$tmp/watch")" -eq 3 ] && ok "watch: 3 lines before" || bad "watch: $(cat "$tmp/watch")"
wait "$fpid" 2>/dev/null; fpid=""
exit $fail

#!/bin/sh
# bs-hog: its step lines, cycles, the ready file, --help, usage errors, and an early end
# on SIGTERM while holding.
#
# Usage: hog.sh BS_HOG
set -u
hog="$1"; fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

out=$("$hog" --mb 8 --step-mb 4 --step-ms 0 --hold-ms 0 </dev/null); rc=$?
want=$(printf 'hog: 4 MiB\nhog: 8 MiB\nhog: 0 MiB')
[ $rc -eq 0 ] && ok "exit 0" || bad "exit $rc"
[ "$out" = "$want" ] && ok "steps 4, 8, then freed" || bad "output: '$out'"

# a last step smaller than the others, and two cycles
out=$("$hog" --mb 10 --step-mb 4 --step-ms 1 --hold-ms 1 --cycles 2 </dev/null | tr '\n' ' ')
[ "$out" = "hog: 4 MiB hog: 8 MiB hog: 10 MiB hog: 0 MiB hog: 4 MiB hog: 8 MiB hog: 10 MiB hog: 0 MiB " ] &&
    ok "cycles and a short last step" || bad "cycles: '$out'"

# without --hold-ms it holds until standard input ends
out=$(echo | "$hog" --mb 4 --step-mb 4 | tr '\n' ' ')
[ "$out" = "hog: 4 MiB hog: 0 MiB " ] && ok "hold until EOF" || bad "hold until EOF: '$out'"

# the ready file while holding (30 s); SIGTERM frees and exits 0; the file goes with the memory
"$hog" --mb 4 --step-mb 2 --step-ms 0 --hold-ms 30000 --ready-file "$tmp/ready" >"$tmp/out" </dev/null &
hpid=$!
i=0
until [ -f "$tmp/ready" ]; do
    i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.05
done
[ -f "$tmp/ready" ] && [ "$(cat "$tmp/ready")" = 4 ] && ok "ready file says 4" || bad "no ready file"
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$hpid/status" 2>/dev/null)
[ "${rss:-0}" -ge 4096 ] && ok "resident ${rss} KiB >= 4 MiB" || bad "resident only ${rss:-?} KiB"
start=$(date +%s)
kill -TERM "$hpid"; wait "$hpid"; rc=$?
[ $rc -eq 0 ] && [ $(($(date +%s) - start)) -lt 10 ] && ok "SIGTERM ends the hold, exit 0" ||
    bad "SIGTERM: exit $rc"
i=0
while [ -f "$tmp/ready" ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.05; done
[ ! -f "$tmp/ready" ] && ok "ready file removed" || bad "ready file left"
[ "$(tail -n 1 "$tmp/out")" = "hog: 0 MiB" ] && ok "SIGTERM: freed" || bad "SIGTERM: $(cat "$tmp/out")"

"$hog" --help | grep -q '^usage: bs-hog' && ok "--help" || bad "--help"
for args in "" "--mb" "--mb 0" "--mb 8 --step-mb x" "--mb 8 --bogus" "--mb 8 --ready-file="; do
    # shellcheck disable=SC2086
    "$hog" $args >/dev/null 2>&1 </dev/null; rc=$?
    [ $rc -eq 2 ] && ok "usage '$args': exit 2" || bad "usage '$args': exit $rc"
done
exit $fail

#!/usr/bin/env bash
# The README's main command: on a fresh machine, from a clone with ../shared beside it,
# installs the dependencies, builds (release), compresses stories260K into a stacked
# store, starts bitstackd on a private socket, asks it for a story with bitstackctl, and
# stops it. Exits 0 only if every step worked.
#
#   scripts/demo.sh
#
# Environment: BUILD (build folder, default build-release), OUT (where the store goes,
# default out/demo), BS_SHARED (models and data, default ../shared), PROMPT, TOKENS.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD:-$root/build-release}
out=${OUT:-$root/out/demo}
shared=${BS_SHARED:-$root/../shared}
prompt=${PROMPT:-Once upon a time}
tokens=${TOKENS:-200}

step() { printf '\n== %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

for f in models/stories260K.bin models/tok512.bin data/tinystories_train_head.txt; do
    [ -f "$shared/$f" ] || die "$shared/$f is missing (set BS_SHARED to the folder holding models/ and data/)"
done

step "dependencies"
"$root/scripts/install-deps.sh"

step "build ($build)"
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" --buildtype=release -Dshared_dir="$shared"
fi
ninja -C "$build"
ctl=$build/client/bitstackctl
daemon=$build/daemon/bitstackd
[ -x "$daemon" ] || die "$daemon was not built"

step "compress stories260K into a stacked store"
mkdir -p "$out"
store=$out/stories260K.bstk
"$ctl" compress --model "$shared/models/stories260K.bin" --tokenizer "$shared/models/tok512.bin" \
    --calib "$shared/data/tinystories_train_head.txt" --out "$store" --quiet
"$ctl" inspect "$store" | sed -n '1,6p'

step "start bitstackd"
rundir=$(mktemp -d "${TMPDIR:-/tmp}/bitstack-demo.XXXXXX")
sock=$rundir/bitstackd.sock
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$rundir"
}
trap cleanup EXIT
"$daemon" --store "$store" --socket "$sock" 2>"$rundir/bitstackd.log" &
pid=$!
# Ready when it answers status; give up after 30 s or if it exits.
for _ in $(seq 1 300); do
    if "$ctl" status --socket "$sock" >/dev/null 2>&1; then break; fi
    kill -0 "$pid" 2>/dev/null || { cat "$rundir/bitstackd.log" >&2; die "bitstackd exited"; }
    sleep 0.1
done
"$ctl" status --socket "$sock" || { cat "$rundir/bitstackd.log" >&2; die "bitstackd does not answer on $sock"; }

step "a story from bitstackd"
"$ctl" generate "$prompt" --socket "$sock" -n "$tokens" --temperature 0.8 --seed 42 --stats

step "resize it live: pin 30%, a story at that size, then back to following free memory"
brief() { "$ctl" status --socket "$sock" --json | tr ',' '\n' | grep -E '"(stack_n|resident_bytes|target_reason)"' | tr '\n' ' '; echo; }
echo "before:    $(brief)"
"$ctl" budget --fixed 30% --socket "$sock" >/dev/null
echo "fixed 30%: $(brief)"
"$ctl" generate "$prompt" --socket "$sock" -n 64 --temperature 0.8 --seed 7 --stats 2>&1 | tail -1
"$ctl" budget --auto --socket "$sock" >/dev/null
total=$("$ctl" status --socket "$sock" --json | grep -o '"stack_total": *[0-9]*' | grep -o '[0-9]*$')
for _ in $(seq 1 100); do
    [ "$("$ctl" status --socket "$sock" --json | grep -o '"stack_n": *[0-9]*' | grep -o '[0-9]*$')" = "$total" ] && break
    sleep 0.1
done
echo "auto:      $(brief)"
"$ctl" status --socket "$sock" | sed -n '/^resizes/,/^sessions/p' | grep -v '^sessions'

step "stop bitstackd"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || { cat "$rundir/bitstackd.log" >&2; die "bitstackd exited with $rc after SIGTERM"; }
echo "bitstackd stopped cleanly"

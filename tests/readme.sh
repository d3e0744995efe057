#!/bin/sh
# Runs every command of README.md's Use and Serve sections as written, in a fresh
# directory beside a link to the shared models (so "../shared/..." resolves as it does
# from a clone), with the build's programs on PATH as the README's first Use line puts
# them. Not run here: the first block (scripts/demo.sh, .ci/run) and the Build block
# (install-deps, meson setup/test), which CI itself runs. A line ending in "&" starts
# bitstackd: the test waits for its socket before the next line; "status --watch" runs
# for 2 s and is ended with SIGTERM (a background job of a script ignores SIGINT; watch
# ends the same way on both); "kill %1" stops that bitstackd by its pid.
#
# Usage: readme.sh README BUILD_DIR SHARED_DIR
set -u
readme="$1"; build="$2"; shared="$3"; fail=0
tmp=$(mktemp -d) || exit 1
dpid=""
trap '[ -n "$dpid" ] && kill "$dpid" 2>/dev/null; rm -rf "$tmp"' EXIT
ln -s "$(cd "$shared" && pwd)" "$tmp/shared"
mkdir "$tmp/clone"
cd "$tmp/clone" || exit 1
PATH="$build/client:$build/daemon:$PATH"; export PATH
# bitstackd --model keeps its stores in the user cache: a fresh one per run, not the real one
XDG_CACHE_HOME="$tmp/cache"; export XDG_CACHE_HOME

# sh code blocks after "## Use", continuation lines joined, the export line left out
# (it is what the line above does)
awk '/^## Use/ {use = 1} /^## Results/ {use = 0}
     use && /^```sh/ {inblk = 1; next} inblk && /^```/ {inblk = 0; next}
     inblk { if (sub(/\\$/, "")) { acc = acc $0; next } print acc $0; acc = "" }' "$readme" |
    grep -v '^export PATH' >"$tmp/cmds"
n=$(wc -l <"$tmp/cmds")
[ "$n" -ge 12 ] || { echo "FAIL: found only $n README commands"; exit 1; }

while IFS= read -r line; do
    case "$line" in
    *"&"*"#"*|*"&")
        eval "${line%%#*}" </dev/null >"$tmp/daemon.log" 2>&1
        dpid=$!
        sock=$(echo "$line" | sed -n 's/.*--socket \([^ ]*\).*/\1/p')
        i=0
        until bitstackctl --socket "$sock" status >/dev/null 2>&1; do
            i=$((i + 1)); [ $i -gt 100 ] && { echo "FAIL: bitstackd never answered: $line"; fail=1; break; }
            sleep 0.1
        done
        echo "ok: $line";;
    *--watch*)
        sh -c "exec ${line%%#*}" </dev/null >"$tmp/out" 2>&1 &
        w=$!
        sleep 2; kill -TERM $w; wait $w; rc=$?
        [ $rc -eq 0 ] && [ -s "$tmp/out" ] && echo "ok: $line" || { echo "FAIL ($rc): $line"; fail=1; };;
    "kill %1"*)
        # the job the "&" line started: by its pid, as a script has no job control
        kill "$dpid" && wait "$dpid"; rc=$?
        dpid=""
        [ $rc -eq 0 ] && echo "ok: $line (bitstackd exit 0)" || { echo "FAIL ($rc): $line"; fail=1; };;
    *)
        if eval "$line" </dev/null >"$tmp/out" 2>&1; then echo "ok: $line"
        else echo "FAIL: $line"; sed 's/^/    /' "$tmp/out" | tail -5; fail=1; fi;;
    esac
done <"$tmp/cmds"
for f in s260k.bstk sweep.csv gptq3.bstk; do
    [ -s "$f" ] || { echo "FAIL: the README's commands made no $f"; fail=1; }
done
exit $fail

#!/bin/sh
# meson install puts both man pages and docs/daemon.md, docs/protocol.md (which --help
# points at) in place; bitstackctl(1) names every command `bitstackctl --help` lists,
# in its synopsis and in its description.
# Usage: docs.sh BUILD_DIR BITSTACKCTL SOURCE_DIR
set -u
build="$1"; ctl="$2"; src="$3"; fail=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
if meson install -C "$build" --no-rebuild --quiet --destdir "$tmp" >"$tmp/log" 2>&1; then
    for f in doc/bitstack/daemon.md doc/bitstack/protocol.md man/man1/bitstackctl.1 man/man8/bitstackd.8; do
        found=$(find "$tmp" -path "*/share/$f" | head -1)
        [ -n "$found" ] && echo "ok: installs share/$f" || { echo "FAIL: meson install: no share/$f"; fail=1; }
    done
else
    echo "FAIL: meson install: $(tail -3 "$tmp/log")"; fail=1
fi
"$ctl" --help | grep -q "docs/daemon.md" && echo "ok: --help points at the docs" || { echo "FAIL: --help"; fail=1; }
man="$src/docs/bitstackctl.1"
cmds=$("$ctl" --help | sed -n 's/^  \([a-z][a-z]*\) .*/\1/p')
[ "$(echo "$cmds" | wc -l)" -ge 10 ] || { echo "FAIL: --help lists: $cmds"; fail=1; }
for c in $cmds; do
    grep -q "^\.B bitstackctl $c\$" "$man" || { echo "FAIL: bitstackctl(1) synopsis lacks $c"; fail=1; }
    grep -Eq "^\.BI? \"?$c( |\"|\$)" "$man" || { echo "FAIL: bitstackctl(1) does not describe $c"; fail=1; }
done
[ $fail -eq 0 ] && echo "ok: bitstackctl(1) lists: $(echo $cmds)"
exit $fail

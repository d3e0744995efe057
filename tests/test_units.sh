#!/bin/sh
# The systemd units: `systemd-analyze verify` accepts them, and their syscall filter lets
# io_uring through (residency falls back to pread otherwise, DESIGN.md §5).
# Skipped (exit 77) where systemd-analyze is missing.
#
# Usage: test_units.sh SRC_SYSTEMD_DIR BITSTACKD_BINARY
# verify needs ExecStart's binary to exist, so the units are copied into a temporary
# folder with @bindir@ pointing at the folder of the built bitstackd.
set -u
src="$1"; daemon="$2"
command -v systemd-analyze >/dev/null 2>&1 || { echo "SKIP: no systemd-analyze"; exit 77; }
[ -x "$daemon" ] || { echo "FAIL: $daemon is not built"; exit 1; }

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
bindir=$(cd "$(dirname "$daemon")" && pwd)
sed "s|@bindir@|$bindir|g" "$src/bitstackd.service" > "$tmp/bitstackd.service"
cp "$src/bitstackd.socket" "$tmp/bitstackd.socket"
fail=0

# Keys newer than the installed systemd are reported as unknown and ignored; that is
# expected (they take effect where systemd has them), anything else is a failure.
version=$(systemd-analyze --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p')
newer_keys=""
[ "${version:-0}" -lt 254 ] && newer_keys="MemoryPressureWatch"

out=$(cd "$tmp" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no \
      "$tmp/bitstackd.service" "$tmp/bitstackd.socket" 2>&1)
rc=$?
printf '%s\n' "$out" | sed 's/^/  verify: /'
problems=$(printf '%s\n' "$out" | grep -i "bitstackd\.\(service\|socket\)" |
           grep -v "Unknown key\( name\)\? '\(${newer_keys:-none}\)'" || true)
if [ $rc -ne 0 ]; then
    echo "FAIL: systemd-analyze verify exited $rc"; fail=1
elif [ -n "$problems" ]; then
    echo "FAIL: systemd-analyze verify reported:"; printf '%s\n' "$problems"; fail=1
else
    echo "ok: systemd-analyze verify (systemd $version)"
fi

# The syscall filter: the union of the allow-lists minus the deny-lists must hold
# io_uring_setup, io_uring_enter and io_uring_register.
expand() {   # words of SystemCallFilter= values -> one syscall per line
    for w in "$@"; do
        case "$w" in
            @*) systemd-analyze syscall-filter "$w" 2>/dev/null | sed -n 's/^ *\([a-z_0-9]*\)$/\1/p' ;;
            *) echo "$w" ;;
        esac
    done
}
allow=$(grep '^SystemCallFilter=[^~]' "$tmp/bitstackd.service" | sed 's/^SystemCallFilter=//')
deny=$(grep '^SystemCallFilter=~' "$tmp/bitstackd.service" | sed 's/^SystemCallFilter=~//')
# shellcheck disable=SC2086
allowed=$(expand $allow | sort -u)
# shellcheck disable=SC2086
denied=$(expand $deny | sort -u)
[ -n "$allowed" ] || { echo "FAIL: no SystemCallFilter allow-list found"; fail=1; }
for sc in io_uring_setup io_uring_enter io_uring_register; do
    if ! printf '%s\n' "$allowed" | grep -qx "$sc"; then
        echo "FAIL: $sc is not allowed by the filter"; fail=1
    elif printf '%s\n' "$denied" | grep -qx "$sc"; then
        echo "FAIL: $sc is denied by the filter"; fail=1
    else
        echo "ok: $sc passes the filter"
    fi
done

# What the unit promises the issue: every hardening and memory key is present.
for key in Type=notify DynamicUser=yes RuntimeDirectory=bitstackd MemoryPressureWatch=auto \
           NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
           RestrictAddressFamilies=AF_UNIX EnvironmentFile=-/etc/bitstack/bitstackd.env \
           'ExecReload=/bin/kill -HUP $MAINPID'; do
    grep -qx "$key" "$tmp/bitstackd.service" && echo "ok: $key" || { echo "FAIL: no $key"; fail=1; }
done
# The socket unit listens where bitstackctl looks for root (proto/sockpath.h).
grep -qx "ListenStream=/run/bitstackd/bitstackd.sock" "$tmp/bitstackd.socket" &&
    echo "ok: socket path" || { echo "FAIL: bitstackd.socket listens elsewhere"; fail=1; }

# For people: how exposed the service is (not a pass/fail).
if systemd-analyze security --help 2>/dev/null | grep -q -- --offline; then
    (cd "$tmp" && systemd-analyze security --offline=yes --no-pager "$tmp/bitstackd.service" 2>/dev/null |
        tail -n 1 | sed 's/^/  security: /')
fi
exit $fail

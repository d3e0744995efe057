#!/bin/sh
# libmicrohttpd against libh2o (libuv build) as bitstackd would use them: a hello server on
# each, driven from a libuv loop, loaded over loopback by a bounded loop (bench/http/load.c).
# Needs libmicrohttpd-dev, libh2o-dev, libuv1-dev (Debian). Prints one line per run and
# each server's peak RSS. On 2 cores the client's threads share them with the server:
# compare medians of several rounds, on an otherwise idle machine. Figures and the choice: docs/http.md §10.
# usage: bench/http/run.sh [ROUNDS]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:-5}
out=$(mktemp -d /tmp/bsh-bench-XXXXXX)
cc -O2 -Wall -o "$out/mhd_hello" "$here/mhd_hello.c" -lmicrohttpd -luv
cc -O2 -Wall -o "$out/h2o_hello" "$here/h2o_hello.c" -lh2o -luv
cc -O2 -Wall -pthread -o "$out/load" "$here/load.c"
strip -o "$out/mhd_s" "$out/mhd_hello"
strip -o "$out/h2o_s" "$out/h2o_hello"
echo "binaries (stripped): mhd_hello $(stat -c %s "$out/mhd_s") B + libmicrohttpd" \
     "$(stat -L -c %s "$(ldd "$out/mhd_hello" | awk '/libmicrohttpd/ {print $3}')") B;" \
     "h2o_hello $(stat -c %s "$out/h2o_s") B + libh2o" \
     "$(stat -L -c %s "$(ldd "$out/h2o_hello" | awk '/libh2o/ {print $3}')") B" \
     "(+ libssl, libcrypto, libwslay, zlib)"
port=$(( 20000 + $$ % 20000 ))
for server in mhd_hello h2o_hello; do
    "$out/$server" $port >"$out/$server.log" 2>&1 &
    pid=$!
    sleep 0.3
    head -1 "$out/$server.log"
    "$out/load" $port 1 2000 >/dev/null   # warm up
    for r in $(seq "$rounds"); do
        "$out/load" $port 1 20000
        "$out/load" $port 2 20000
        "$out/load" $port 2 3000 close
    done
    echo "  peak RSS: $(sed -n 's/^VmHWM: *//p' /proc/$pid/status)"
    kill $pid
    wait $pid 2>/dev/null || true
    port=$((port + 1))
done
rm -rf "$out"

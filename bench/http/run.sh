#!/usr/bin/env bash
# The HTTP library comparison: the same /health server on libmicrohttpd (as bitstackd
# drives it) and on h2o (Debian's libh2o-dev, its libuv build), each loaded by
# bench_http_load over loopback TCP with 1 and 16 keep-alive connections, alternating
# runs so both see the same machine. Usage: bench/http/run.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
build=${1:-build}; secs=${2:-3}
load=$build/bench/bench_http_load mhd=$build/bench/bench_http_mhd h2o=$build/bench/bench_http_h2o
[ -x "$h2o" ] || { echo "no $h2o: install libh2o-dev (and libssl-dev) and reconfigure"; exit 1; }
"$mhd" 18190 & p1=$!
"$h2o" 18191 & p2=$!
trap 'kill $p1 $p2 2>/dev/null' EXIT
sleep 0.5
echo "machine: $(nproc) cores, $(uname -r); loopback TCP, GET /health (15-byte JSON), keep-alive"
for k in 1 16; do
  for round in 1 2; do
    for lib in mhd h2o; do
      port=$([ $lib = mhd ] && echo 18190 || echo 18191)
      printf '%s round %d: ' $lib $round; "$load" $port /health $k "$secs"
    done
  done
done

#!/usr/bin/env bash
# A real server under load: Debian's redis on 127.0.0.1, preloaded with the shim and
# driven by redis-benchmark for a fixed number of requests, twice. Zero errors, every
# key written still there, resident memory after round 2 at most 10% above round 1;
# requests per second set beside the same server without the shim. The benchmark's
# keyspace (10,000 keys) fills in round 1, so round 2 stores nothing new.
# usage: redis_load.sh LIBRARY BACKEND [REQUESTS]
set -uo pipefail
lib=$(readlink -f "$1") backend=$2 requests=${3:-100000}
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
# redis-tools ships the server as redis-check-rdb, which serves when named redis-server.
ln -s "$(command -v redis-check-rdb)" "$tmp/redis-server"
port=$((20000 + RANDOM % 20000))
keys=50000
fail=0
say() { echo "redis: $*"; }

# A busy machine may take seconds to start it (30 s allowed), and the random port may
# be taken: then the server exits at once and another port is tried.
start() { # PRELOAD
  for _ in 1 2 3; do
    LD_PRELOAD=$1 ALLOCSHIM_VERBOSE=1 "$tmp/redis-server" --port "$port" --bind 127.0.0.1 \
      --save '' --appendonly no --dir "$tmp" >"$tmp/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    port=$((20000 + RANDOM % 20000))
  done
  say "FAIL: server did not start"; cat "$tmp/server.log"; exit 1
}
stop() { redis-cli -p "$port" shutdown nosave >/dev/null 2>&1; wait "$pid" 2>/dev/null; pid=""; }
# Resident memory once the allocator has returned what it holds unused: jemalloc
# otherwise purges on a timer, and a snapshot would measure the timer, not a leak.
# MEMORY PURGE reaches the shim's jemalloc through redis's mallctl calls.
rss_kb() {
  redis-cli -p "$port" memory purge >/dev/null 2>&1
  sleep 0.2
  awk '/^VmRSS/ {print $2}' "/proc/$pid/status"
}
bench() { # prints total requests per second; fails on any error line
  redis-benchmark -p "$port" -n "$requests" -c 20 -r 10000 -d 100 -t set,get,incr,lpush,lpop \
    --csv 2>&1 >"$tmp/bench.csv" | grep -i error && return 1
  awk -F'"' 'NR > 1 {sum += $4} END {printf "%.0f", sum}' "$tmp/bench.csv"
}

# Without the shim, for the record.
start ""
plain_rps=$(bench) || fail=1
stop

start "$lib"
grep -q "^allocshim: $backend .* serves pid $pid" "$tmp/server.log" || { say "FAIL: not served by $backend"; fail=1; }
# Known data first: every key must survive both rounds of load.
for i in $(seq 1 $keys); do printf 'SET key:%d value-%d\r\n' "$i" "$i"; done >"$tmp/load.txt"
pipe=$(redis-cli -p "$port" --pipe <"$tmp/load.txt" 2>&1 | tail -1)
grep -q "errors: 0, replies: $keys" <<<"$pipe" || { say "FAIL: load: $pipe"; fail=1; }
rps1=$(bench) || { say "FAIL: errors in round 1"; fail=1; }
rss1=$(rss_kb)
rps2=$(bench) || { say "FAIL: errors in round 2"; fail=1; }
rss2=$(rss_kb)
for i in 1 777 12345 $keys; do
  [ "$(redis-cli -p "$port" get "key:$i")" = "value-$i" ] || { say "FAIL: key:$i lost"; fail=1; }
done
ours=$(redis-cli -p "$port" --scan --pattern 'key:[0-9]*' | grep -cE '^key:[0-9]{1,5}$')
[ "$ours" -eq $keys ] || { say "FAIL: $ours of $keys keys left"; fail=1; }
stop

growth=$(( (rss2 - rss1) * 100 / rss1 ))
# Growth would be a leak; shrinking is the backend returning memory.
[ "$growth" -le 10 ] || { say "FAIL: resident memory grew ${growth}% between identical rounds"; fail=1; }
say "$((requests * 5)) requests per round, 0 errors, $keys/$keys keys intact"
say "requests/s (sum of 5 tests): without shim $plain_rps, with $backend shim $rps1 then $rps2"
say "resident: ${rss1} kB after round 1, ${rss2} kB after round 2 (${growth}%)"
exit $fail

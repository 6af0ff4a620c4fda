#!/usr/bin/env bash
# examples/kv-server's /metrics as Prometheus reads it. check: the page is HTTP 200 with
# the exposition content type, passes `promtool check metrics` with nothing to say, and
# any other path is 404. scrape: Debian's prometheus scrapes it once a second and
# allocshim_resident_bytes comes back through its query API, positive, with the backend
# label. Both exit 77 (skipped) only when the prometheus package is not installed.
# usage: prometheus.sh check|scrape KV_SERVER BACKEND
set -uo pipefail
mode=$1 server=$2 backend=$3
here=$(dirname "$0")
source "$here/run_lib.sh"
tool=$([ "$mode" = check ] && echo promtool || echo prometheus)
command -v "$tool" >/dev/null || { echo "prometheus: no $tool (Debian's prometheus package)"; exit 77; }
tmp=$(mktemp -d)
kv="" prom=""
# Killed by the PIDs started here, nothing found by name: other builds run the same
# programs at the same time.
trap '[ -n "$prom" ] && kill "$prom" 2>/dev/null; [ -n "$kv" ] && kill "$kv" 2>/dev/null
      wait 2>/dev/null; rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM # ctest's timeout too: through the EXIT trap, not around it
fail() { echo "prometheus: FAIL: $*"; for f in "$tmp"/*.log; do echo "--- $f"; tail -20 "$f"; done; exit 1; }

# GET URL: the status, the content type and the body, on stdout as three parts.
http_get() {
  python3 - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=10)
except urllib.error.HTTPError as e:
    r = e
print(r.status)
print(r.headers.get("Content-Type"))
sys.stdout.write(r.read().decode())
PY
}

# Port 0 for both: the kernel picks free ones and the server prints them, so parallel
# runs never collide. Not through run_with: a function in the background is a subshell,
# and its PID is not the server's, which the trap must kill.
"${runner[@]}" "$server" 0 0 >"$tmp/kv.log" 2>&1 &
kv=$!
for _ in $(seq 300); do
  grep -q 'metrics on' "$tmp/kv.log" && break
  kill -0 "$kv" 2>/dev/null || fail "kv-server exited"
  sleep 0.1
done
kv_port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\),.*/\1/p' "$tmp/kv.log")
metrics_port=$(sed -n 's|.*metrics on http://127.0.0.1:\([0-9]*\)/metrics|\1|p' "$tmp/kv.log")
[ -n "$metrics_port" ] || fail "kv-server printed no metrics port"
# Some keys first, so that the figures are of a server that has done something.
python3 "$here/../../examples/kv-server/client.py" "$kv_port" 500 >"$tmp/client.log" 2>&1 ||
  fail "client.py"

if [ "$mode" = check ]; then
  http_get "http://127.0.0.1:$metrics_port/metrics" >"$tmp/page" || fail "GET /metrics"
  [ "$(sed -n 1p "$tmp/page")" = 200 ] || fail "GET /metrics: $(head -1 "$tmp/page")"
  [ "$(sed -n 2p "$tmp/page")" = "text/plain; version=0.0.4; charset=utf-8" ] ||
    fail "content type $(sed -n 2p "$tmp/page")"
  sed 1,2d "$tmp/page" >"$tmp/metrics"
  cat "$tmp/metrics"
  grep -q "^allocshim_resident_bytes{backend=\"$backend\"} [1-9]" "$tmp/metrics" ||
    fail "no allocshim_resident_bytes for $backend"
  # promtool says nothing and exits 0 when the page is clean; a lint problem is a line.
  lint=$(promtool check metrics <"$tmp/metrics" 2>&1)
  rc=$?
  echo "promtool check metrics: exit $rc${lint:+, said: $lint}"
  if [ $rc -ne 0 ] || [ -n "$lint" ]; then fail "promtool check metrics"; fi
  http_get "http://127.0.0.1:$metrics_port/other" >"$tmp/other" || fail "GET /other"
  [ "$(sed -n 1p "$tmp/other")" = 404 ] || fail "/other is not 404"
  echo "prometheus: check passed"
  exit 0
fi

# scrape: prometheus cannot be told to pick its own port, so a free one is found by
# binding port 0 and letting go; if another process takes it first, prometheus exits
# and the next one is tried.
cat >"$tmp/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: kv-server
    static_configs:
      - targets: ['127.0.0.1:$metrics_port']
YML
promtool check config "$tmp/prometheus.yml" >/dev/null || fail "promtool check config"
for _ in 1 2 3; do
  web=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
    --web.listen-address="127.0.0.1:$web" >"$tmp/prometheus.log" 2>&1 &
  prom=$!
  sleep 1
  kill -0 "$prom" 2>/dev/null && break
  wait "$prom"
  prom=""
done
[ -n "$prom" ] || fail "prometheus did not start"

# Up to 60 s: a loaded machine starts prometheus and its first scrape slowly.
query="http://127.0.0.1:$web/api/v1/query?query=allocshim_resident_bytes"
for _ in $(seq 120); do
  kill -0 "$prom" 2>/dev/null || fail "prometheus exited"
  http_get "$query" 2>/dev/null | sed 1,2d >"$tmp/answer.json"
  # 0: the sample is right; 1: not there yet; 2: there and wrong.
  python3 - "$tmp/answer.json" "$backend" <<'PY'
import json, sys
try:
    result = json.load(open(sys.argv[1]))["data"]["result"]
except (ValueError, KeyError):
    sys.exit(1)
if not result:
    sys.exit(1)
labels, value = result[0]["metric"], result[0]["value"][1]
print(f"prometheus: allocshim_resident_bytes{labels} = {value}")
sys.exit(0 if labels.get("backend") == sys.argv[2] and float(value) > 0 else 2)
PY
  case $? in
  0) echo "prometheus: scrape passed"; exit 0 ;;
  1) sleep 0.5 ;;
  *) fail "wrong sample" ;;
  esac
done
fail "allocshim_resident_bytes did not come back within 60 s"

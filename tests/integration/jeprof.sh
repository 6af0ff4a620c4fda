#!/usr/bin/env bash
# A heap profile written by alloc_profile_dump() is one that jeprof reads, and it
# names the function that allocated most at the top.
# usage: jeprof.sh PROFILED_PROGRAM
set -euo pipefail
prog=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ALLOCSHIM_PROF=1 "$prog" "$tmp/app.heap"
test -s "$tmp/app.heap"
jeprof --text "$prog" "$tmp/app.heap" >"$tmp/report.txt" 2>"$tmp/jeprof.err" || {
  echo "jeprof: FAIL: jeprof rejected the profile"; cat "$tmp/jeprof.err"; exit 1; }
top=$(awk '/^Total:/ {getline; print $NF; exit}' "$tmp/report.txt")
head -4 "$tmp/report.txt"
if [ "$top" != "build_big_cache" ]; then
  echo "jeprof: FAIL: top of the report is '$top', not build_big_cache"; exit 1
fi
# Without ALLOCSHIM_PROF the same program gets a clear refusal, not a file.
if "$prog" "$tmp/off.heap" >"$tmp/off.out"; then echo "jeprof: FAIL: dump succeeded with profiling off"; exit 1; fi
grep -q 'ALLOCSHIM_PROF=1' "$tmp/off.out"
test ! -e "$tmp/off.heap"
echo "jeprof: ok: profile read, build_big_cache on top"

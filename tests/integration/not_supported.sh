#!/usr/bin/env bash
# On the mimalloc backend, asking for heap profiling gets a clear answer and a
# normal run: a "not supported" status, one notice per cause, no file.
# usage: not_supported.sh PROFILED_PROGRAM
set -uo pipefail
prog=$1
. "$(dirname "$0")/run_lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run_with ALLOCSHIM_PROF=1 "$prog" "$tmp/x.heap" >"$tmp/out" 2>"$tmp/err"
rc=$?
fail=0
[ $rc -eq 1 ] || { echo "not-supported: FAIL: exit $rc, want 1 (dump refused, program finished)"; fail=1; }
grep -q '^alloc_profile_dump: -1 (heap profiling is not supported' "$tmp/out" || { echo "not-supported: FAIL: status line: $(cat "$tmp/out")"; fail=1; }
[ "$(grep -c 'not supported on this platform' "$tmp/err")" -eq 1 ] || { echo "not-supported: FAIL: start-up notice"; fail=1; }
[ "$(grep -c 'alloc_profile_dump: heap profiling is not supported' "$tmp/err")" -eq 1 ] || { echo "not-supported: FAIL: dump notice"; fail=1; }
[ ! -e "$tmp/x.heap" ] || { echo "not-supported: FAIL: a file was written"; fail=1; }
cat "$tmp/out" "$tmp/err"
exit $fail

#!/usr/bin/env bash
# Under an emulated 64 KiB-page kernel, the target's own jemalloc (built for smaller
# pages) cannot run a program, while the same program under the shim runs correctly.
# Both halves are asserted: the hazard is real here, and the shim avoids it.
# usage: RUNNER="qemu-aarch64 -p 65536" page_size_regression.sh SHIM JEMALLOC PROGRAM
set -uo pipefail
shim=$1 jemalloc=$2 prog=$3
[ -n "${RUNNER:-}" ] || { echo "regression: needs RUNNER (an emulator with -p)"; exit 2; }
. "$(dirname "$0")/run_lib.sh"

expected=$(run_with "$prog") || { echo "regression: FAIL: $prog fails on its own"; exit 1; }
echo "regression: plain:    $expected"

je_out=$(preloaded "$jemalloc" "$prog" 2>&1)
je_rc=$?
echo "regression: jemalloc: exit $je_rc: $(head -c 200 <<<"$je_out")"
if [ $je_rc -eq 0 ] && [ "$je_out" = "$expected" ]; then
  echo "regression: FAIL: $jemalloc ran fine at this page size; the hazard did not show"
  exit 1
fi

shim_out=$(preloaded "$shim" "$prog" 2>&1)
shim_rc=$?
echo "regression: shim:     exit $shim_rc: $shim_out"
if [ $shim_rc -ne 0 ] || [ "$shim_out" != "$expected" ]; then
  echo "regression: FAIL: the shim did not run the program correctly"
  exit 1
fi
echo "regression: ok: jemalloc fails ($je_rc), allocshim runs it ($RUNNER)"

#!/usr/bin/env bash
# Checked mode must never call one of the backend's own pointers foreign, however the
# backend maps and unmaps: the map_churn program under ALLOCSHIM_CHECK=1 and several
# MALLOC_CONF settings that make jemalloc return memory to the kernel at once.
# usage: map_churn.sh LIBRARY MAP_CHURN THREADS ROUNDS
set -uo pipefail
lib=$(readlink -f "$1") prog=$2 threads=$3 rounds=$4
. "$(dirname "$0")/../integration/run_lib.sh"
fail=0
confs=(retain:false "retain:false,dirty_decay_ms:0,muzzy_decay_ms:0"
  "dirty_decay_ms:0,muzzy_decay_ms:0" "retain:false,narenas:1" "retain:false,hpa:true" "")
# Emulated targets are mimalloc, which reads no MALLOC_CONF (and qemu's -E would split
# its commas): the default once.
[ ${#runner[@]} -eq 0 ] || confs=("")
for conf in "${confs[@]}"; do
  out=$(preloaded "$lib" ALLOCSHIM_CHECK=1 MALLOC_CONF="$conf" "$prog" "$threads" "$rounds" 2>&1)
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "map_churn: MALLOC_CONF=$conf: $(tail -1 <<<"$out")"
  else
    echo "map_churn: FAIL: MALLOC_CONF=$conf: exit $rc"
    tail -5 <<<"$out"
    fail=1
  fi
done
exit $fail

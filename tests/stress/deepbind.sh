#!/usr/bin/env bash
# The php-fpm class of crash: a library opened with RTLD_DEEPBIND (by dlopen, or by
# dlmopen into the base namespace) gets glibc's malloc while the program has the
# preloaded one. Shows it with the raw backend preloaded, and that the shim (which drops
# RTLD_DEEPBIND, saying so once) survives; a new namespace is left alone, and survives.
# usage: deepbind.sh LIBRARY PROCESS_LIFE PLUGIN [RAW_BACKEND]
set -uo pipefail
lib=$(readlink -f "$1") prog=$2 plugin=$(readlink -f "$3") raw=${4:-}
. "$(dirname "$0")/../integration/run_lib.sh"
fail=0
for phase in deepbind deepbind_dlmopen; do
  if [ -n "$raw" ] && [ -e "$raw" ]; then
    preloaded "$raw" "$prog" $phase "$plugin" >/dev/null 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
      echo "$phase: note: $raw survived RTLD_DEEPBIND here"
    else
      echo "$phase: the hazard is real: with $raw preloaded the program dies (exit $rc)"
    fi
  fi
  out=$(preloaded "$lib" "$prog" $phase "$plugin" 2>&1)
  rc=$?
  echo "$out"
  [ $rc -eq 0 ] || { echo "$phase: FAIL: the shim did not survive (exit $rc)"; fail=1; }
  [ "$(grep -c 'RTLD_DEEPBIND dropped' <<<"$out")" -eq 1 ] || { echo "$phase: FAIL: want the notice once"; fail=1; }
  # The opt-out keeps the flag: the shim then does not interfere (and the hazard returns).
  if preloaded "$lib" ALLOCSHIM_DEEPBIND=1 "$prog" $phase "$plugin" >/dev/null 2>&1; then
    echo "$phase: note: with ALLOCSHIM_DEEPBIND=1 the program survived anyway"
  else
    echo "$phase: ALLOCSHIM_DEEPBIND=1 keeps RTLD_DEEPBIND, and with it the crash"
  fi
  # Checked mode turns that crash into a diagnosis that names RTLD_DEEPBIND, where the
  # build has checked mode (check_mode.sh tests which).
  out=$(preloaded "$lib" ALLOCSHIM_DEEPBIND=1 ALLOCSHIM_CHECK=1 "$prog" $phase "$plugin" 2>&1)
  rc=$?
  if grep -q "cannot check pointers" <<<"$out"; then
    echo "$phase: checked mode is not available on this build"
  elif [ $rc -eq 134 ] && grep -q "not allocated by.*RTLD_DEEPBIND" <<<"$out"; then
    echo "$phase: with ALLOCSHIM_CHECK=1 as well, the foreign free is stopped and diagnosed"
  else
    echo "$phase: FAIL: ALLOCSHIM_CHECK=1 did not diagnose the foreign free (exit $rc)"
    fail=1
  fi
done
# A namespace of its own has its own libc and malloc, RTLD_DEEPBIND or not: kept.
out=$(preloaded "$lib" "$prog" dlmopen_newlm "$plugin" 2>&1)
rc=$?
echo "$out"
[ $rc -eq 0 ] || { echo "dlmopen_newlm: FAIL: exit $rc"; fail=1; }
! grep -q 'RTLD_DEEPBIND dropped' <<<"$out" || { echo "dlmopen_newlm: FAIL: the flag was dropped"; fail=1; }
exit $fail

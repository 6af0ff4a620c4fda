#!/usr/bin/env bash
# When another allocator's malloc wins interposition (a preload ahead of the shim, or a
# program with a malloc of its own), the shim's extra entry points hand that
# allocator's blocks back to it, and ALLOCSHIM_VERBOSE says so.
# usage: foreign_malloc.sh LIBRARY EXTRAS EXTRAS_NO_PIE EXTRAS_OWN_MALLOC [OTHER_ALLOCATOR]
set -uo pipefail
lib=$(readlink -f "$1") extras=$2 no_pie=$3 own=$4 other=${5:-}
notice="malloc in this process is not allocshim's"
fail=0
run() { # NAME PRELOAD PROGRAM: runs it verbose; sets out and rc
  out=$(LD_PRELOAD="$2" ALLOCSHIM_VERBOSE=1 "$3" 2>&1)
  rc=$?
  echo "--- $1 (exit $rc)"
  echo "$out"
}

run "the shim alone" "$lib" "$extras"
[ $rc -eq 0 ] || { echo "foreign-malloc: FAIL: the shim's own blocks"; fail=1; }
! grep -q "$notice" <<<"$out" || { echo "foreign-malloc: FAIL: a notice with the shim as malloc"; fail=1; }

# Built without PIE and taking malloc's address, the program holds a stub named malloc
# that dlsym finds first; the malloc behind it is still the shim's (Debian's python3).
# NO_PIE is "none" where the shim cannot tell a stub (not glibc).
if [ "$no_pie" != none ]; then
  run "a program without PIE that takes malloc's address" "$lib" "$no_pie"
  [ $rc -eq 0 ] || { echo "foreign-malloc: FAIL: the shim's blocks in a program without PIE"; fail=1; }
  ! grep -q "$notice" <<<"$out" ||
    { echo "foreign-malloc: FAIL: a program's stub for malloc taken for another allocator"; fail=1; }
else
  echo "foreign-malloc: note: stubs for malloc are told only on glibc; that case not run"
fi

if [ -n "$other" ] && [ -e "$other" ]; then
  run "$(basename "$other") preloaded ahead of the shim" "$other:$lib" "$extras"
  [ $rc -eq 0 ] || { echo "foreign-malloc: FAIL: $(basename "$other")'s blocks in the shim's extras"; fail=1; }
  grep -q "$notice.*$(basename "$other")" <<<"$out" ||
    { echo "foreign-malloc: FAIL: ALLOCSHIM_VERBOSE did not name $(basename "$other")"; fail=1; }
  if [ "$no_pie" != none ]; then
    run "$(basename "$other") ahead of the shim, a program without PIE" "$other:$lib" "$no_pie"
    [ $rc -eq 0 ] && grep -q "$notice.*$(basename "$other")" <<<"$out" ||
      { echo "foreign-malloc: FAIL: behind a program's stub, $(basename "$other") not found"; fail=1; }
  fi
else
  echo "foreign-malloc: note: no other allocator to preload ('$other'); that case not run"
fi

run "a program with its own malloc family" "$lib" "$own"
[ $rc -eq 0 ] || { echo "foreign-malloc: FAIL: the program's own blocks in the shim's extras"; fail=1; }
grep -q "$notice" <<<"$out" || { echo "foreign-malloc: FAIL: ALLOCSHIM_VERBOSE said nothing"; fail=1; }
[ $fail -eq 0 ] && echo "foreign-malloc: ok: the extras forwarded to the malloc that won"
exit $fail

#!/usr/bin/env bash
# Checked mode (ALLOCSHIM_CHECK=1): a foreign pointer, a block already freed, or a
# pointer into the middle of a block, given to free, realloc, malloc_usable_size or
# operator delete, aborts with a message naming the cause, before the backend touches
# it; a correct multi-threaded program runs as before. Without the variable, nothing
# changes.
# usage: check_mode.sh LIBRARY BACKEND FOREIGN TORTURE [RAW_BACKEND]
set -uo pipefail
lib=$(readlink -f "$1") backend=$2 foreign=$3 torture=$4 raw=${5:-}
. "$(dirname "$0")/run_lib.sh"
fail=0
# A build whose backend cannot tell its pointers says so at start-up: nothing to test.
probe=$(preloaded "$lib" ALLOCSHIM_CHECK=1 "$foreign" 2>&1)
if grep -q "cannot check pointers" <<<"$probe"; then
  echo "check_mode: checked mode is not available on this build"
  exit 77
fi
for source in glibc static stack; do
  for op in free realloc usable delete; do
    case $op in
      usable) said=malloc_usable_size ;;
      delete) said=free ;; # operator delete is reported as the free it is
      *) said=$op ;;
    esac
    out=$(preloaded "$lib" ALLOCSHIM_CHECK=1 "$foreign" $source $op 2>&1)
    rc=$?
    if [ $rc -eq 134 ] && grep -q "$said(0x[0-9a-f]*): this pointer was not allocated by $backend" <<<"$out" &&
      ! grep -q survived <<<"$out"; then
      echo "check_mode: $source pointer to $op: aborted with the diagnosis"
    else
      echo "check_mode: FAIL: $source pointer to $op: exit $rc"
      echo "$out"
      fail=1
    fi
  done
done
grep -m1 "Likely causes" <<<"$out" | fold -s -w 100
# Double frees and pointers into a block, of each size: the cause named, not guessed.
# (CHECK_BLOCKS=0: a build that cannot tell them, mimalloc as a shared library.)
blocks=()
if [ "${CHECK_BLOCKS:-1}" = 1 ]; then
  blocks=(freed-{small,medium,large,huge} inside-{small,medium,large,huge})
else
  echo "check_mode: this build cannot tell freed or interior pointers; not tried"
fi
for source in "${blocks[@]}"; do
  case $source in
    freed-*) cause="double free" ;;
    inside-*) cause="a pointer into the middle of a block" ;;
  esac
  for op in free realloc usable delete; do
    case $op in
      usable) said=malloc_usable_size ;;
      delete) said=free ;;
      *) said=$op ;;
    esac
    out=$(preloaded "$lib" ALLOCSHIM_CHECK=1 "$foreign" $source $op 2>&1)
    rc=$?
    if [ $rc -eq 134 ] && grep -q "$said(0x[0-9a-f]*): $cause" <<<"$out" &&
      ! grep -q survived <<<"$out"; then
      echo "check_mode: $source to $op: aborted naming $cause"
    else
      echo "check_mode: FAIL: $source to $op: exit $rc"
      echo "$out"
      fail=1
    fi
  done
done
[ ${#blocks[@]} -gt 0 ] && grep -m1 "middle of a block" <<<"$out" | fold -s -w 100
# jemalloc's page allocator (hpa:true) keeps a freed extent in a cache, still marked
# active in its radix tree: a double free there is named too (mimalloc ignores it).
hpa=()
[ "${CHECK_BLOCKS:-1}" = 1 ] && hpa=(freed-small freed-medium freed-large inside-medium)
for source in "${hpa[@]}"; do
  case $source in
    freed-*) cause="double free" ;;
    inside-*) cause="a pointer into the middle of a block" ;;
  esac
  out=$(preloaded "$lib" ALLOCSHIM_CHECK=1 MALLOC_CONF=hpa:true "$foreign" $source free 2>&1)
  rc=$?
  if [ $rc -eq 134 ] && grep -q "free(0x[0-9a-f]*): $cause" <<<"$out"; then
    echo "check_mode: MALLOC_CONF=hpa:true, $source to free: aborted naming $cause"
  else
    echo "check_mode: FAIL: MALLOC_CONF=hpa:true, $source to free: exit $rc"
    echo "$out"
    fail=1
  fi
done
# What the same mistake does with the raw backend preloaded, for comparison.
if [ -n "$raw" ] && [ -e "$raw" ]; then
  preloaded "$raw" "$foreign" glibc free >/dev/null 2>&1
  echo "check_mode: with $raw preloaded, a glibc pointer to free ends with exit $?"
fi
# What the same mistake does unchecked: whatever the backend does, not our message.
out=$(preloaded "$lib" "$foreign" glibc free 2>&1)
echo "check_mode: unchecked, a glibc pointer to free ends with exit $?"
if grep -q "not allocated by" <<<"$out"; then echo "check_mode: FAIL: checked without asking"; fail=1; fi
# No false alarms: threads, cross-thread frees, every entry point and size class.
if out=$(preloaded "$lib" ALLOCSHIM_CHECK=1 "$torture" 4 20000 2>&1); then
  echo "check_mode: torture under checked mode: $(tail -1 <<<"$out")"
else
  echo "check_mode: FAIL: torture under checked mode"
  echo "$out" | tail -5
  fail=1
fi
exit $fail

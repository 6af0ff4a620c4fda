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
# expect_abort LABEL MESSAGE [NAME=VALUE...] SOURCE OP: the foreign program hands
# SOURCE's pointer to OP under checked mode; it must abort (exit 134) with OP's name and
# MESSAGE, never getting past the call. The output is left in $out.
expect_abort() {
  local label=$1 message=$2
  shift 2
  local source=${*: -2:1} op=${*: -1} said
  local envs=("${@:1:$#-2}")
  case $op in
    usable) said=malloc_usable_size ;;
    delete) said=free ;; # operator delete is reported as the free it is
    *) said=$op ;;
  esac
  out=$(preloaded "$lib" ALLOCSHIM_CHECK=1 "${envs[@]}" "$foreign" "$source" "$op" 2>&1)
  local rc=$?
  if [ $rc -eq 134 ] && grep -q "$said(0x[0-9a-f]*): $message" <<<"$out" &&
    ! grep -q survived <<<"$out"; then
    echo "check_mode: $label: aborted naming $message"
  else
    echo "check_mode: FAIL: $label: exit $rc"
    echo "$out"
    fail=1
  fi
}
# The cause checked mode must name for a freed-* or inside-* pointer.
# On mimalloc a lone large block's span merges into a free span, where no block starts:
# the message says so, with a double free first among the likely causes.
cause_of() {
  case $1 in
    freed-*) echo "double free" ;;
    lone-large) echo "\(double free\|.* at no block it handed out\. Likely causes: a double free\)" ;;
    lone-*) echo "double free" ;;
    *) echo "a pointer into the middle of a block" ;;
  esac
}

for source in glibc static stack; do
  for op in free realloc usable delete; do
    expect_abort "$source pointer to $op" "this pointer was not allocated by $backend" $source $op
  done
done
grep -m1 "Likely causes" <<<"$out" | fold -s -w 100
# Double frees (lone-: the block's neighbour freed first, so that its memory merges
# with free memory around it; jemalloc then clears its entry, which checked mode once
# read through and crashed) and pointers into a block, of each size: the cause named,
# not guessed.
# (CHECK_BLOCKS=0: a build that cannot tell them, mimalloc as a shared library.)
blocks=()
if [ "${CHECK_BLOCKS:-1}" = 1 ]; then
  blocks=(freed-{small,medium,large,huge} lone-{small,medium,large,huge} inside-{small,medium,large,huge})
else
  echo "check_mode: this build cannot tell freed or interior pointers; not tried"
fi
for source in "${blocks[@]}"; do
  for op in free realloc usable delete; do
    expect_abort "$source to $op" "$(cause_of $source)" $source $op
  done
done
[ ${#blocks[@]} -gt 0 ] && grep -m1 "middle of a block" <<<"$out" | fold -s -w 100
# jemalloc's page allocator (hpa:true) keeps a freed extent in a cache, still marked
# active in its radix tree: a double free there is named too (mimalloc ignores it).
hpa=()
[ "${CHECK_BLOCKS:-1}" = 1 ] && hpa=(freed-small freed-medium freed-large inside-medium)
for source in "${hpa[@]}"; do
  expect_abort "MALLOC_CONF=hpa:true, $source to free" "$(cause_of $source)" MALLOC_CONF=hpa:true \
    $source free
done
# A MALLOC_CONF jemalloc stops reading early (a trailing comma, a malformed pair) leaves
# checked mode's own options in force: a double free of a small block is still named.
if [ "${CHECK_BLOCKS:-1}" = 1 ]; then
  # Every allocation sampled (jemalloc then makes each a large block of its own).
  expect_abort "every allocation sampled, lone-small to free" "double free" ALLOCSHIM_PROF=1 \
    ALLOCSHIM_PROF_SAMPLE=1 lone-small free
  for conf in narenas:2, narenas:2,,tcache:true; do
    expect_abort "MALLOC_CONF=$conf, freed-small to free" "double free" MALLOC_CONF=$conf freed-small free
  done
fi
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

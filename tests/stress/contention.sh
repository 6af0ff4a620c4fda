#!/usr/bin/env bash
# The shim against the C library's own malloc on threads contending for it: the same
# program, best of 3 runs each way, must give the same result, and the shim must take
# at most MAX_RATIO of the C library's time (docs/PERFORMANCE.md has the figures).
# usage: contention.sh LIBRARY CONTENTION_PROGRAM THREADS OPS_PER_THREAD MAX_RATIO
set -euo pipefail
lib=$(readlink -f "$1") prog=$2 threads=$3 ops=$4 max_ratio=$5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "contention: FAIL: $*" >&2; exit 1; }

# best NAME [VAR=VALUE...]: the program 3 times; its result line in $tmp/NAME.result,
# the fastest of the three times on stdout.
best() {
  local name=$1 best="" i secs
  shift
  for i in 1 2 3; do
    env "$@" "$prog" "$threads" "$ops" >"$tmp/$name.$i" || fail "$name run $i: exit $?: $(head -1 "$tmp/$name.$i")"
    head -1 "$tmp/$name.$i" >"$tmp/$name.result.$i"
    cmp -s "$tmp/$name.result.1" "$tmp/$name.result.$i" || fail "$name run $i gave another result"
    secs=$(sed -n 2p "$tmp/$name.$i")
    if [ -z "$best" ] || awk -v a="$secs" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$secs; fi
  done
  cp "$tmp/$name.result.1" "$tmp/$name.result"
  echo "$best"
}

libc=$(best libc)
shim=$(best shim LD_PRELOAD="$lib")
cmp -s "$tmp/libc.result" "$tmp/shim.result" ||
  fail "the results differ: '$(cat "$tmp/libc.result")' vs '$(cat "$tmp/shim.result")'"
ratio=$(awk -v s="$shim" -v l="$libc" 'BEGIN { printf "%.3f", s / l }')
echo "contention: $(cut -d' ' -f2-3 "$tmp/libc.result"): C library ${libc}s, shim ${shim}s" \
     "(best of 3), ratio $ratio, allowed $max_ratio"
awk -v r="$ratio" -v m="$max_ratio" 'BEGIN { exit !(r <= m) }' ||
  fail "the shim took $ratio of the C library's time, more than $max_ratio"
echo "contention: ok"

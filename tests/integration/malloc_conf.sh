#!/usr/bin/env bash
# jemalloc's per-program malloc_conf symbol under the shim, with libjemalloc's
# precedence: the shim's defaults, then the program's malloc_conf, then MALLOC_CONF. A
# threshold the user sets holds in arena 0 too, for both its meanings, even when it is
# the shim's own 32 MiB (libjemalloc alone leaves arena 0 at 8 MiB).
# A program's options that jemalloc stops reading early (a trailing comma) do not end
# the user's after them.
# A program's abort_conf:true before its malformed pair, or its invalid value, still
# aborts, whatever MALLOC_CONF says after it, as libjemalloc alone does.
# As root, in a private mount namespace: /etc/malloc.conf comes after the program's
# options and before MALLOC_CONF, and its error under its own abort_conf:false does not
# abort a program whose options set abort_conf:true (libjemalloc checks those first).
# usage: malloc_conf.sh LIBRARY PROGRAM COMMA ABORT INVALID STRICT   (PROGRAM linked
#        to libjemalloc, defining malloc_conf = "narenas:1,oversize_threshold:4194304";
#        COMMA the same with a comma at the end; ABORT "abort_conf:true,bogus", INVALID
#        "abort_conf:true,narenas:abc" and STRICT "abort_conf:true,narenas:2", not
#        linked to it)
set -uo pipefail
lib=$(readlink -f "$1") prog=$2 comma=$3 abort=$4 invalid=$5 strict=$6
fail=0
expect() { # WANT DESCRIPTION [ENV=...]
  local want=$1 what=$2 out
  shift 2
  out=$(env "$@" "${program:-$prog}" 2>/dev/null)
  if [[ $out == "$want from "*liballocshim* ]]; then
    echo "malloc-conf: ok: $what: $out"
  else
    echo "malloc-conf: FAIL: $what: '$out', want '$want' from liballocshim"
    fail=1
  fi
}
# The link's cases, in a mount namespace of our own where /etc is a copy with it added.
link_cases() {
  etc=$(mktemp -d)
  trap 'rm -rf "$etc"' EXIT
  mount --make-rprivate / && cp -a /etc/. "$etc"/ && mount --bind "$etc" /etc || exit 1
  ln -sfn "narenas:3" /etc/malloc.conf
  expect "narenas 3 oversize_threshold 4194304 arena0 4194304" "/etc/malloc.conf over the program's" LD_PRELOAD="$lib"
  expect "narenas 4 oversize_threshold 4194304 arena0 4194304" "MALLOC_CONF over /etc/malloc.conf" LD_PRELOAD="$lib" MALLOC_CONF=narenas:4
  ln -sfn "narenas:bad,abort_conf:false" /etc/malloc.conf
  out=$(LD_PRELOAD="$lib" "$strict" 2>&1)
  rc=$?
  if [ $rc -eq 0 ] && [ "$(grep -c "Invalid conf value: narenas:bad" <<<"$out")" -eq 1 ]; then
    echo "malloc-conf: ok: an error in /etc/malloc.conf, which says abort_conf:false, after the program's abort_conf:true: warned once, no abort"
  else
    echo "malloc-conf: FAIL: an error in /etc/malloc.conf after the program's abort_conf:true: exit $rc: $out"
    fail=1
  fi
}
if [ "${MALLOC_CONF_IN_NS:-}" = 1 ]; then
  link_cases
  exit $fail
fi
raw=$("$prog")
echo "malloc-conf: libjemalloc alone: $raw"
expect "narenas 1 oversize_threshold 4194304 arena0 4194304" "the program's malloc_conf" LD_PRELOAD="$lib"
expect "narenas 3 oversize_threshold 4194304 arena0 4194304" "MALLOC_CONF over it" LD_PRELOAD="$lib" MALLOC_CONF=narenas:3
expect "narenas 1 oversize_threshold 8388608 arena0 8388608" "MALLOC_CONF over both" LD_PRELOAD="$lib" MALLOC_CONF=oversize_threshold:8388608
expect "narenas 1 oversize_threshold 33554432 arena0 33554432" "MALLOC_CONF naming the shim's own value" LD_PRELOAD="$lib" MALLOC_CONF=oversize_threshold:33554432
program=$comma expect "narenas 3 oversize_threshold 4194304 arena0 4194304" \
  "MALLOC_CONF after a comma-ended malloc_conf" LD_PRELOAD="$lib" MALLOC_CONF=narenas:3
# ... and jemalloc still tells the user, as it does without the shim: libjemalloc.so.2,
# linked into the program, reads the same symbol and warns on its own (twice: jemalloc
# reads its options in two passes); the shim's copy must add its own two.
warnings() { grep -c "Conf string ends with comma" <<<"$1"; }
alone=$(warnings "$("$comma" 2>&1 >/dev/null)")
shimmed=$(warnings "$(LD_PRELOAD="$lib" "$comma" 2>&1 >/dev/null)")
if [ "$shimmed" -eq $((alone + 2)) ]; then
  echo "malloc-conf: ok: jemalloc's warning about the comma is kept ($alone without the shim, $shimmed with it)"
else
  echo "malloc-conf: FAIL: jemalloc's warning about the comma: $alone without the shim, $shimmed with it"
  fail=1
fi
for bad in "$abort" "$invalid"; do
  out=$(LD_PRELOAD="$lib" MALLOC_CONF=abort_conf:false "$bad" 2>&1)
  rc=$?
  if [ $rc -eq 134 ] && grep -q "Abort (abort_conf:true)" <<<"$out"; then
    echo "malloc-conf: ok: $(basename "$bad"): abort_conf:true before the error aborts, as libjemalloc does"
  else
    echo "malloc-conf: FAIL: $(basename "$bad"): abort_conf:true before the error: exit $rc: $out"
    fail=1
  fi
done
if [ "$(id -u)" -eq 0 ] && unshare -m true 2>/dev/null; then
  MALLOC_CONF_IN_NS=1 unshare -m bash "$0" "$@" || fail=1
else
  echo "malloc-conf: /etc/malloc.conf cases skipped: they need root and a mount namespace"
fi
exit $fail

#!/usr/bin/env bash
# ALLOCSHIM_* variables (and with mimalloc compiled in, MIMALLOC_*) are read securely:
# a setgid copy of a program, run by an unprivileged user, ignores them, while a plain
# copy obeys. Needs root to make the setgid copy; exits 77 (skipped) otherwise.
# usage: secure_env.sh PROGRAM [KIND]  (PROGRAM linked statically with allocshim; KIND
# jemalloc, mimalloc-inside or mimalloc-shared, as cmake/AllocshimBackend.cmake says)
set -uo pipefail
prog=$1 kind=${2:-jemalloc}
backend=${kind%%-*}
[ "$(id -u)" -eq 0 ] || { echo "secure-env: needs root to create a setgid program; skipped"; exit 77; }
command -v setpriv >/dev/null || { echo "secure-env: setpriv missing; skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -m 1777 "$tmp/out"
cp "$prog" "$tmp/plain"
cp "$prog" "$tmp/setgid"
chgrp root "$tmp/setgid"
chmod 2755 "$tmp/setgid"

run() { # as nobody, with every setting the shim knows
  setpriv --reuid=nobody --regid=nogroup --clear-groups \
    env ALLOCSHIM_VERBOSE=1 ALLOCSHIM_PROF=1 MIMALLOC_VERBOSE=1 MIMALLOC_SHOW_STATS=1 "$1" "$tmp/out/$(basename "$1").heap" >"$tmp/$2.out" 2>"$tmp/$2.err"
}
run "$tmp/plain" plain
plain_rc=$?
run "$tmp/setgid" setgid
setgid_rc=$?
fail=0
if [ "$backend" = mimalloc ]; then
  # mimalloc lists its options on stderr at start-up under MIMALLOC_VERBOSE=1.
  [ $plain_rc -le 1 ] && grep -q 'serves pid' "$tmp/plain.err" && grep -q '^mimalloc: option' "$tmp/plain.err" ||
    { echo "secure-env: FAIL: the plain copy did not obey ALLOCSHIM_* and MIMALLOC_*"; cat "$tmp/plain.out" "$tmp/plain.err"; fail=1; }
  # libmimalloc.so reads MIMALLOC_* itself, before the shim runs (README says so):
  # there only ALLOCSHIM_* is the shim's to refuse.
  mimalloc_said=0
  [ "$kind" = mimalloc-shared ] || ! grep -q '^mimalloc' "$tmp/setgid.err" || mimalloc_said=1
  [ $setgid_rc -le 1 ] && ! grep -q 'serves pid' "$tmp/setgid.err" && [ $mimalloc_said -eq 0 ] ||
    { echo "secure-env: FAIL: the setgid copy obeyed ALLOCSHIM_* or MIMALLOC_*"; cat "$tmp/setgid.out" "$tmp/setgid.err"; fail=1; }
  [ $fail -eq 0 ] && echo "secure-env: ok: plain copy obeyed, setgid copy ignored ALLOCSHIM_VERBOSE$(
    [ "$kind" = mimalloc-shared ] || echo " and MIMALLOC_VERBOSE")"
  exit $fail
fi
fail=0
[ $plain_rc -eq 0 ] && grep -q 'serves pid' "$tmp/plain.err" && [ -s "$tmp/out/plain.heap" ] ||
  { echo "secure-env: FAIL: the plain copy did not obey ALLOCSHIM_*"; cat "$tmp/plain.out" "$tmp/plain.err"; fail=1; }
[ $setgid_rc -ne 0 ] && ! grep -q 'serves pid' "$tmp/setgid.err" && grep -q 'heap profiling is off' "$tmp/setgid.out" &&
  [ ! -e "$tmp/out/setgid.heap" ] ||
  { echo "secure-env: FAIL: the setgid copy obeyed ALLOCSHIM_*"; cat "$tmp/setgid.out" "$tmp/setgid.err"; fail=1; }
[ $fail -eq 0 ] && echo "secure-env: ok: plain copy obeyed, setgid copy ignored ALLOCSHIM_VERBOSE and ALLOCSHIM_PROF"
exit $fail

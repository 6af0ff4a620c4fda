#!/usr/bin/env bash
# tools/allocshim-run refuses what LD_PRELOAD cannot carry or what is not there, rather
# than running the program without the shim: a library path with a space or a colon,
# and a --lib or ALLOCSHIM_LIB that names no file (exit 2 and a message, each).
# usage: allocshim_run.sh ALLOCSHIM_RUN LIBRARY
set -uo pipefail
tool=$1 lib=$(readlink -f "$2")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/dir with space" "$tmp/dir:colon"
cp "$lib" "$tmp/dir with space/liballocshim.so.0"
cp "$lib" "$tmp/dir:colon/liballocshim.so.0"
fail=0
expect() { # WANT_RC WANT_STDERR_REGEX DESCRIPTION [ENV=...] ARGS...
  local want=$1 pattern=$2 what=$3
  shift 3
  local env=()
  while [[ $# -gt 0 && $1 =~ ^[A-Z_]+= ]]; do env+=("$1"); shift; done
  local err rc
  err=$(env "${env[@]}" "$tool" "$@" 2>&1 >/dev/null)
  rc=$?
  if [ $rc -eq "$want" ] && grep -Eq -- "$pattern" <<<"$err"; then
    echo "allocshim-run: ok: $what: exit $rc"
  else
    echo "allocshim-run: FAIL: $what: exit $rc (want $want), stderr: $err"
    fail=1
  fi
}
expect 0 'serves pid' "--lib, a plain path" --lib "$lib" --verbose -- true
expect 3 'serves pid' "the program's exit status passes through" --lib "$lib" --verbose -- sh -c 'exit 3'
expect 2 'space or colon' "--lib with a space" --lib "$tmp/dir with space/liballocshim.so.0" --verbose -- true
expect 2 'space or colon' "--lib with a colon" --lib "$tmp/dir:colon/liballocshim.so.0" --verbose -- true
expect 2 'space or colon' "ALLOCSHIM_LIB with a space" "ALLOCSHIM_LIB=$tmp/dir with space/liballocshim.so.0" --verbose -- true
expect 2 'no such library.*ALLOCSHIM_LIB' "ALLOCSHIM_LIB naming no file" ALLOCSHIM_LIB=/nonexistent/liballocshim.so.0 --verbose -- true
expect 2 'no such library.*--lib' "--lib naming no file" --lib /nonexistent/liballocshim.so.0 --verbose -- true
# A name ending in a newline (which $(...) would drop), a file that is no library, a PIE
# program, and an empty --lib: refused, never run without the shim.
cp "$lib" "$tmp/nl.so
"
printf 'x\n' >"$tmp/text.so"
cp /bin/true "$tmp/program.so"
expect 2 'control character' "--lib ending in a newline" --lib "$tmp/nl.so
" --verbose -- true
expect 2 'not a liballocshim' "--lib naming a text file" --lib "$tmp/text.so" --verbose -- true
expect 2 'not a liballocshim' "--lib naming a program" --lib "$tmp/program.so" --verbose -- true
expect 2 'not a liballocshim' "ALLOCSHIM_LIB naming a program" "ALLOCSHIM_LIB=$tmp/program.so" --verbose -- true
expect 2 '--lib needs a value' "an empty --lib" --lib "" --verbose -- true
expect 2 '--prof-dir needs a value' "--prof-dir with nothing after it" --prof-dir
exit $fail

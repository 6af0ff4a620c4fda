#!/usr/bin/env bash
# Heap profiles of a prebuilt program with no code change: preloaded with
# ALLOCSHIM_PROF=1 and ALLOCSHIM_PROF_SIGNAL=USR2, two signals give two dumps, and
# jeprof puts the function that allocated most at the top. On mimalloc: one clear
# line, and the program runs normally even when the signal comes.
# usage: prof_signal.sh LIBRARY BACKEND SERVER_SIM
set -uo pipefail
lib=$(readlink -f "$1") backend=$2 prog=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; kill "$pid" 2>/dev/null' EXIT
fail() { echo "prof-signal: FAIL: $*"; cat "$tmp/err" 2>/dev/null; exit 1; }

mkfifo "$tmp/in"
LD_PRELOAD=$lib ALLOCSHIM_PROF=1 ALLOCSHIM_PROF_SIGNAL=USR2 ALLOCSHIM_PROF_DIR="$tmp/profiles/run" \
  ALLOCSHIM_PROF_AT_EXIT=1 "$prog" <"$tmp/in" >"$tmp/out" 2>"$tmp/err" &
pid=$!
exec 3>"$tmp/in"
for _ in $(seq 300); do grep -q ready "$tmp/out" && break; sleep 0.1; done
grep -q ready "$tmp/out" || fail "program did not start"

count() { find "$tmp/profiles/run" -name "allocshim.$pid.*.heap" 2>/dev/null | wc -l; }
for n in 1 2; do
  kill -USR2 "$pid"
  [ "$backend" = mimalloc ] && sleep 0.3 && continue # nothing to wait for
  for _ in $(seq 300); do [ "$(count)" -ge "$n" ] && break; sleep 0.1; done
  [ "$backend" = mimalloc ] || [ "$(count)" -ge "$n" ] || fail "no dump $n after signal $n"
done
exec 3>&-
wait "$pid"
rc=$?
[ $rc -eq 0 ] && grep -q done "$tmp/out" || fail "program did not finish normally (exit $rc)"

if [ "$backend" = mimalloc ]; then
  [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q 'not supported on this platform: allocshim uses mimalloc' "$tmp/err" ||
    fail "want exactly one line saying profiling is not supported"
  [ ! -e "$tmp/profiles" ] || fail "profiles directory created on mimalloc"
  echo "prof-signal: ok: mimalloc said '$(cat "$tmp/err")' and ran normally"
  exit 0
fi

[ "$(count)" -eq 3 ] || fail "want 2 signal dumps and 1 at exit, found $(count)"
[ "$(stat -c %a "$tmp/profiles/run")" = 700 ] || fail "profile directory mode is not 0700"
[ ! -s "$tmp/err" ] || fail "unexpected stderr"
first=$(find "$tmp/profiles/run" -name "allocshim.$pid.0.heap")
jeprof --text "$prog" "$first" >"$tmp/report" 2>/dev/null || fail "jeprof rejected $first"
top=$(awk '/^Total:/ {getline; print $NF; exit}' "$tmp/report")
[ "$top" = build_big_cache ] || fail "top of the profile is '$top'"
echo "prof-signal: ok: 2 dumps on USR2 + 1 at exit in a 0700 directory; jeprof top: $top"

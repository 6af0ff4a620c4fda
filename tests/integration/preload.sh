#!/usr/bin/env bash
# Runs real prebuilt programs with and without LD_PRELOAD of the built library and
# requires identical output; then proves the backend, not glibc, served them.
# For a cross build RUNNER is the emulator (e.g. "qemu-aarch64 -p 65536") and only
# the target's own programs run; HOST_PROGRAMS=0 also skips the host's (i686, musl).
# CXX_WORKLOAD "none": the target has no C++ library to build it with (musl).
# usage: preload.sh LIBRARY BACKEND PROBE CXX_WORKLOAD WORKLOAD_PY PAGES
set -euo pipefail
lib=$(readlink -f "$1") backend=$2 probe=$3 cxx=$4 workload=$5 pages=$6
python=/usr/bin/python3
. "$(dirname "$0")/run_lib.sh"
host_programs=${HOST_PROGRAMS:-1}
[ ${#runner[@]} -eq 0 ] || host_programs=0
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say() { echo "preload: $*"; }

plain() { run_with "$@"; }
shimmed() { preloaded "$lib" ALLOCSHIM_VERBOSE=1 "$@"; }

# same NAME CMD...: output and exit status must not change under the shim.
same() {
  local name=$1; shift
  local plain_rc=0 shim_rc=0
  plain "$@" >"$tmp/plain.out" 2>"$tmp/plain.err" || plain_rc=$?
  shimmed "$@" >"$tmp/shim.out" 2>"$tmp/shim.err" || shim_rc=$?
  if [ $plain_rc -ne $shim_rc ] || ! cmp -s "$tmp/plain.out" "$tmp/shim.out"; then
    say "FAIL: $name differs under the shim (exit $plain_rc vs $shim_rc)"
    diff "$tmp/plain.out" "$tmp/shim.out" | head -5 || true
    head -5 "$tmp/shim.err"
    fail=1
    return
  fi
  # The library itself says which backend served the process.
  if ! grep -q "^allocshim: $backend .* serves pid" "$tmp/shim.err"; then
    say "FAIL: $name: no 'allocshim: $backend ... serves' line on stderr"
    fail=1
    return
  fi
  say "ok: $name ($(wc -c <"$tmp/plain.out") bytes of identical output, exit $plain_rc)"
}

if [ "$cxx" != none ]; then
  same "C++ threads/new/delete/std::map/over-aligned" "$cxx"
else
  say "skipped: the C++ workload (no C++ library for this target)"
fi
same "C sizes/alignments/realloc workload" "$pages"
if [ "$host_programs" = 1 ]; then
  same "python3 workload" "$python" "$workload"
  seq 1 200000 | awk '{print ($1 * 7919) % 100003, $1}' >"$tmp/numbers"
  same "sort" sort -n -k1,1 -k2,2 "$tmp/numbers"
  same "perl hash workload" perl -e 'my %h; for my $i (1..300000) { $h{"k$i"} = "v" x ($i % 50) } my $t = 0; $t += length($h{$_}) for keys %h; print "$t\n"'
  same "exit status passes through" sh -c 'exit 7'
  # The shim brings no library into a process but itself (and libmimalloc.so, where the
  # build links it): the jemalloc build brought libm and libgcc_s, which only jemalloc's
  # profiler calls, 410 KiB resident at start (docs/PERFORMANCE.md). Profiling switched
  # on from the caller's environment would open libgcc_s: that is left out here.
  files() { awk '$6 ~ /^\// {print $6}' | sort -u; }
  quiet() { env -u ALLOCSHIM_PROF -u ALLOCSHIM_PROF_LEAKS -u MALLOC_CONF "$@"; }
  quiet cat /proc/self/maps | files >"$tmp/plain.maps"
  LD_PRELOAD=$lib quiet cat /proc/self/maps | files >"$tmp/shim.maps"
  extra=$(comm -13 "$tmp/plain.maps" "$tmp/shim.maps" | grep -v -x -F -e "$lib" |
          grep -v '/libmimalloc\.so' || true)
  if ! grep -q -x -F libc.so.6 <(sed 's|.*/||' "$tmp/plain.maps") ||
     ! grep -q -x -F -e "$lib" "$tmp/shim.maps"; then
    say "FAIL: cat's own maps, or the shim in them, not found: the check saw nothing"
    fail=1
  elif [ -n "$extra" ]; then
    say "FAIL: the shim loads more than itself into cat:" $extra
    fail=1
  else
    say "ok: the shim loads no library but its own"
  fi
fi

# The proof: without the shim the probe must fail, with it the probe must pass.
if plain "$probe" >/dev/null 2>&1; then say "FAIL: probe passes without the shim, it proves nothing"; fail=1; fi
if out=$(shimmed "$probe" 2>&1 | grep -v '^allocshim:'); then say "ok: $out"; else say "FAIL: $out"; fail=1; fi

[ $fail -eq 0 ] && say "all programs behaved identically under $backend"
exit $fail

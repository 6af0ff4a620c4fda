#!/usr/bin/env bash
# Runs real prebuilt programs with and without LD_PRELOAD of the built library and
# requires identical output; then proves the backend, not glibc, served them.
# usage: preload.sh LIBRARY BACKEND PROBE CXX_WORKLOAD WORKLOAD_PY
set -euo pipefail
lib=$(readlink -f "$1") backend=$2 probe=$3 cxx=$4 workload=$5
python=/usr/bin/python3
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say() { echo "preload: $*"; }

# same NAME CMD...: output and exit status must not change under the shim.
same() {
  local name=$1; shift
  local plain_rc=0 shim_rc=0
  "$@" >"$tmp/plain.out" 2>"$tmp/plain.err" || plain_rc=$?
  LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}" ALLOCSHIM_VERBOSE=1 "$@" >"$tmp/shim.out" 2>"$tmp/shim.err" || shim_rc=$?
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

same "python3 workload" "$python" "$workload"
same "C++ threads/new/delete/std::map/over-aligned" "$cxx"
seq 1 200000 | awk '{print ($1 * 7919) % 100003, $1}' >"$tmp/numbers"
same "sort" sort -n -k1,1 -k2,2 "$tmp/numbers"
same "perl hash workload" perl -e 'my %h; for my $i (1..300000) { $h{"k$i"} = "v" x ($i % 50) } my $t = 0; $t += length($h{$_}) for keys %h; print "$t\n"'
same "exit status passes through" sh -c 'exit 7'

# The proof: without the shim the probe must fail, with it the probe must pass.
if "$probe" >/dev/null 2>&1; then say "FAIL: probe passes without the shim, it proves nothing"; fail=1; fi
if out=$(LD_PRELOAD="$lib" "$probe" 2>&1); then say "ok: $out"; else say "FAIL: $out"; fail=1; fi

[ $fail -eq 0 ] && say "all programs behaved identically under $backend"
exit $fail

#!/usr/bin/env bash
# The leak gate (issue 14): `allocshim-run --leaks` and ALLOCSHIM_PROF_LEAKS=1 name the
# function a leak came from and exit 23; a clean program keeps its own status. On
# mimalloc: one "not supported" line, and the program runs as it would.
# The copy linked with the static archive: a setgid copy ignores the setting (as root).
# usage: leak_gate.sh ALLOCSHIM_RUN LIBRARY BACKEND LEAK_GATE LEAK_GATE_STATIC CXX_WORKLOAD
#        EARLY_THREAD (CXX_WORKLOAD "none": no C++ library to build it with; EARLY_THREAD:
#        the library built from tests/integration/early_thread.c)
set -uo pipefail
tool=$1 lib=$(readlink -f "$2") backend=$3 prog=$4 static=$5 cxx=${6:-none} early=${7:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The launcher's private directories go under here, to be seen removed.
export TMPDIR=$tmp/tmp
mkdir -m 0700 "$TMPDIR"
fail=0
bad() { echo "leak-gate: FAIL: $*"; echo "--- stdout:"; cat "$tmp/out"; echo "--- stderr:"; cat "$tmp/err"; fail=1; }
ok() { echo "leak-gate: ok: $*"; }
# run WANT_RC DESCRIPTION COMMAND...: stdout and stderr kept for the checks after it.
run() {
  local want=$1 what=$2
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ $rc -eq "$want" ]; then ok "$what: exit $rc"; else bad "$what: exit $rc, want $want"; fi
}
has() { grep -Eq -- "$2" "$tmp/$1" || bad "$3: no '$2' in $1"; }
lacks() { ! grep -Eq -- "$2" "$tmp/$1" || bad "$3: '$2' in $1"; }
left_behind() { [ -z "$(ls -A "$TMPDIR")" ] || bad "$1: left behind in TMPDIR: $(ls -A "$TMPDIR")"; }

if [ "$backend" = mimalloc ]; then
  for how in launcher env; do
    for mode in leak "clean 3"; do
      want=3
      [ "$mode" != leak ] || want=0 # the leaking program's own status
      if [ $how = launcher ]; then
        run $want "mimalloc, --leaks, $mode" "$tool" --lib "$lib" --leaks -- "$prog" $mode
      else
        run $want "mimalloc, ALLOCSHIM_PROF_LEAKS=1, $mode" \
          env LD_PRELOAD="$lib" ALLOCSHIM_PROF_LEAKS=1 "$prog" $mode
      fi
      [ "$(wc -l <"$tmp/err")" -eq 1 ] || bad "$how, $mode: stderr is not one line"
      has err '^allocshim: leak checking .* is not supported on this platform' "$how, $mode"
      has out '^leak_gate: ' "$how, $mode: the program's output"
    done
  done
  left_behind "mimalloc, --leaks"
  exit $fail
fi

command -v jeprof >/dev/null || { echo "leak-gate: jeprof not found (libjemalloc-dev): SKIP"; exit 77; }

# 1. The launcher on the leaking program: every function named, exit 23, output kept.
run 23 "--leaks, leaking program" "$tool" --lib "$lib" --leaks -- "$prog" leak
has err '^allocshim-run: +leaky_cache_fill$' "--leaks names the leaking function"
has err '^allocshim-run: +main$' "--leaks names its caller"
has err '^allocshim: leak check: [0-9]+ bytes in 1 block from 1 stack still live at exit; exit status 23$' "the shim's summary"
has out '^leak_gate: cache filled with x$' "the program's buffered output survives the gate"
left_behind "--leaks, leaking program"
sed -n '/^allocshim-run:/p' "$tmp/err"

# 2. The launcher on a clean program that prints (stdio's buffer is the C library's):
# its own status, nothing said.
run 3 "--leaks, clean program exiting 3" "$tool" --lib "$lib" --leaks -- "$prog" clean 3
lacks err 'leak' "--leaks, clean program"
has out '^leak_gate: clean' "--leaks, clean program's output"
run 0 "--leaks, clean program exiting 0" "$tool" --lib "$lib" --leaks -- "$prog" clean 0
left_behind "--leaks, clean program"

# 3. ALLOCSHIM_PROF_LEAKS=1 alone: the same verdict; the stacks with the names the shim
# can find, and a profile of them in ALLOCSHIM_PROF_DIR, whose stacks jeprof names.
mkdir -m 0700 "$tmp/prof"
run 23 "ALLOCSHIM_PROF_LEAKS=1, leaking program" \
  env LD_PRELOAD="$lib" ALLOCSHIM_PROF_LEAKS=1 ALLOCSHIM_PROF_DIR="$tmp/prof" "$prog" leak
has err '^allocshim: leak check: blocks still live at exit' "ALLOCSHIM_PROF_LEAKS=1: the stacks"
has err 'exit status 23$' "ALLOCSHIM_PROF_LEAKS=1: the summary"
has out '^leak_gate: cache filled with x$' "ALLOCSHIM_PROF_LEAKS=1: the program's output"
profile=$(find "$tmp/prof" -name 'allocshim.*.heap')
if [ "$(wc -w <<<"$profile")" -ne 1 ]; then
  bad "ALLOCSHIM_PROF_LEAKS=1: want one profile in ALLOCSHIM_PROF_DIR, found: $profile"
else
  has err "jeprof --text PROGRAM $profile" "ALLOCSHIM_PROF_LEAKS=1: the profile's path"
  [ "$(stat -c %a "$profile")" = 600 ] || bad "the profile is not 0600"
  # Only the leak is in it: the stdio buffer and the loader's blocks are left out.
  jeprof --text --show_bytes "$prog" "$profile" >"$tmp/report" 2>/dev/null
  top=$(awk '/^Total:/ {getline; print $NF; exit}' "$tmp/report")
  [ "$top" = leaky_cache_fill ] || bad "jeprof's top function is '$top', not leaky_cache_fill"
  [ "$(grep -c '^ *[1-9][0-9]* .*%.*%.*%' "$tmp/report")" -eq 1 ] ||
    bad "the profile holds more than the leak: $(cat "$tmp/report")"
fi
rm -f "$tmp/prof"/*
run 3 "ALLOCSHIM_PROF_LEAKS=1, clean program exiting 3" \
  env LD_PRELOAD="$lib" ALLOCSHIM_PROF_LEAKS=1 ALLOCSHIM_PROF_DIR="$tmp/prof" "$prog" clean 3
lacks err 'leak' "ALLOCSHIM_PROF_LEAKS=1, clean program"
[ -z "$(ls -A "$tmp/prof")" ] || bad "a clean program left a profile: $(ls -A "$tmp/prof")"

# A clean C++ program: libstdc++ allocates its exception pool, for good, before the
# shim's constructor has opened the profiler's unwinder; that block is the runtime's.
if [ "$cxx" != none ]; then
  run 0 "ALLOCSHIM_PROF_LEAKS=1, clean C++ program" env LD_PRELOAD="$lib" ALLOCSHIM_PROF_LEAKS=1 "$cxx"
  lacks err 'leak' "ALLOCSHIM_PROF_LEAKS=1, clean C++ program"
fi
# A thread that a library's constructor starts, leaking before the shim's constructor has
# opened the unwinder: not the loader's doing, so reported, under the frame that says when.
[ -f "$early" ] || bad "no early_thread library given"
run 23 "ALLOCSHIM_PROF_LEAKS=1, a thread leaking before the shim's constructor" \
  env LD_PRELOAD="$lib $early" ALLOCSHIM_PROF_LEAKS=1 ALLOCSHIM_PROF_DIR="$tmp/prof" "$prog" clean 0
has err 'bytes in 1 block from 1 stack still live at exit' "a thread leaking before the shim's constructor"
profile=$(find "$tmp/prof" -name 'allocshim.*.heap')
[ -n "$profile" ] && jeprof --text "$prog" "$profile" 2>/dev/null |
  grep -q allocshim_sampled_in_thread_before_start ||
  bad "the early thread's leak is not under allocshim_sampled_in_thread_before_start ('$profile')"
rm -f "$tmp/prof"/*

# 4. The private directory is the launcher's own: no other dump may land in it (it
# would be read as leaks, then deleted with the directory).
run 2 "--leaks with --prof-dir" "$tool" --lib "$lib" --leaks --prof-dir "$tmp/prof" -- "$prog" clean 0
has err 'cannot go with it' "--leaks with --prof-dir"
run 2 "--leaks with --prof-at-exit" "$tool" --lib "$lib" --leaks --prof-at-exit -- "$prog" clean 0
has err 'cannot go with it' "--leaks with --prof-at-exit"
run 2 "--leaks with ALLOCSHIM_PROF_SIGNAL" env ALLOCSHIM_PROF_SIGNAL=USR2 "$tool" --lib "$lib" --leaks -- "$prog" clean 0
has err 'cannot go with it' "--leaks with ALLOCSHIM_PROF_SIGNAL"

# A gate that did not look fails: MALLOC_CONF sampling less than every allocation.
run 23 "ALLOCSHIM_PROF_LEAKS=1 with MALLOC_CONF=lg_prof_sample:19" \
  env LD_PRELOAD="$lib" ALLOCSHIM_PROF_LEAKS=1 MALLOC_CONF=lg_prof_sample:19 "$prog" clean 0
has err 'does not sample every allocation.*nothing checked, exit status 23$' "a sampled profile is refused"

# Another thread still writing at exit: glibc's caches stay (freeing them under it would
# corrupt the heap), the gate says why, and the process is not killed by a signal.
for i in 1 2 3; do
  rc=0
  env LD_PRELOAD="$lib" ALLOCSHIM_PROF_LEAKS=1 "$prog" thread >"$tmp/out" 2>"$tmp/err" || rc=$?
  [ $rc -eq 0 ] || [ $rc -eq 23 ] || bad "thread still running at exit: status $rc"
  has err 'threads still running at exit' "thread still running at exit"
  has out '^leak_gate: main returns$' "thread still running at exit: main's output"
done

# 5. Linked with liballocshim.a (the shim's frames are the program's: none skipped, the
# leaking function still in the stacks jeprof names); and as a setgid copy run by
# nobody, the setting is ignored: the program's own status, nothing said or written.
mkdir -m 1777 "$tmp/shared"
run 23 "static archive, ALLOCSHIM_PROF_LEAKS=1, leaking program" \
  env ALLOCSHIM_PROF_LEAKS=1 ALLOCSHIM_PROF_DIR="$tmp/shared" "$static" leak
profile=$(find "$tmp/shared" -name 'allocshim.*.heap')
[ -n "$profile" ] && jeprof --text "$static" "$profile" 2>/dev/null | grep -q leaky_cache_fill ||
  bad "static archive: jeprof does not find leaky_cache_fill in the profile '$profile'"
rm -f "$tmp/shared"/*
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
  chmod 755 "$tmp"
  cp "$static" "$tmp/setgid"
  chgrp root "$tmp/setgid" && chmod 2755 "$tmp/setgid"
  run 0 "setgid copy run by nobody, ALLOCSHIM_PROF_LEAKS=1, leaking program" \
    setpriv --reuid=nobody --regid=nogroup --clear-groups \
    env ALLOCSHIM_PROF_LEAKS=1 ALLOCSHIM_PROF_DIR="$tmp/shared" "$tmp/setgid" leak
  [ ! -s "$tmp/err" ] || bad "the setgid copy said something"
  [ -z "$(ls -A "$tmp/shared")" ] || bad "the setgid copy wrote: $(ls -A "$tmp/shared")"
else
  echo "leak-gate: the setgid case needs root and setpriv: not run"
fi
exit $fail

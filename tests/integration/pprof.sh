#!/usr/bin/env bash
# pprof profiles against the real consumer, go tool pprof: from allocshim-prof --pprof
# and its converter (allocshim-pprof), and from the library itself (.pb.gz names,
# ALLOCSHIM_PROF_FORMAT=pprof). go tool pprof must name the function holding 64 MiB
# first, within 15% of 64 MiB, and no frame of the allocator's; bad input fails with a
# message, never a crash or a file; the converter plugin is loaded only from a place
# no other user can write.
# usage: pprof.sh go        ALLOCSHIM_PROF CONVERTER LIBRARY PPROF_HOLD GO [JEPROF]
#        pprof.sh malformed ALLOCSHIM_PROF CONVERTER LIBRARY PPROF_HOLD
#        pprof.sh inprocess ALLOCSHIM_PROF CONVERTER LIBRARY PPROF_HOLD GO PPROF_HOLD_STATIC
#        pprof.sh plugin    ALLOCSHIM_PROF CONVERTER LIBRARY PPROF_HOLD
#        pprof.sh kvserver  ALLOCSHIM_PROF CONVERTER LIBRARY KV_SERVER GO
# An empty CONVERTER or GO: configure found no protobuf-c/zlib/profile.proto or no go
# (tools/install-deps installs them): skipped (77).
set -uo pipefail
mode=$1 tool=$2 conv=$3 lib=$(readlink -f "$4") prog=$5 go=${6:-} jeprof=${7:-}
plugin=$(dirname "$lib")/allocshim/liballocshim-pprof.so
[ -n "$conv" ] || { echo "pprof: SKIP: allocshim-pprof was not built (no protobuf-c, zlib or profile.proto)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "pprof: FAIL: $*"; exit 1; }

# A real dump: preloaded, sampled at jemalloc's default period, written at exit into a
# directory of this test's own.
dump() {
  LD_PRELOAD=$lib ALLOCSHIM_PROF=1 ALLOCSHIM_PROF_AT_EXIT=1 ALLOCSHIM_PROF_DIR="$tmp/prof" \
    "$prog" >"$tmp/run.out" 2>"$tmp/run.err" || { cat "$tmp/run.err"; fail "the program failed"; }
  heap=$(find "$tmp/prof" -name 'allocshim.*.heap' | head -n 1)
  [ -s "$heap" ] || { cat "$tmp/run.err"; fail "no heap dump written at exit"; }
}

# go tool pprof on PROFILE of PROGRAM: pprof_hold_sixty_four_mib first with 64 MiB
# within 15%, the small allocations there too, and no frame of the allocator's. Sets
# $bytes. go writes its caches nowhere shared; tool pprof needs no network, and
# symbolizes from the binaries on disk (local only, no symbol server asked).
check_top() { # PROGRAM PROFILE
  local prog=$1 pb=$2 flat name
  [ -s "$pb" ] || fail "no profile written at $pb"
  [ "$(head -c 2 "$pb" | od -An -tx1 | tr -d ' ')" = 1f8b ] || fail "$pb is not gzip"
  export HOME="$tmp/home" GOCACHE="$tmp/home/cache" GOPATH="$tmp/home/go" PPROF_TMPDIR="$tmp/home/pprof"
  mkdir -p "$HOME"
  "$go" tool pprof -symbolize=local -top -unit=B -sample_index=inuse_space "$prog" "$pb" \
    >"$tmp/top" 2>"$tmp/top.err" || { cat "$tmp/top.err"; fail "go tool pprof failed"; }
  cat "$tmp/top"
  # The first row under the column heads: "FLATB flat% sum% CUMB cum% NAME".
  read -r flat _ _ _ _ name < <(awk 'p {print; exit} /flat%/ {p = 1}' "$tmp/top")
  [ "$name" = pprof_hold_sixty_four_mib ] || fail "first function is '$name'"
  bytes=${flat%B}
  [[ $bytes =~ ^[0-9]+$ ]] || fail "cannot read the value '$flat'"
  want=$((64 << 20))
  [ "$bytes" -ge $((want * 85 / 100)) ] && [ "$bytes" -le $((want * 115 / 100)) ] ||
    fail "$bytes bytes is not within 15% of $want"
  # Every frame of every stack: none is the shim's or jemalloc's own.
  "$go" tool pprof -symbolize=local -traces "$prog" "$pb" >"$tmp/traces" 2>&1 ||
    { cat "$tmp/traces"; fail "go tool pprof -traces failed"; }
  if grep -E '(^|[[:space:]])(malloc|calloc|_?je_[a-z_]*|imalloc[a-z_]*|_?prof_[a-z_]*|\[liballocshim[^]]*\])$' "$tmp/traces"; then
    fail "the allocator's own frames are in the profile"
  fi
  grep -q pprof_small_noise "$tmp/traces" || fail "the small allocations are missing"
}

case $mode in
go)
  [ -n "$go" ] || { echo "pprof: SKIP: no go (apt-get install golang-go)"; exit 77; }
  dump
  "$tool" --pprof "$tmp/heap.pb.gz" "$prog" "$heap" >"$tmp/conv.out" 2>"$tmp/conv.err" ||
    { cat "$tmp/conv.err"; fail "allocshim-prof --pprof failed"; }
  check_top "$prog" "$tmp/heap.pb.gz"
  # The same figure as jeprof's on the same dump (jeprof unbiases with the same formula).
  if [ -n "$jeprof" ]; then
    jtotal=$("$jeprof" --text --show_bytes "$prog" "$heap" 2>/dev/null |
             awk '$NF == "pprof_hold_sixty_four_mib" {print $1; exit}')
    # jeprof truncates its sums where the converter rounds each stack: 0.1% apart at most.
    [[ $jtotal =~ ^[0-9]+$ ]] || fail "jeprof names no pprof_hold_sixty_four_mib"
    diff=$((jtotal > bytes ? jtotal - bytes : bytes - jtotal))
    [ $diff -le $((bytes / 1000)) ] || fail "jeprof says $jtotal bytes, pprof $bytes"
    echo "pprof: jeprof agrees: $jtotal bytes"
  fi
  echo "pprof: ok: go tool pprof names pprof_hold_sixty_four_mib first, $bytes bytes"
  ;;
malformed)
  dump
  n=$(wc -l <"$heap")
  maps=$(grep -n '^MAPPED_LIBRARIES:' "$heap" | cut -d: -f1)
  : >"$tmp/empty.heap"
  echo "garbage, not a heap profile" >"$tmp/garbage.heap"
  head -c 4000 /dev/urandom >"$tmp/random.heap"
  head -n 1 "$heap" >"$tmp/header-only.heap"
  head -n $((maps - 1)) "$heap" >"$tmp/no-maps.heap"
  awk '/^@/ {print; exit} {print}' "$heap" >"$tmp/stack-no-figures.heap"
  cut=$(($(wc -c <"$heap") / 3))
  while [ "$(head -c $cut "$heap" | tail -c 1 | od -An -tx1 | tr -d ' ')" = 0a ]; do cut=$((cut - 1)); done
  head -c $cut "$heap" >"$tmp/cut-mid-line.heap"
  sed '/^@/s/0x[0-9a-f]*/0xzz/' "$heap" >"$tmp/bad-address.heap"
  sed 's/^  t\*: \([0-9]*\):/  t*: 99999999999999999999999:/' "$heap" >"$tmp/overflow.heap"
  { head -n 2 "$heap"; printf '@ 0x1\0 0x2\n'; } >"$tmp/nul.heap"
  printf 'heap_v2/0\n' >"$tmp/zero-period.heap"
  [ "$n" -gt 5 ] && [ -n "$maps" ] || fail "the real dump is too short to cut"
  for f in "$tmp"/*.heap; do
    rc=0
    "$conv" "$f" "$tmp/out.pb.gz" 2>"$tmp/err" || rc=$?
    case_name=$(basename "$f")
    [ $rc -eq 1 ] || fail "$case_name: exit $rc, not 1"
    grep -q '^allocshim-pprof: ' "$tmp/err" || fail "$case_name: no message"
    [ ! -e "$tmp/out.pb.gz" ] || fail "$case_name: a profile was written"
    ls "$tmp" | grep -q '\.tmp\.' && fail "$case_name: a temporary file was left"
    echo "pprof: $case_name: $(cat "$tmp/err")"
  done
  # Through allocshim-prof: the converter's message is shown, and the tool fails.
  rc=0
  "$tool" --pprof "$tmp/out.pb.gz" "$prog" "$tmp/garbage.heap" >/dev/null 2>"$tmp/err" || rc=$?
  [ $rc -ne 0 ] || fail "allocshim-prof accepted garbage"
  grep -q 'not a jemalloc heap_v2 profile' "$tmp/err" || { cat "$tmp/err"; fail "the converter's message was hidden"; }
  # The whole dump still converts (the cuts above were the only fault).
  "$conv" "$heap" "$tmp/out.pb.gz" || fail "the whole dump did not convert"
  [ "$(head -c 2 "$tmp/out.pb.gz" | od -An -tx1 | tr -d ' ')" = 1f8b ] || fail "not gzip"
  # A dump naming a FIFO as a mapped file (anyone can write a dump): the build ID
  # reader must not open it and wait for a writer forever.
  mkfifo "$tmp/fifo"
  awk -v f="$tmp/fifo" '/^MAPPED_LIBRARIES:/ {print; m = 1; next}
    m && $2 ~ /x/ && !done {$6 = f; done = 1} {print}' "$heap" >"$tmp/fifo.dump"
  grep -q "$tmp/fifo" "$tmp/fifo.dump" || fail "no mapping to point at the FIFO"
  rm -f "$tmp/out.pb.gz"
  timeout 20 "$conv" "$tmp/fifo.dump" "$tmp/out.pb.gz" || fail "a FIFO named in the dump: exit $? (124: it hung)"
  echo "pprof: ok: every malformed input refused with a message"
  ;;
inprocess)
  [ -n "$go" ] || { echo "pprof: SKIP: no go (apt-get install golang-go)"; exit 77; }
  static=$7
  [ -f "$plugin" ] || fail "no converter plugin at $plugin"
  run() { # ENV... -- the program's arguments; the status is left in $rc
    rc=0
    env LD_PRELOAD="$lib" ALLOCSHIM_PROF=1 "$@" >"$tmp/run.out" 2>"$tmp/run.err" || rc=$?
  }
  # 1. The API: a name ending in .pb.gz is a pprof profile.
  run "$prog" "$tmp/api.pb.gz"
  [ $rc -eq 0 ] || { cat "$tmp/run.out" "$tmp/run.err"; fail "alloc_profile_dump(.pb.gz): exit $rc"; }
  check_top "$prog" "$tmp/api.pb.gz"
  echo "pprof: alloc_profile_dump(\"api.pb.gz\"): $bytes bytes"
  # The dump's own allocations (the loader's for the converter, the converter's) are
  # never sampled: with every allocation sampled, one would always show the shim's frames.
  run ALLOCSHIM_PROF_SAMPLE=1 "$prog" "$tmp/every.pb.gz"
  [ $rc -eq 0 ] || { cat "$tmp/run.out" "$tmp/run.err"; fail "alloc_profile_dump, every allocation sampled: exit $rc"; }
  check_top "$prog" "$tmp/every.pb.gz"
  echo "pprof: every allocation sampled: $bytes bytes, none of the dump's own"
  # ... and any other name is jeprof's, as before.
  run "$prog" "$tmp/api.heap"
  [ $rc -eq 0 ] && head -n 1 "$tmp/api.heap" | grep -q '^heap_v2/' || fail "a .heap dump is not jeprof's"
  # 2. At exit, under ALLOCSHIM_PROF_FORMAT=pprof: default names end in .pb.gz. Every
  # allocation sampled here and on the signal, as above.
  run ALLOCSHIM_PROF_SAMPLE=1 ALLOCSHIM_PROF_AT_EXIT=1 ALLOCSHIM_PROF_FORMAT=pprof ALLOCSHIM_PROF_DIR="$tmp/exit" "$prog"
  [ $rc -eq 0 ] || { cat "$tmp/run.err"; fail "the at-exit run failed: $rc"; }
  pb=$(find "$tmp/exit" -name 'allocshim.*.*.pb.gz')
  [ "$(echo "$pb" | wc -w)" -eq 1 ] || { ls -la "$tmp/exit"; fail "not one .pb.gz at exit: $pb"; }
  [ "$(stat -c %a "$pb")" = 600 ] || fail "the at-exit profile is not 0600"
  check_top "$prog" "$pb"
  echo "pprof: at exit: $bytes bytes"
  # 3. On a signal, likewise; the program waits to be killed.
  mkdir -p "$tmp/sig"
  LD_PRELOAD=$lib ALLOCSHIM_PROF=1 ALLOCSHIM_PROF_SAMPLE=1 ALLOCSHIM_PROF_SIGNAL=USR2 ALLOCSHIM_PROF_FORMAT=pprof \
    ALLOCSHIM_PROF_DIR="$tmp/sig" "$prog" --wait >"$tmp/wait.out" 2>"$tmp/wait.err" &
  pid=$!
  for _ in $(seq 200); do grep -q ready "$tmp/wait.out" && break; sleep 0.05; done
  kill -USR2 $pid
  for _ in $(seq 400); do [ -n "$(find "$tmp/sig" -name '*.pb.gz')" ] && break; sleep 0.05; done
  kill $pid; wait $pid 2>/dev/null
  check_top "$prog" "$(find "$tmp/sig" -name 'allocshim.*.*.pb.gz' | head -n 1)"
  echo "pprof: on SIGUSR2: $bytes bytes"
  # 4. A value that is no format: said, and jeprof's format kept.
  run ALLOCSHIM_PROF_AT_EXIT=1 ALLOCSHIM_PROF_FORMAT=protobuf ALLOCSHIM_PROF_DIR="$tmp/bad" "$prog"
  grep -q 'ALLOCSHIM_PROF_FORMAT=protobuf refused' "$tmp/run.err" || { cat "$tmp/run.err"; fail "a bad format was not refused"; }
  [ -n "$(find "$tmp/bad" -name 'allocshim.*.heap')" ] || fail "no jeprof dump after a bad format"
  # 5. A program linked with the static archive: its allocator frames are in its own
  # mapping, so pprof's drop_frames (the entry points' names) leaves them out.
  if [ -n "$static" ]; then
    ALLOCSHIM_PROF=1 ALLOCSHIM_PROF_AT_EXIT=1 ALLOCSHIM_PROF_DIR="$tmp/static" "$static" >/dev/null 2>"$tmp/run.err" ||
      { cat "$tmp/run.err"; fail "the static program failed"; }
    sheap=$(find "$tmp/static" -name 'allocshim.*.heap' | head -n 1)
    "$conv" "$sheap" "$tmp/static.pb.gz" || fail "the static program's dump did not convert"
    check_top "$static" "$tmp/static.pb.gz"
    echo "pprof: static program: $bytes bytes, no allocator frame"
  fi
  echo "pprof: ok: the library writes pprof profiles go tool pprof reads"
  ;;
plugin)
  # A copy of the library and its plugin in a directory of this test's own (mktemp's
  # 0700, under the sticky /tmp): trusted, as the build tree is.
  mkdir -p "$tmp/lib/allocshim"
  cp "$lib" "$tmp/lib/liballocshim.so"
  cp "$plugin" "$tmp/lib/allocshim/"
  copy=$tmp/lib/allocshim/liballocshim-pprof.so
  try() { # EXPECTED_EXIT MESSAGE_PATTERN WHAT
    rm -f "$tmp/out.pb.gz"
    rc=0
    LD_PRELOAD=$tmp/lib/liballocshim.so ALLOCSHIM_PROF=1 "$prog" "$tmp/out.pb.gz" >"$tmp/run.out" 2>"$tmp/run.err" || rc=$?
    [ $rc -eq "$1" ] || { cat "$tmp/run.out" "$tmp/run.err"; fail "$3: exit $rc, not $1"; }
    [ -z "$2" ] || grep -q "$2" "$tmp/run.err" || { cat "$tmp/run.err"; fail "$3: no message '$2'"; }
    if [ "$1" -ne 0 ]; then
      [ ! -e "$tmp/out.pb.gz" ] || fail "$3: a profile was written"
      echo "pprof: $3: $(head -n 1 "$tmp/run.err")"
    fi
  }
  try 0 "" "the trusted copy"
  [ -s "$tmp/out.pb.gz" ] || fail "the trusted copy wrote nothing"
  chmod g+w "$copy"
  try 14 'refusing to load the pprof converter .*writable by its group or others' "a group-writable plugin"
  chmod 755 "$copy"
  chmod o+w "$tmp/lib/allocshim"
  try 14 'refusing to load the pprof converter from .*writable by others and not sticky' "a world-writable directory"
  chmod 755 "$tmp/lib/allocshim"
  if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1; then
    chown nobody "$copy"
    try 14 'owned by another user' "a plugin owned by nobody"
    chown 0 "$copy"
  fi
  # A root process acting as nobody for a while (seteuid, its saved uid still 0) must
  # not take nobody's plugin for its own: that code could take root back.
  if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1; then
    nobody=$(id -u nobody)
    mkdir -p "$tmp/sw/lib/allocshim"
    cp "$lib" "$tmp/sw/lib/liballocshim.so"
    cp "$plugin" "$tmp/sw/lib/allocshim/"
    chown -R "$nobody" "$tmp/sw/lib"
    chmod 755 "$tmp" "$tmp/sw"
    rc=0
    LD_PRELOAD=$tmp/sw/lib/liballocshim.so ALLOCSHIM_PROF=1 "$prog" --euid "$nobody" "$tmp/sw/lib/out.pb.gz" \
      >"$tmp/run.out" 2>"$tmp/run.err" || rc=$?
    [ $rc -eq 14 ] || { cat "$tmp/run.out" "$tmp/run.err"; fail "seteuid(nobody): exit $rc, not 14"; }
    grep -q 'refusing to load the pprof converter from .*owned by uid' "$tmp/run.err" ||
      { cat "$tmp/run.err"; fail "seteuid(nobody): no refusal said"; }
    [ ! -e "$tmp/sw/lib/out.pb.gz" ] || fail "seteuid(nobody): a profile was written"
    echo "pprof: a root process as euid nobody: $(head -n 1 "$tmp/run.err")"
    chmod 700 "$tmp"
  fi
  mv "$copy" "$copy.real"
  ln -s "$copy.real" "$copy"
  try 14 'cannot open the pprof converter' "a symlink in the plugin's place"
  rm "$copy"
  cp "$(dirname "$lib")/allocshim-doctor" "$copy" 2>/dev/null || cp /bin/true "$copy"
  try 11 'cannot load the pprof converter' "a file that is no shared object"
  zlib=$(ldconfig -p | awk '/libz\.so\.1 .*x86-64/ {print $NF; exit}')
  if [ -n "$zlib" ]; then
    cp "$zlib" "$copy"
    try 11 'is not this version.s pprof converter' "a shared object without the entry point"
  fi
  rm -f "$copy"
  # PLUGIN_INSTALL_DIR: where a static program looks, and the shared library second.
  if [ ! -e "${PLUGIN_INSTALL_DIR:?}/liballocshim-pprof.so" ]; then
    try 11 'found neither in' "no plugin"
  fi
  # Without the plugin, jeprof's format is still there.
  rc=0
  LD_PRELOAD=$tmp/lib/liballocshim.so ALLOCSHIM_PROF=1 "$prog" "$tmp/out.heap" >/dev/null 2>&1 || rc=$?
  [ $rc -eq 0 ] && [ -s "$tmp/out.heap" ] || fail "without the plugin a .heap dump failed: $rc"
  echo "pprof: ok: the converter is loaded only from a trusted place"
  ;;
kvserver)
  # The example server (linked with the library, no preload) answers PROFILE pprof
  # with the path of a profile go tool pprof reads, naming the server's own functions.
  [ -n "$go" ] || { echo "pprof: SKIP: no go (apt-get install golang-go)"; exit 77; }
  server=$prog
  mkdir -p "$tmp/kv"
  (cd "$tmp/kv" && ALLOCSHIM_PROF=1 ALLOCSHIM_PROF_SAMPLE=4096 exec "$server" 0 >"$tmp/kv.log" 2>&1) &
  kv=$!
  trap 'kill $kv 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
  for _ in $(seq 300); do grep -q 'listening on' "$tmp/kv.log" && break; sleep 0.1; done
  port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\),.*/\1/p' "$tmp/kv.log")
  [ -n "$port" ] || { cat "$tmp/kv.log"; fail "kv-server printed no port"; }
  python3 - "$port" >"$tmp/reply" <<'PY' || fail "the client failed"
import socket, sys
f = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20).makefile("rw")
def ask(line):
    f.write(line + "\n"); f.flush(); return f.readline().rstrip("\n")
for i in range(20000):
    assert ask(f"SET key{i} {'v' * 1000}") == "OK"
print(ask("PROFILE pprof"))
ask("QUIT")
PY
  read -r ok path <"$tmp/reply"
  [ "$ok" = OK ] || fail "PROFILE pprof answered: $(cat "$tmp/reply")"
  [[ $path == "$tmp/kv/kv-server."*.pb.gz ]] || fail "the reply names $path"
  export HOME="$tmp/home" GOCACHE="$tmp/home/cache" GOPATH="$tmp/home/go" PPROF_TMPDIR="$tmp/home/pprof"
  mkdir -p "$HOME"
  "$go" tool pprof -symbolize=local -top -cum -unit=B -sample_index=inuse_space "$server" "$path" \
    >"$tmp/top" 2>"$tmp/top.err" || { cat "$tmp/top.err"; fail "go tool pprof failed"; }
  cat "$tmp/top"
  # 20000 values of 1001 bytes, copied by strdup (libc's, named from its symbol table:
  # Debian's libc has no debug information): some 20 MB, under the server's main.
  held=$(awk '$NF == "strdup" {print $4; exit}' "$tmp/top")
  held=${held%B}
  [[ $held =~ ^[0-9]+$ ]] && [ "$held" -ge 17000000 ] && [ "$held" -le 30000000 ] ||
    fail "strdup holds '$held' bytes, not some 20 MB"
  awk '$NF == "main" {found = 1} END {exit !found}' "$tmp/top" || fail "no main in the profile"
  echo "pprof: ok: kv-server's PROFILE pprof: strdup holds $held bytes"
  ;;
*) echo "usage: pprof.sh go|malformed|inprocess|plugin|kvserver ..." >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# allocshim-prof --pprof and its converter (allocshim-pprof) against the real consumer:
# go tool pprof names the function holding 64 MiB first, within 15% of 64 MiB, and
# no frame of the shim; bad input fails with a message, never a crash or a file.
# usage: pprof.sh go        ALLOCSHIM_PROF CONVERTER LIBRARY PPROF_HOLD GO [JEPROF]
#        pprof.sh malformed ALLOCSHIM_PROF CONVERTER LIBRARY PPROF_HOLD
# An empty CONVERTER or GO: configure found no protobuf-c/zlib/profile.proto or no go
# (tools/install-deps installs them): skipped (77).
set -uo pipefail
mode=$1 tool=$2 conv=$3 lib=$(readlink -f "$4") prog=$5 go=${6:-} jeprof=${7:-}
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

case $mode in
go)
  [ -n "$go" ] || { echo "pprof: SKIP: no go (apt-get install golang-go)"; exit 77; }
  dump
  "$tool" --pprof "$tmp/heap.pb.gz" "$prog" "$heap" >"$tmp/conv.out" 2>"$tmp/conv.err" ||
    { cat "$tmp/conv.err"; fail "allocshim-prof --pprof failed"; }
  [ -s "$tmp/heap.pb.gz" ] || fail "no profile written"
  # go writes its caches nowhere shared; tool pprof needs no network, and symbolizes
  # from the binaries on disk (local only, no symbol server asked).
  export HOME="$tmp/home" GOCACHE="$tmp/home/cache" GOPATH="$tmp/home/go" PPROF_TMPDIR="$tmp/home/pprof"
  mkdir -p "$HOME"
  "$go" tool pprof -symbolize=local -top -unit=B -sample_index=inuse_space "$prog" "$tmp/heap.pb.gz" \
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
  "$go" tool pprof -symbolize=local -traces "$prog" "$tmp/heap.pb.gz" >"$tmp/traces" 2>&1 ||
    { cat "$tmp/traces"; fail "go tool pprof -traces failed"; }
  if grep -E '(^|[[:space:]])(malloc|calloc|je_[a-z_]*|imalloc[a-z_]*|prof_[a-z_]*|\[liballocshim[^]]*\])$' "$tmp/traces"; then
    fail "the allocator's own frames are in the profile"
  fi
  grep -q pprof_small_noise "$tmp/traces" || fail "the small allocations are missing"
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
*) echo "usage: pprof.sh go|malformed ..." >&2; exit 2 ;;
esac

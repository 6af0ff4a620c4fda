#!/usr/bin/env bash
# allocshim-prof --flame and --base on two dumps of one process (prof_growth): widths are
# shares, the growth names only what grew, bad input and jeprof's failures fail loudly.
# usage: prof_flame.sh flame|base|errors ALLOCSHIM_PROF PROF_GROWTH JEPROF PYTHON3
# An empty JEPROF or PYTHON3: configure found none (tools/install-deps installs both):
# skipped (77).
set -uo pipefail
mode=$1 tool=$2 prog=$3 jeprof=${4:-} python=${5:-}
[ -n "$jeprof" ] || { echo "prof_$mode: SKIP: no jeprof (apt-get install libjemalloc-dev)"; exit 77; }
[ -n "$python" ] || { echo "prof_$mode: SKIP: no python3 (apt-get install python3)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "prof_$mode: FAIL: $*"; exit 1; }
mib=$((1 << 20))

ALLOCSHIM_PROF=1 "$prog" "$tmp/before.heap" "$tmp/after.heap" >"$tmp/run.out" 2>&1 ||
  { cat "$tmp/run.out"; fail "prof_growth failed"; }

# The rectangles of an SVG as "name<TAB>bytes<TAB>width<TAB>x" lines, read with a real
# XML parser (a file it refuses fails the test); names come from the tooltips.
rects() {
  "$python" - "$1" <<'EOF' || fail "the flame graph is not well-formed XML"
import re, sys, xml.etree.ElementTree as ET
ns = "{http://www.w3.org/2000/svg}"
for g in ET.parse(sys.argv[1]).getroot().iter(ns + "g"):
    name, count = re.fullmatch(r"(.*): ([\d,]+) bytes \([\d.]+%\)", g.find(ns + "title").text).groups()
    r = g.find(ns + "rect")
    print(name, count.replace(",", ""), r.get("width"), r.get("x"), sep="\t")
EOF
}
# One field of the rectangle named $2 in the list $1 (field 2: bytes, 3: width).
field() { awk -F'\t' -v n="$2" -v f="$3" '$1 == n {print $f; exit}' "$1"; }
# A - B within P per cent of B, in awk's floating point.
near() { awk -v a="$1" -v b="$2" -v p="$3" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(d <= b * p / 100)}'; }

case $mode in
flame)
  "$tool" --flame "$tmp/flame.svg" "$prog" "$tmp/before.heap" >"$tmp/report" 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "allocshim-prof --flame failed"; }
  cat "$tmp/report"
  rects "$tmp/flame.svg" >"$tmp/rects" || exit 1
  cat "$tmp/rects"
  big_w=$(field "$tmp/rects" flame_sixty_four_mib 3)
  big_b=$(field "$tmp/rects" flame_sixty_four_mib 2)
  all_w=$(field "$tmp/rects" all 3)
  [ -n "$big_w" ] || fail "no rectangle titled flame_sixty_four_mib"
  [ -n "$(field "$tmp/rects" flame_small_side 3)" ] || fail "no rectangle titled flame_small_side"
  near "$big_b" $((64 * mib)) 15 || fail "flame_sixty_four_mib holds $big_b bytes, not 64 MiB +-15%"
  # Its share as jeprof counts it on the same dump, and as the program meant it (64 of 72 MiB).
  read -r total big < <("$jeprof" --text --show_bytes "$prog" "$tmp/before.heap" 2>/dev/null |
    awk '/^Total:/ {t = $2} $NF == "flame_sixty_four_mib" {print t, $1; exit}')
  [[ ${total:-} =~ ^[0-9]+$ && ${big:-} =~ ^[0-9]+$ ]] || fail "jeprof did not name flame_sixty_four_mib"
  frac=$(awk -v a="$big_w" -v b="$all_w" 'BEGIN {printf "%.4f", a / b}')
  share=$(awk -v a="$big" -v b="$total" 'BEGIN {printf "%.4f", a / b}')
  echo "prof_flame: width fraction $frac, jeprof's share $share, meant 64/72 = 0.8889"
  # The renderer's arithmetic is exact; 1% leaves room for the rounding of the printed widths.
  near "$frac" "$share" 1 || fail "width fraction $frac is not jeprof's share $share +-1%"
  near "$frac" 0.8889 15 || fail "width fraction $frac is not 64/72 +-15%"
  # jeprof cut the allocator's frames off the top; its name<address> form is gone.
  if cut -f1 "$tmp/rects" | grep -E '^(_?malloc|calloc|_?je_.*|imalloc.*|prof_.*)$|<[0-9a-f]{16}>'; then
    fail "an allocator frame, or an address suffix, in the flame graph"
  fi
  echo "prof_flame: ok: flame_sixty_four_mib is $frac of the width, $big_b bytes"
  ;;
base)
  "$tool" --base "$tmp/before.heap" --top 5 "$prog" "$tmp/after.heap" >"$tmp/report" 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "allocshim-prof --base failed"; }
  cat "$tmp/report"
  ! grep 'different processes' "$tmp/err" || fail "two dumps of one process taken for two"
  # The first row under "Total: 16.0 MB": "16.0 100.0% 100.0% 16.0 100.0% growth_sixteen_mib".
  read -r flat _ _ _ _ name < <(awk '/^Total:/ {getline; print; exit}' "$tmp/report")
  [ "${name:-}" = growth_sixteen_mib ] || fail "the first function is '${name:-}'"
  near "$flat" 16 15 || fail "growth_sixteen_mib grew by $flat MB, not 16 MiB +-15%"
  # Held in both dumps: no growth, so not listed.
  if grep -E 'flame_sixty_four_mib|flame_small_side' "$tmp/report"; then
    fail "memory held in both dumps is listed as growth"
  fi
  # The growth drawn: the flame graph holds what grew and nothing else.
  "$tool" --base "$tmp/before.heap" --flame "$tmp/growth.svg" "$prog" "$tmp/after.heap" >/dev/null 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "allocshim-prof --base --flame failed"; }
  rects "$tmp/growth.svg" >"$tmp/rects" || exit 1
  grow_b=$(field "$tmp/rects" growth_sixteen_mib 2)
  [ -n "$grow_b" ] || fail "no growth_sixteen_mib in the growth's flame graph"
  near "$grow_b" $((16 * mib)) 15 || fail "the growth's flame graph says $grow_b bytes, not 16 MiB +-15%"
  ! grep -q flame_sixty_four_mib "$tmp/rects" || fail "memory held in both dumps is drawn as growth"
  echo "prof_base: ok: growth_sixteen_mib first, $flat MB; $grow_b bytes drawn"
  ;;
errors)
  echo "garbage, not a heap profile" >"$tmp/bad.heap"
  # expect STATUS STDERR_PATTERN ALLOCSHIM_PROF_ARGS...: the exit status and the message.
  expect() {
    local want=$1 pattern=$2 rc=0
    shift 2
    "$tool" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    if [ "$want" = fail ]; then [ $rc -ne 0 ]; else [ $rc -eq "$want" ]; fi ||
      { cat "$tmp/err"; fail "exit $rc, not $want, for: $*"; }
    grep -q -- "$pattern" "$tmp/err" || { cat "$tmp/err"; fail "no '$pattern' on stderr for: $*"; }
    echo "prof_errors: exit $rc for $*: $(grep -m1 -- "$pattern" "$tmp/err")"
  }
  # jeprof's own words ("header size >= 2**16") reach the user, and its failure is the tool's.
  expect fail 'header size' --flame "$tmp/f.svg" "$prog" "$tmp/bad.heap"
  [ ! -e "$tmp/f.svg" ] || fail "a flame graph was drawn from garbage"
  expect fail 'header size' --base "$tmp/bad.heap" "$prog" "$tmp/after.heap"
  expect fail 'header size' --base "$tmp/before.heap" --flame "$tmp/f.svg" "$prog" "$tmp/bad.heap"
  expect 1 'cannot read the base profile' --base "$tmp/missing.heap" "$prog" "$tmp/after.heap"
  expect 1 'cannot read the base profile' --base "$tmp" "$prog" "$tmp/after.heap"
  expect 2 'converts only' --pprof "$tmp/x.pb.gz" --flame "$tmp/f.svg" "$prog" "$tmp/after.heap"
  expect 2 'go tool pprof -diff_base' --pprof "$tmp/x.pb.gz" --base "$tmp/before.heap" "$prog" "$tmp/after.heap"
  expect 2 '--top is for the text report' --pprof "$tmp/x.pb.gz" --top 3 "$prog" "$tmp/after.heap"
  # A base from another run: jeprof cannot tell, the tool warns (when ASLR moved the
  # program, as it does but where switched off).
  mkdir "$tmp/again"
  ALLOCSHIM_PROF=1 "$prog" "$tmp/again/before.heap" "$tmp/again/after.heap" >/dev/null 2>&1 ||
    fail "prof_growth failed the second time"
  map() { awk '/^MAPPED_LIBRARIES:/ {getline; print $1; exit}' "$1"; }
  if [ "$(map "$tmp/before.heap")" != "$(map "$tmp/again/after.heap")" ]; then
    expect 0 'come from different processes' --base "$tmp/before.heap" "$prog" "$tmp/again/after.heap"
  else
    echo "prof_errors: the two runs were mapped alike (no ASLR): the warning is not tested"
  fi
  echo "prof_errors: ok: jeprof's errors shown, bad combinations refused"
  ;;
*) echo "usage: prof_flame.sh flame|base|errors ..." >&2; exit 2 ;;
esac

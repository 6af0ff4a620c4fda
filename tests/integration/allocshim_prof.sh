#!/usr/bin/env bash
# tools/allocshim-prof on a real profile: the function that allocated most is on top
# of the text report, and the pictures are real SVG and PNG images, also under names
# with spaces; jeprof's errors on a bad profile are shown and fail the tool.
# usage: allocshim_prof.sh TOOL PROFILED_PROGRAM
set -euo pipefail
tool=$1 prog=$2
top_tmp=$(mktemp -d)
trap 'rm -rf "$top_tmp"' EXIT
tmp="$top_tmp/dir with space"
mkdir "$tmp"
ALLOCSHIM_PROF=1 "$prog" "$tmp/app.heap" >/dev/null
"$tool" --top 5 --svg "$tmp/call graph.svg" --png "$tmp/call graph.png" "$prog" "$tmp/app.heap" >"$tmp/report" ||
  { echo "allocshim-prof: FAIL: exit $? with pictures under names with spaces"; exit 1; }
cat "$tmp/report"
top=$(awk '/^Total:/ {getline; print $NF; exit}' "$tmp/report")
[ "$top" = build_big_cache ] || { echo "allocshim-prof: FAIL: top is '$top'"; exit 1; }
[ "$(wc -l <"$tmp/report")" -le 6 ] || { echo "allocshim-prof: FAIL: --top 5 not honoured"; exit 1; }
head -c 8 "$tmp/call graph.png" | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a' || { echo "allocshim-prof: FAIL: not a PNG"; exit 1; }
grep -q '<svg' "$tmp/call graph.svg" && grep -q 'build_big_cache' "$tmp/call graph.svg" || { echo "allocshim-prof: FAIL: SVG"; exit 1; }
if "$tool" "$prog" "$tmp/missing.heap" 2>/dev/null; then echo "allocshim-prof: FAIL: accepted a missing file"; exit 1; fi
echo "garbage, not a heap profile" >"$tmp/bad.heap"
if "$tool" "$prog" "$tmp/bad.heap" >/dev/null 2>"$tmp/bad.err"; then
  echo "allocshim-prof: FAIL: accepted a bad profile"; exit 1
fi
grep -q 'header size' "$tmp/bad.err" ||
  { echo "allocshim-prof: FAIL: jeprof's error was hidden:"; cat "$tmp/bad.err"; exit 1; }
echo "allocshim-prof: ok: report and pictures, names with spaces, jeprof's errors shown"

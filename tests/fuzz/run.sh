#!/usr/bin/env bash
# Runs the harness for a bounded time from the seed corpus (copied: the repository's
# stays as it is) and reports how many inputs it executed.
# usage: run.sh FUZZ_ALLOC SEED_DIR SECONDS
set -euo pipefail
fuzz=$1 seeds=$2 seconds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$seeds"/* "$work"/
"$fuzz" -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=1024 -print_final_stats=1 \
  "$work" 2>"$work.log" || { tail -40 "$work.log"; exit 1; }
grep -E 'stat::number_of_executed_units|Done [0-9]+ runs' "$work.log" | sed 's/^/fuzz: /'
rm -f "$work.log"

#!/usr/bin/env bash
# Runs the torture program under LD_PRELOAD of the shim (natively or under $RUNNER).
# usage: torture.sh LIBRARY TORTURE THREADS OPS
set -euo pipefail
lib=$(readlink -f "$1") prog=$2
read -r -a runner <<<"${RUNNER:-}"
if [ ${#runner[@]} -gt 0 ]; then
  "${runner[@]}" -E LD_PRELOAD="$lib" "$prog" "$3" "$4"
else
  LD_PRELOAD="$lib" "$prog" "$3" "$4"
fi

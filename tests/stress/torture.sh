#!/usr/bin/env bash
# Runs the torture program under LD_PRELOAD of the shim (natively or under $RUNNER).
# usage: torture.sh LIBRARY TORTURE THREADS OPS
set -euo pipefail
lib=$(readlink -f "$1") prog=$2
. "$(dirname "$0")/../integration/run_lib.sh"
preloaded "$lib" "$prog" "$3" "$4"

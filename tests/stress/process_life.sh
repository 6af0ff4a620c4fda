#!/usr/bin/env bash
# One phase of process_life under LD_PRELOAD of the shim; the "early" phase also
# preloads a library whose constructor allocates before the shim's runs.
# usage: process_life.sh LIBRARY PROCESS_LIFE PHASE EARLY_LIB PLUGIN_NAME
set -euo pipefail
lib=$(readlink -f "$1") prog=$2 phase=$3 early=$(readlink -f "$4") plugin=$5
preload=$lib
[ "$phase" != early ] || preload="$lib:$early"
. "$(dirname "$0")/../integration/run_lib.sh"
preloaded "$preload" "$prog" "$phase" "$plugin"

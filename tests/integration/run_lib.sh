# Sourced by the integration and stress scripts: runs a target program natively or
# under $RUNNER (an emulator such as "qemu-aarch64 -p 65536"), where a variable meant
# for the program goes through the emulator's -E (LD_PRELOAD must not reach the
# emulator itself).
read -r -a runner <<<"${RUNNER:-}"

# run_with [NAME=VALUE...] PROGRAM [ARGS...]
run_with() {
  local env=()
  while [[ $# -gt 0 && $1 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; do env+=("$1"); shift; done
  if [ ${#runner[@]} -gt 0 ]; then
    # qemu's -E splits its argument at commas: a value with one goes into the
    # emulator's own environment instead, which the program inherits from it.
    local e opts=() own=()
    for e in "${env[@]}"; do
      if [[ $e == *,* ]]; then own+=("$e"); else opts+=(-E "$e"); fi
    done
    env "${own[@]}" "${runner[@]}" "${opts[@]}" "$@"
  else
    env "${env[@]}" "$@"
  fi
}

# preloaded LIBRARY [NAME=VALUE...] PROGRAM [ARGS...]: with LIBRARY in LD_PRELOAD,
# ahead of whatever was there.
preloaded() {
  local lib=$1
  shift
  run_with LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}" "$@"
}

#!/usr/bin/env bash
# Installs the build into a scratch prefix and builds a consumer against it three
# ways: CMake find_package, pkg-config, and plain cc -lallocshim.
# usage: consumer.sh BUILD_DIR SOURCE_DIR BACKEND [CC [TOOLCHAIN_FILE]]
#   CC and TOOLCHAIN_FILE: the build's own, for a target whose programs this machine
#   runs but whose compiler is not cc (musl-gcc)
set -euo pipefail
build=$1 src=$2 backend=$3 cc=${4:-cc} toolchain=${5:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'liballocshim.so' | head -1)")
c=$src/tests/integration/consumer
fail=0
check() { # NAME PROGRAM
  local out
  if out=$(LD_LIBRARY_PATH=$libdir "$2") && grep -q "served by $backend" <<<"$out"; then
    echo "consumer: ok: $1: $out"
  else
    echo "consumer: FAIL: $1: $out"; fail=1
  fi
}

# A sanitizer build's archive calls the sanitizer's runtime, so its consumers link that
# too (CONSUMER_LDFLAGS, from tests/CMakeLists.txt); empty otherwise.
ldflags=${CONSUMER_LDFLAGS:-}
cmake_args=(-DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_EXE_LINKER_FLAGS="$ldflags")
# A toolchain confines find_package to its own root: the package's directory is named.
[ -z "$toolchain" ] ||
  cmake_args+=(-DCMAKE_TOOLCHAIN_FILE="$toolchain" -Dallocshim_DIR="$libdir/cmake/allocshim")
cmake -S "$c" -B "$tmp/cm" "${cmake_args[@]}" >/dev/null
cmake --build "$tmp/cm" >/dev/null
check "find_package, shared" "$tmp/cm/consumer"
check "find_package, static" "$tmp/cm/consumer_static"

export PKG_CONFIG_PATH=$libdir/pkgconfig
# shellcheck disable=SC2046,SC2086
"$cc" $ldflags -o "$tmp/pc" "$c/main.c" $(pkg-config --cflags --libs allocshim)
check "pkg-config" "$tmp/pc"
# The static archive, with the backend's libraries from Libs.private.
static_libs=$(pkg-config --static --libs-only-l allocshim)
# shellcheck disable=SC2046,SC2086
"$cc" $ldflags -o "$tmp/pc_static" "$c/main.c" $(pkg-config --cflags allocshim) "$libdir/liballocshim.a" \
  ${static_libs//-lallocshim/} -L"$libdir"
check "pkg-config --static" "$tmp/pc_static"
# The program's own functions named as the shim's internal ones: only the export
# list is global in the archive, so nothing is defined twice.
# shellcheck disable=SC2046,SC2086
"$cc" $ldflags -o "$tmp/pc_own_names" "$c/main.c" "$c/own_names.c" $(pkg-config --cflags allocshim) \
  "$libdir/liballocshim.a" ${static_libs//-lallocshim/} -L"$libdir"
check "pkg-config --static, with the program's own check_on and friends" "$tmp/pc_own_names"

# shellcheck disable=SC2086
"$cc" $ldflags -o "$tmp/plain" "$c/main.c" -I"$prefix/include" -L"$libdir" -lallocshim
check "cc -lallocshim" "$tmp/plain"

# The installed allocshim-run knows no build tree: it finds the library and its
# allocshim-doctor only where cmake --install put them.
if out=$("$prefix/bin/allocshim-run" --doctor "$tmp/plain" 2>&1) &&
  grep -q "^allocshim-run: $tmp/plain: preloading will work" <<<"$out"; then
  echo "consumer: ok: installed allocshim-run --doctor: $out"
else
  echo "consumer: FAIL: installed allocshim-run --doctor: $out"; fail=1
fi
exit $fail

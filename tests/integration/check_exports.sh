#!/usr/bin/env bash
# Holds the built library to its documented ABI: the dynamic symbol table equals the
# export list, the header's API is all exported, and NEEDED names only its backend.
# usage: check_exports.sh LIBRARY EXPORTS_TXT HEADER KIND "NAME=FUNCTION;..."
#   KIND: jemalloc, mimalloc-inside or mimalloc-shared (cmake/AllocshimBackend.cmake);
#   the pairs are the entries the link gives straight to a backend function.
set -euo pipefail
lib=$1 exports=$2 header=$3 kind=$4 direct=${5:-}
nm=${NM:-nm} readelf=${READELF:-readelf}
fail=0
say() { echo "exports: $*"; }

symtab=$("$nm" "$lib")
got=$("$nm" -D --defined-only "$lib" | awk '{print $NF}' | sed 's/@.*//' | sort -u)
want=$(sort -u "$exports")
if [ "$got" != "$want" ]; then
  say "FAIL: exported symbols differ from the documented list (< exported, > documented):"
  diff <(echo "$got") <(echo "$want") || true
  fail=1
fi

# Every function declared with ALLOC_API in the public header is exported, and every
# exported alloc_* function is declared there.
api=$(grep -oE 'ALLOC_API [^;]*\balloc_[a-z_]+\(' "$header" | grep -oE 'alloc_[a-z_]+\($' | tr -d '(' | sort -u)
exported_api=$(echo "$got" | grep -E '^alloc_' | sort -u)
if [ "$api" != "$exported_api" ]; then
  say "FAIL: header API and exported alloc_* differ:"
  diff <(echo "$api") <(echo "$exported_api") || true
  fail=1
fi

needed=$("$readelf" -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
say "NEEDED: $(echo $needed)"
case $kind in
  jemalloc)
    # jemalloc is inside the library, renamed; no allocator library is loaded.
    if grep -qE 'jemalloc|mimalloc|tcmalloc' <<<"$needed"; then say "FAIL: jemalloc build needs another allocator library"; fail=1; fi
    if ! grep -qE ' t _mallocx$' <<<"$symtab"; then say "FAIL: jemalloc is not linked in"; fail=1; fi
    if ! grep -qa '<jemalloc>' "$lib"; then say "FAIL: no jemalloc code in the library"; fail=1; fi ;;
  mimalloc-inside)
    if grep -qE 'jemalloc|mimalloc|tcmalloc' <<<"$needed"; then say "FAIL: mimalloc build needs an allocator library"; fail=1; fi
    if ! grep -qE ' [tT] mi_malloc$' <<<"$symtab"; then say "FAIL: mimalloc is not compiled in"; fail=1; fi ;;
  mimalloc-shared)
    if ! grep -qE '^libmimalloc\.so' <<<"$needed"; then say "FAIL: mimalloc build does not need libmimalloc"; fail=1; fi
    if grep -qE 'jemalloc|tcmalloc' <<<"$needed"; then say "FAIL: mimalloc build needs another allocator library"; fail=1; fi ;;
  *) say "unknown backend kind $kind"; exit 2 ;;
esac
case $kind in
  mimalloc*) if grep -qE ' [tT] (je_|_mallocx$)' <<<"$symtab"; then say "FAIL: jemalloc code in a mimalloc build"; fail=1; fi ;;
esac
# Each direct entry is the backend's function itself: the same address.
addr() { awk -v s="$1" '$NF == s {print $1}' <<<"$symtab" | head -1; }
ndirect=0
for pair in ${direct//;/ }; do
  name=${pair%%=*} target=${pair#*=}
  ndirect=$((ndirect + 1))
  if [ -z "$(addr "$name")" ] || [ "$(addr "$name")" != "$(addr "$target")" ]; then
    say "FAIL: $name is not the backend's $target itself"
    fail=1
  fi
done
# The shim itself needs no C++ runtime: C programs must not load one.
if grep -q 'libstdc++' <<<"$needed"; then say "FAIL: libstdc++ is NEEDED"; fail=1; fi

n=$(echo "$got" | wc -l)
if [ $fail -eq 0 ]; then say "$n symbols as documented, backend $kind, $ndirect of them the backend's own"; fi
exit $fail

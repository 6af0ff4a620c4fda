#!/usr/bin/env bash
# Holds the built library to its documented ABI: the dynamic symbol table equals the
# export list, the header's API is all exported, and NEEDED names only its backend.
# usage: check_exports.sh LIBRARY EXPORTS_TXT HEADER BACKEND
set -euo pipefail
lib=$1 exports=$2 header=$3 backend=$4
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
case $backend in
  jemalloc)
    # jemalloc is inside the library, renamed; no allocator library is loaded.
    if grep -qE 'jemalloc|mimalloc|tcmalloc' <<<"$needed"; then say "FAIL: jemalloc build needs another allocator library"; fail=1; fi
    if ! grep -qE ' t _mallocx$' <<<"$symtab"; then say "FAIL: jemalloc is not linked in"; fail=1; fi
    if ! grep -qa '<jemalloc>' "$lib"; then say "FAIL: no jemalloc code in the library"; fail=1; fi
    # The direct entries (cmake/AllocshimBackend.cmake) are jemalloc's own functions:
    # malloc is at _malloc's address, and free, cfree and operator delete are one.
    addr() { awk -v s="$1" '$NF == s {print $1}' <<<"$symtab" | head -1; }
    for pair in malloc:_malloc calloc:_calloc aligned_alloc:_aligned_alloc free:_free \
      _ZdlPv:_free __libc_free:_free; do
      if [ -z "$(addr "${pair%%:*}")" ] || [ "$(addr "${pair%%:*}")" != "$(addr "${pair#*:}")" ]; then
        say "FAIL: ${pair%%:*} is not jemalloc's ${pair#*:} itself"
        fail=1
      fi
    done ;;
  mimalloc)
    if ! grep -qE '^libmimalloc\.so' <<<"$needed"; then say "FAIL: mimalloc build does not need libmimalloc"; fail=1; fi
    if grep -qE 'jemalloc|tcmalloc' <<<"$needed"; then say "FAIL: mimalloc build needs another allocator library"; fail=1; fi
    if grep -qE ' [tT] (je_|_mallocx$)' <<<"$symtab"; then say "FAIL: jemalloc code in a mimalloc build"; fail=1; fi ;;
  *) say "unknown backend $backend"; exit 2 ;;
esac
# The shim itself needs no C++ runtime: C programs must not load one.
if grep -q 'libstdc++' <<<"$needed"; then say "FAIL: libstdc++ is NEEDED"; fail=1; fi

n=$(echo "$got" | wc -l)
if [ $fail -eq 0 ]; then say "$n symbols as documented, backend $backend"; fi
exit $fail

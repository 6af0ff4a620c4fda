#!/usr/bin/env bash
# Holds the built library to its documented ABI: the dynamic symbol table equals the
# export list, the header's API is all exported, every allocation function of the
# target's C and C++ runtimes is exported too, and NEEDED names only its backend; the
# static archive's global names equal the same list.
# usage: check_exports.sh LIBRARY EXPORTS_TXT HEADER KIND "NAME=FUNCTION;..." [ARCHIVE]
#   KIND: jemalloc, mimalloc-inside or mimalloc-shared (cmake/AllocshimBackend.cmake);
#   the pairs are the entries the link gives straight to a backend function.
set -euo pipefail
lib=$1 exports=$2 header=$3 kind=$4 direct=${5:-} archive=${6:-}
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

# The export list is made from src/entries.def, so comparing the library with it alone
# would miss a name the table lacks. The target's C library and C++ runtime are the
# outside witness: every allocation-family function they export at a default version
# (what a program links against; GLIBC_PRIVATE is theirs alone) must be the shim's too.
# TARGET_LIBC, TARGET_LIBSTDCXX: their paths, when the target has them.
family='^(__libc_)?((c|m|re|p?v|aligned_)alloc|reallocarray|(posix_)?memalign|c?free|free_(aligned_)?sized|malloc_[a-z_]+|mallinfo2?|mallopt)$'
runtime_names() { # FILE REGEX: defined functions at their default version
  "$nm" -D --defined-only "$1" | awk '$2 ~ /^[TWi]$/ && $3 ~ /@@/ && $3 !~ /@@GLIBC_PRIVATE$/ {sub(/@@.*/, "", $3); print $3}' |
    grep -E "$2" | sort -u
}
for pair in "${TARGET_LIBC:-}|$family" "${TARGET_LIBSTDCXX:-}|^_Z(nw|na|dl|da)"; do
  file=${pair%%|*} re=${pair#*|}
  [ -n "$file" ] || continue
  theirs=$(runtime_names "$file" "$re")
  if [ -z "$theirs" ]; then say "FAIL: no allocation functions read from $file"; fail=1; continue; fi
  missing=$(comm -23 <(echo "$theirs") <(echo "$got"))
  if [ -n "$missing" ]; then
    say "FAIL: $(basename "$file") exports allocation functions the shim does not: $(echo $missing)"
    fail=1
  else
    say "all $(echo "$theirs" | wc -l) allocation functions of $(basename "$file") are the shim's too"
  fi
done

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
# pprof's converter is a plugin loaded on the first pprof dump (src/pprof.c): a process
# that never asks for one must not load protobuf-c or zlib at start.
if grep -Eq 'libprotobuf-c|libz\.' <<<"$needed"; then say "FAIL: the pprof converter's libraries are NEEDED"; fail=1; fi

# A program linked with the static archive meets its global names as its own would
# meet another object's: any beyond the export list (an internal check_on, jemalloc's
# renamed _malloc) would collide with a name of the program's. The archive's one
# object carries all its own code, so no name is global for the sake of a reference
# from another member. The one exception is a COMDAT group's signature (i686's
# __x86.get_pc_thunk.*): the link keeps one group of each name across the program and
# may keep the program's copy, so the name must stay global for the archive's
# references to reach it (cmake/AllocshimLocalize.cmake).
if [ -n "$archive" ]; then
  archived=$("$nm" -g --defined-only "$archive" | awk 'NF >= 2 && $(NF-1) ~ /^[A-Za-z]$/ {print $NF}' | sort -u)
  groups=$("$readelf" -gW "$archive" | sed -n 's/.*\[\([^]]*\)\] contains.*/\1/p')
  want_archive=$(printf '%s\n%s\n' "$want" "$groups" | sed '/^$/d' | sort -u)
  if [ "$archived" != "$want_archive" ]; then
    say "FAIL: the archive's global symbols differ from the documented list (< archive, > documented):"
    diff <(echo "$archived") <(echo "$want_archive") | head -40 || true
    say "$(comm -23 <(echo "$archived") <(echo "$want_archive") | wc -l) global in the archive but not documented"
    fail=1
  else
    say "$(echo "$archived" | wc -l) global symbols in the archive, as documented ($(echo $groups | wc -w) of them COMDAT signatures)"
  fi
fi

n=$(echo "$got" | wc -l)
if [ $fail -eq 0 ]; then say "$n symbols as documented, backend $kind, $ndirect of them the backend's own"; fi
exit $fail

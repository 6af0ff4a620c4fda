#!/usr/bin/env bash
# allocshim-run's check before it execs, one kind of program per run: the fixture is
# built here with the compiler the case needs, and a case that cannot be built is SKIP.
# usage: allocshim_run_doctor.sh ALLOCSHIM_RUN LIBRARY BACKEND CC CASE
#   CASE: plain script static setuid musl i686 jemalloc tcmalloc own_malloc, and glibc (a
#   host program given a musl build's library; CC is then musl-gcc)
set -uo pipefail
tool=$1 lib=$(readlink -f "$2") backend=$3 cc=$4 case=$5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # the set-user-ID fixture belongs to nobody, who must reach it
fail=0
skip() { echo "allocshim-run-doctor: SKIP: $case: $*"; exit 77; }

# The fixture allocates, says so on stdout, and exits with its first argument.
cat >"$tmp/fixture.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
  char *p = malloc(64);
  printf("ran %s\n", p ? "ok" : "no memory");
  free(p);
  return argc > 1 ? atoi(argv[1]) : 0;
}
EOF
# The smallest malloc family a program may define, exported as ld exports a symbol that
# a shared library (libc) also defines.
cat >"$tmp/own.c" <<'EOF'
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static _Alignas(16) char arena[1 << 20];
static size_t used;
void *malloc(size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (n > sizeof arena - used)
    return NULL;
  used += n;
  return arena + used - n;
}
void free(void *p) { (void)p; }
void *calloc(size_t a, size_t b) { void *p = b && a > (size_t)-1 / b ? NULL : malloc(a * b); return p ? memset(p, 0, a * b) : p; }
void *realloc(void *p, size_t n) { void *q = malloc(n); if (p && q) memcpy(q, p, n); return q; }
int main(int argc, char **argv) {
  printf("ran %s\n", malloc(64) ? "ok" : "no memory");
  return argc > 1 ? atoi(argv[1]) : 0;
}
EOF
build() { # OUTPUT COMPILER ARGS...: builds or skips, saying why
  local out=$1 compiler=$2
  shift 2
  command -v "$compiler" >/dev/null || skip "$compiler is not installed (tools/install-deps installs it)"
  "$compiler" -o "$out" "$@" >"$tmp/build.log" 2>&1 || skip "$compiler could not build the fixture: $(tail -3 "$tmp/build.log")"
}

# expect WANT_RC PATTERN DESCRIPTION ARGS...: allocshim-run's exit status, and its
# stdout and stderr together matched against an extended regular expression. A run that
# blocks is stopped after 60 s (exit 124).
expect() {
  local want=$1 pattern=$2 what=$3
  shift 3
  out=$(timeout 60 "$tool" "$@" 2>&1)
  rc=$?
  if [ $rc -eq "$want" ] && grep -Eq -- "$pattern" <<<"$out"; then
    echo "allocshim-run-doctor: ok: $case: $what: exit $rc"
  else
    echo "allocshim-run-doctor: FAIL: $case: $what: exit $rc (want $want, output to match '$pattern'):"
    echo "$out"
    fail=1
  fi
}
# refute PATTERN DESCRIPTION: the last expect's output must not match.
refute() {
  if grep -Eq -- "$1" <<<"$out"; then
    echo "allocshim-run-doctor: FAIL: $case: $2: output matched '$1':"
    echo "$out"
    fail=1
  fi
}
serves="^allocshim: $backend .* serves pid"

# A refused program: --doctor and a plain run both exit 2 without running it.
refused() { # PROGRAM PATTERN
  expect 2 "$2" "--doctor refuses" --doctor "$1"
  expect 2 "not running .*--force runs it anyway" "a run is refused" --verbose "$1" 5
  refute '^ran ' "the refused program did not run"
}

case $case in
plain)
  build "$tmp/plain" "$cc" "$tmp/fixture.c"
  expect 0 "^allocshim-run: $tmp/plain: preloading will work \(.*, dynamically linked\)$" \
    "--doctor passes it" --doctor "$tmp/plain"
  expect 5 "$serves" "it runs served, its exit status its own" --verbose "$tmp/plain" 5
  refute '^allocshim-run:' "nothing said of a program that passes"
  # Found through PATH as exec finds it, and named so in the verdict.
  PATH="$tmp:$PATH" expect 0 "^allocshim-run: $tmp/plain: preloading will work" \
    "a bare name found through PATH" --doctor plain
  expect 127 "no-such-program-here: not found in PATH" "a name not in PATH" --doctor no-such-program-here
  expect 2 "takes the program alone" "--doctor with arguments" --doctor "$tmp/plain" 5
  # A library of the right kind that is not allocshim: refused, with or without a trial
  # on true (a musl build's has none on a glibc system).
  printf 'int not_allocshim(void) { return 1; }\n' >"$tmp/other.c"
  build "$tmp/other.so" "$cc" -shared -fPIC "$tmp/other.c"
  expect 2 "not a liballocshim" "a library that is not allocshim" --lib "$tmp/other.so" "$tmp/plain"
  refute '^ran ' "the program did not run without the shim"
  # A FIFO is never opened (that would block for ever), nor a device: not checked.
  mkfifo "$tmp/fifo"
  expect 3 "$tmp/fifo is not a regular file: not checked" "a FIFO is not opened" --doctor "$tmp/fifo"
  # The dynamic loader has no interpreter but honours LD_PRELOAD: not called static.
  for loader in /lib64/ld-linux-*.so.* /lib/ld-linux-*.so.* /lib/ld-musl-*.so.1 ""; do
    [ ! -e "$loader" ] || break
  done
  if [ -n "$loader" ]; then
    expect 3 "is the dynamic loader: LD_PRELOAD acts on the program it is given" \
      "the loader is not called static" --doctor "$loader"
  fi
  ;;
script)
  build "$tmp/plain" "$cc" "$tmp/fixture.c"
  printf '#!/usr/bin/env plain\n' >"$tmp/via-env"
  printf '#!%s\n' "$tmp/plain" >"$tmp/direct"
  chmod +x "$tmp/via-env" "$tmp/direct"
  PATH="$tmp:$PATH" expect 0 "is a script: its interpreter $tmp/plain is what LD_PRELOAD acts on.*
.*$tmp/plain: preloading will work" "#!/usr/bin/env plain: the interpreter through PATH" --doctor "$tmp/via-env"
  expect 0 "$serves" "the script runs with its interpreter served" --verbose "$tmp/direct"
  if "$cc" -static -o "$tmp/static" "$tmp/fixture.c" >"$tmp/build.log" 2>&1; then
    printf '#!%s\n' "$tmp/static" >"$tmp/static-script"
    chmod +x "$tmp/static-script"
    expect 2 "is a script.*
.*$tmp/static is statically linked" "a script whose interpreter is static" --doctor "$tmp/static-script"
  else
    echo "allocshim-run-doctor: note: $case: no static fixture (gcc -static failed), that part not run"
  fi
  ;;
static)
  build "$tmp/static" "$cc" -static "$tmp/fixture.c"
  refused "$tmp/static" "$tmp/static is statically linked \(no program interpreter\): LD_PRELOAD cannot work on it.*linking it with -lallocshim"
  # --force runs it (exit status its own); the shim cannot be in a static program.
  expect 5 '^ran ok$' "--force runs it anyway" --force --verbose "$tmp/static" 5
  refute "$serves" "no shim in a static program, as the refusal said"
  ;;
setuid)
  [ "$(id -u)" -eq 0 ] || skip "making a program set-user-ID to another user needs root"
  id nobody >/dev/null || skip "no user nobody"
  build "$tmp/plain" "$cc" "$tmp/fixture.c"
  cp "$tmp/plain" "$tmp/suid" && chown nobody "$tmp/suid" && chmod 4755 "$tmp/suid"
  # On a nosuid file system the bits mean nothing, and the doctor says so.
  if "$tool" --doctor "$tmp/suid" | grep -q 'mounted nosuid'; then
    skip "$tmp is on a file system mounted nosuid"
  fi
  refused "$tmp/suid" "$tmp/suid is set-user-ID \(to nobody\): the loader will ignore LD_PRELOAD unless the library is installed in a trusted directory and marked setuid \(ld\.so\(8\)"
  # --force runs it, and the loader does drop the preload, as the refusal said.
  expect 5 '^ran ok$' "--force runs it anyway" --force --verbose "$tmp/suid" 5
  refute "$serves" "the loader ignored LD_PRELOAD, as the refusal said"
  # Set-group-ID to a group not ours: secure execution too.
  grp=$(getent group nogroup | cut -d: -f1)
  if [ -n "$grp" ]; then
    cp "$tmp/plain" "$tmp/sgid" && chgrp "$grp" "$tmp/sgid" && chmod 2755 "$tmp/sgid"
    expect 2 "$tmp/sgid is set-group-ID \(to $grp\)" "set-group-ID to $grp" --doctor "$tmp/sgid"
  fi
  # Set-user-ID to ourselves changes no id: no secure execution, the shim serves.
  cp "$tmp/plain" "$tmp/suid-self" && chmod 4755 "$tmp/suid-self"
  expect 0 "preloading will work" "set-user-ID to the running user passes" --doctor "$tmp/suid-self"
  expect 0 "$serves" "and runs served" --verbose "$tmp/suid-self"
  ;;
musl)
  build "$tmp/musl" musl-gcc "$tmp/fixture.c"
  refused "$tmp/musl" "$tmp/musl cannot take this library, so LD_PRELOAD cannot work on it: program is [0-9]+-bit [^,]*, musl; liballocshim is [0-9]+-bit .*, glibc$"
  ;;
glibc)
  build "$tmp/glibc" gcc "$tmp/fixture.c"
  refused "$tmp/glibc" "$tmp/glibc cannot take this library, so LD_PRELOAD cannot work on it: program is [0-9]+-bit [^,]*, glibc; liballocshim is [0-9]+-bit .*, musl$"
  ;;
i686)
  build "$tmp/i686" i686-linux-gnu-gcc "$tmp/fixture.c"
  refused "$tmp/i686" "$tmp/i686 cannot take this library, so LD_PRELOAD cannot work on it: program is 32-bit x86 \(i386\), glibc; liballocshim is 64-bit .*, glibc$"
  ;;
jemalloc | tcmalloc)
  if [ "$case" = jemalloc ]; then
    build "$tmp/linked" "$cc" "$tmp/fixture.c" -ljemalloc
    soname=libjemalloc.so.2
  else
    tc=$(ldconfig -p | awk '/libtcmalloc_minimal\.so\.4 .*x86-64|libtcmalloc_minimal\.so\.4 \(libc6\)/ {print $NF; exit}')
    [ -n "$tc" ] || skip "no libtcmalloc_minimal.so.4 (Debian's libtcmalloc-minimal4)"
    build "$tmp/linked" "$cc" "$tmp/fixture.c" "$tc"
    soname=libtcmalloc_minimal.so.4
  fi
  if [ "$case" = "$backend" ]; then
    # The shim carries that allocator's own API: one allocator, said only by --doctor.
    expect 0 "links $soname, but liballocshim serves $case's API itself" "--doctor: one allocator" \
      --doctor "$tmp/linked"
    expect 3 "$serves" "runs served" --verbose "$tmp/linked" 3
    refute '^allocshim-run:' "nothing said when running"
  else
    expect 1 "$tmp/linked links $soname: two allocators will run, $case and liballocshim's $backend" \
      "--doctor warns, naming both" --doctor "$tmp/linked"
    expect 3 "two allocators will run" "a run warns" --verbose "$tmp/linked" 3
    grep -Eq "$serves" <<<"$out" && grep -q '^ran ok$' <<<"$out" ||
      { echo "allocshim-run-doctor: FAIL: $case: the warned program did not run served: $out"; fail=1; }
  fi
  ;;
own_malloc)
  build "$tmp/own" "$cc" -fno-builtin "$tmp/own.c"
  expect 1 "$tmp/own defines malloc itself: two allocators will run, the program's own malloc .* and liballocshim's $backend" \
    "--doctor warns, naming both" --doctor "$tmp/own"
  expect 4 "two allocators will run" "a run warns and runs it" --verbose "$tmp/own" 4
  grep -Eq "$serves" <<<"$out" && grep -q '^ran ok$' <<<"$out" ||
    { echo "allocshim-run-doctor: FAIL: $case: the warned program did not run with the shim: $out"; fail=1; }
  ;;
*)
  echo "allocshim-run-doctor: unknown case $case"
  exit 2
  ;;
esac
exit $fail

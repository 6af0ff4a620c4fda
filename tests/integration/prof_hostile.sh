#!/usr/bin/env bash
# Heap profiles of a root process against a hostile local user (nobody): the profile
# directory is trusted like OpenSSH's StrictModes or refused with one line, a racing
# attacker never gets a root-owned file overwritten, and an explicit path replaces only
# a regular file of the caller's. On mimalloc: every dump is ALLOC_ENOTSUP and touches
# nothing, attacker or not. Needs root; exits 77 (skipped) otherwise.
# usage: prof_hostile.sh BACKEND DUMPER ATTACKER   (integration/prof_dumper.c, prof_attacker.c)
set -uo pipefail
backend=$1 dumper=$2 attacker=$3
[ "$(id -u)" -eq 0 ] || { echo "prof-hostile: needs root (the attacker runs as nobody); skipped"; exit 77; }
command -v setpriv >/dev/null || { echo "prof-hostile: FAIL: setpriv (util-linux) is needed"; exit 1; }
nobody_uid=$(id -u nobody) nobody_gid=$(id -g nobody) || { echo "prof-hostile: FAIL: no user nobody"; exit 1; }
tmp=$(mktemp -d)
apid=
trap '[ -n "$apid" ] && kill "$apid" 2>/dev/null; rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # nobody must reach the shared directory below
fails=0
bad() { echo "prof-hostile: FAIL: $*"; sed 's/^/  | /' "$tmp/out" "$tmp/err" 2>/dev/null | head -20; fails=$((fails + 1)); }
ok() { echo "prof-hostile: ok: $*"; }
as_nobody() { setpriv --reuid="$nobody_uid" --regid="$nobody_gid" --clear-groups "$@"; }

victim=$tmp/victim # root's, 0644: what the attacker wants overwritten
printf precious >"$victim"
chmod 644 "$victim"
intact() { [ ! -L "$victim" ] && [ "$(cat "$victim")" = precious ]; }
pub=$tmp/pub # a world-writable sticky directory, like /tmp or /var/tmp
mkdir -m 1777 "$pub"
safe=$tmp/safe # root's own
mkdir -m 755 "$safe"

# dump ENV=... -- COUNT PATH: the dumper as root, with profiling on.
dump() {
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  env ALLOCSHIM_PROF=1 "${envs[@]}" "$dumper" "$@" >"$tmp/out" 2>"$tmp/err"
}
# attack DIR SECONDS [NAME...]: the attacker as nobody, in the background, once ready.
attack() {
  local dir=$1 secs=$2
  shift 2
  # setpriv itself, not the function: $! must be the attacker's pid, not a subshell's
  setpriv --reuid="$nobody_uid" --regid="$nobody_gid" --clear-groups "$attacker" "$dir" "$victim" "$secs" "$@" \
    >"$tmp/attacker.out" 2>&1 &
  apid=$!
  for _ in $(seq 600); do grep -q ready "$tmp/attacker.out" && return; sleep 0.05; done
}
stop_attack() { kill "$apid" 2>/dev/null; wait "$apid" 2>/dev/null; apid=; }

if [ "$backend" = mimalloc ]; then
  as_nobody mkdir -m 777 "$pub/prof"
  attack "$pub/prof" 30
  dump ALLOCSHIM_PROF_DIR="$pub/prof/new" ALLOCSHIM_PROF_AT_EXIT=1 -- 5 -
  rc=$?
  dump -- 5 "$pub/prof/x.heap"
  rc2=$?
  stop_attack
  # ENOTSUP and EOPNOTSUPP are one value on Linux; strerrorname_np says the latter
  if [ $rc -eq 0 ] || [ $rc2 -eq 0 ] || [ "$(grep -cE ' -1 (ENOTSUP|EOPNOTSUPP)$' "$tmp/out")" -ne 5 ]; then bad "mimalloc: want ALLOC_ENOTSUP"
  elif [ -n "$(find "$pub" -mindepth 1 -user root)" ] || [ -e "$pub/prof/new" ] || ! intact; then bad "mimalloc: a dump touched the file system"
  else ok "mimalloc: every dump ALLOC_ENOTSUP, nothing created, victim intact"; fi
  exit $((fails > 0))
fi

# 1. The README's "/var/tmp/<app>" profile directory, made first by the attacker, who
#    then swaps every name that appears in it for a symlink to the victim.
as_nobody mkdir -m 777 "$pub/prof"
attack "$pub/prof" 30
dump ALLOCSHIM_PROF_DIR="$pub/prof" -- 50 -
rc=$?
stop_attack
if ! intact; then bad "1: the victim was overwritten through $pub/prof"
elif [ $rc -eq 0 ] || [ "$(grep -c EPERM "$tmp/out")" -ne 50 ]; then bad "1: dumps into the attacker's directory did not fail with EPERM"
elif [ -n "$(find "$pub/prof" -user root)" ]; then bad "1: root created files in the attacker's directory"
elif [ "$(grep -c "refusing to write a heap profile in $pub/prof: $pub/prof is owned by uid $nobody_uid" "$tmp/err")" -ne 50 ] ||
  [ "$(wc -l <"$tmp/err")" -ne 50 ]; then bad "1: want one line per refused dump, naming the directory and its owner"
else ok "1: attacker's profile directory refused 50 times, one line each, victim intact"; fi

# 2. The same directory from the environment, with nobody waiting for the result (the
#    at-exit dump): one line, and the program's exit status is its own.
chmod 755 "$pub/prof" # owned by nobody, writable by nobody else
dump ALLOCSHIM_PROF_DIR="$pub/prof" ALLOCSHIM_PROF_AT_EXIT=1 -- 0 -
rc=$?
if [ $rc -ne 0 ] || [ "$(wc -l <"$tmp/err")" -ne 1 ] ||
  ! grep -q "heap profile on exit: refusing to write a heap profile in $pub/prof: .* owned by uid $nobody_uid" "$tmp/err"; then
  bad "2: want exit 0 and one line for the at-exit dump into nobody's directory"
elif [ -n "$(find "$pub/prof" -user root)" ]; then bad "2: root created files in nobody's directory"
else ok "2: at-exit dump into nobody's directory: one line, $(cat "$tmp/err")"; fi

# 3. A world-writable, non-sticky directory of root's own, and one writable by its group.
for mode in 777 775; do
  mkdir -m "$mode" "$tmp/open$mode"
  chmod "$mode" "$tmp/open$mode"
  dump -- 1 "$tmp/open$mode/x.heap"
  if [ $? -eq 0 ] || [ "$(wc -l <"$tmp/err")" -ne 1 ] || ! grep -q "$tmp/open$mode is writable by" "$tmp/err" ||
    [ -n "$(ls -A "$tmp/open$mode")" ]; then bad "3: mode $mode directory not refused with one line"
  else ok "3: mode $mode directory refused: $(cat "$tmp/err")"; fi
done

# 4. A symlink on the way: nobody's is not followed, root's is.
as_nobody ln -s "$safe" "$pub/theirs"
ln -s "$safe" "$pub/ours"
dump -- 1 "$pub/theirs/x.heap"
if [ $? -eq 0 ] || ! grep -q "a symlink owned by uid $nobody_uid" "$tmp/err" || [ -e "$safe/x.heap" ]; then
  bad "4: followed nobody's symlink"
else ok "4: nobody's symlink refused: $(cat "$tmp/err")"; fi
dump -- 1 "$pub/ours/x.heap"
if [ $? -ne 0 ] || [ ! -s "$safe/x.heap" ]; then bad "4: root's own symlink not followed"
else ok "4: root's own symlink followed"; fi
rm -f "$safe/x.heap"

# 5. The shared sticky directory itself: allowed, but the attacker plants symlinks on
#    every name it can (the next 100 default names once it has seen one, the explicit
#    name before it is used). Nothing of theirs is replaced and the victim is intact.
printf precious >"$victim" # each case starts with it whole (the old code lost it in 1)
attack "$pub" 30 app.heap
dump ALLOCSHIM_PROF_DIR="$pub" -- 50 -
rc=$?
dump -- 3 "$pub/app.heap"
rc2=$?
# The attacker plants once it has seen a default name; on a busy machine it may only
# get there after the dumps: wait for that (30 s at most), not for a guessed time.
for _ in $(seq 600); do
  [ -z "$(find "$pub" -maxdepth 1 -type l -user nobody -name 'allocshim.*.heap' -print -quit)" ] || break
  sleep 0.05
done
stop_attack
profiles=$(find "$pub" -maxdepth 1 -type f -user root -name 'allocshim.*.heap' | wc -l)
links=$(find "$pub" -maxdepth 1 -type l -user nobody -name 'allocshim.*.heap' | wc -l)
if ! intact; then bad "5: the victim was overwritten in the sticky directory"
elif [ $rc -ne 0 ] || [ "$profiles" -ne 50 ]; then bad "5: want 50 default-named profiles, have $profiles (exit $rc)"
elif [ "$links" -lt 1 ] || [ "$(grep -c "planted" "$tmp/attacker.out")" -ne 1 ]; then bad "5: the attacker planted nothing: $(cat "$tmp/attacker.out")"
elif [ "$links" -ne "$(awk '/planted/ {print $5 - 1}' "$tmp/attacker.out")" ]; then
  bad "5: only $links of the attacker's planted default names are left: dumps replaced them"
elif [ $rc2 -eq 0 ] || [ "$(grep -c ELOOP "$tmp/out")" -ne 3 ] || [ ! -L "$pub/app.heap" ]; then bad "5: the explicit dump onto nobody's symlink was not refused with ELOOP"
elif [ -n "$(find "$pub" -user root -name '.allocshim-*')" ]; then bad "5: temporary files of root's left" # the attacker may name its own links so
else ok "5: sticky directory under attack: 50 profiles, $links planted names kept, explicit symlink refused, victim intact"; fi
if command -v jeprof >/dev/null; then
  one=$(find "$pub" -maxdepth 1 -type f -user root -name 'allocshim.*.heap' | head -1)
  jeprof --text "$dumper" "$one" >/dev/null 2>&1 || bad "5: jeprof rejected $one"
fi

# 6. Explicit paths onto what is not a regular file of ours: a device node, a FIFO, a
#    directory, another user's file. Each refused, each untouched.
printf theirs >"$safe/theirs.heap"
chown nobody "$safe/theirs.heap"
mkfifo "$safe/fifo.heap"
mkdir "$safe/dir.heap"
check_target() { # NAME ERRNO TEST...
  local name=$1 err=$2
  shift 2
  dump -- 1 "$safe/$name"
  if [ $? -eq 0 ] || ! grep -q " -4 $err\$" "$tmp/out" || ! "$@"; then bad "6: $name: not refused with $err, or changed"
  else ok "6: $name refused with ALLOC_EIO/$err, untouched"; fi
}
if mknod "$safe/null.heap" c 1 3 2>/dev/null; then
  check_target null.heap EEXIST test -c "$safe/null.heap"
else
  echo "prof-hostile: note: mknod not permitted here; the device case is not run"
fi
check_target fifo.heap EEXIST test -p "$safe/fifo.heap"
check_target dir.heap EISDIR test -d "$safe/dir.heap"
check_target theirs.heap EPERM grep -qx theirs "$safe/theirs.heap"
[ -z "$(find "$safe" -name '.allocshim-*')" ] || bad "6: temporary files left"

intact || bad "the victim changed"
[ $fails -eq 0 ] && echo "prof-hostile: all cases passed"
exit $((fails > 0))

#!/usr/bin/env bash
# apt-get that waits for another package manager (unattended-upgrades, a second apt-get) to
# finish instead of failing at once, up to a time limit, and says what it waits for.
#
#   scripts/apt-get.sh update -qq
#   scripts/apt-get.sh install -y -qq PACKAGE...
#
# apt-get's own `-o DPkg::Lock::Timeout=N` (passed on) waits for the dpkg lock, but apt 2.6
# ignores it for the package lists lock that `apt-get update` takes; so this also waits while
# any apt/dpkg lock is held by another process, and retries a run that lost the race for one.
# KDIAG_APT_LOCK_TIMEOUT: seconds to wait in all (default 600). KDIAG_APT_LOCKS: the lock
# files to watch, ':'-separated (default: apt's and dpkg's; tests/unit/test_apt_lock.py).
set -uo pipefail
limit=${KDIAG_APT_LOCK_TIMEOUT:-600}
IFS=: read -r -a LOCKS <<<"${KDIAG_APT_LOCKS:-/var/lib/dpkg/lock-frontend:/var/lib/dpkg/lock:/var/lib/apt/lists/lock:/var/cache/apt/archives/lock}"

say() { printf '[apt-get %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# holder: "LOCK (pid PID: COMMAND)" for the first lock another process holds; nothing if free.
# Read from /proc/locks (apt and dpkg take fcntl locks), so fuser/lsof are not needed.
holder() {
  local lock ino pid
  for lock in "${LOCKS[@]}"; do
    ino=$(stat -c %i "$lock" 2>/dev/null) || continue
    pid=$(awk -v ino="$ino" '{split($6, id, ":"); if (id[3] == ino && $5 != "'$$'") {print $5; exit}}' \
      /proc/locks 2>/dev/null)
    if [[ -n $pid ]]; then
      echo "$lock (pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-80))"
      return
    fi
  done
}

# Whole seconds since the start, counted from the clock (bash's $SECONDS ticks on whole
# seconds of its own: a wait of 1.1 s could read as 2).
now_us() { echo "${EPOCHREALTIME/./}"; }
started=$(now_us)
elapsed() { echo $((($(now_us) - started) / 1000000)); }
err=$(mktemp)
trap 'rm -f "$err"' EXIT
while true; do
  said=-1
  while who=$(holder) && [[ -n $who ]]; do
    waited=$(elapsed)
    if ((waited >= limit)); then
      say "gave up after ${limit} s: another package manager still holds $who" \
        "(KDIAG_APT_LOCK_TIMEOUT=$limit)"
      exit 100
    fi
    if ((said < 0 || waited - said >= 30)); then
      say "waiting for another package manager to finish: it holds $who" \
        "(${waited} s of at most ${limit} s)"
      said=$waited
    fi
    sleep 1
  done
  left=$((limit - $(elapsed)))
  apt-get -o DPkg::Lock::Timeout=$((left > 1 ? left : 1)) "$@" 2>"$err"
  rc=$?
  # A lock taken between our check and apt-get's own (the lists lock is not waited for).
  if ((rc != 0)) && grep -q 'Could not get lock' "$err" && (($(elapsed) < limit)); then
    sleep 1
    continue
  fi
  cat "$err" >&2
  exit $rc
done

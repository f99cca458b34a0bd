#!/usr/bin/env bash
# The path an operator takes, end to end, on this machine (root, and a throw-away machine: CI):
# build the Debian package from this tree with Debian's flags, lint it, install it, check the
# installed layout, user and config, start the installed supervisor under the unit's own command
# line with a NOTIFY_SOCKET this test listens on, freeze it and watch the watchdog pings stop,
# upgrade it over itself, remove and purge it, and check that purge removed what it created.
#   tests/package_test.sh          (one package build, minutes; then about a minute)
#   VACATAIRE_DEB=path/vacataire_0.1.0_amd64.deb tests/package_test.sh   (a built package)
# Serialised by a lock: it installs a system package, so two runs must never overlap.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "package_test: $*"; }
fail() {
  echo "package_test: FAIL: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || { say "skipped: needs root (it installs and purges a package)"; exit 0; }

exec 9>/run/lock/vacataire-package-test.lock
flock -w 1800 9 || fail "another package test held the lock for 30 minutes"

if dpkg-query -W -f='${Status}' vacataire 2>/dev/null | grep -q 'ok installed\|config-files'; then
  fail "a vacataire package is already on this machine; this test installs and purges its own" \
    "and will not touch it (dpkg -P vacataire first, if it is a leftover)"
fi
[ ! -e /etc/vacataire ] || fail "/etc/vacataire exists and is not from a package; not touching it"

# A fixed build directory, so ccache (when present) hits on a second run; the lock makes it ours.
work=/var/tmp/vacataire-package-test
pids=()
installed=0
cleanup() {
  local status=$?
  local p deadline=$((SECONDS + 10))
  # TERM first: timeout(1) passes it on to the package build, in its own process group.
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    while kill -0 "$p" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [ "$installed" = 1 ]; then dpkg --purge vacataire >/dev/null 2>&1 || true; fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work/vacataire-0.1.0"

# True once a process has exited (gone, or a zombie waiting for us to reap it).
gone() {
  local state
  state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' /proc/"$1"/status 2>/dev/null) || true
  [ -z "$state" ] || [ "$state" = Z ]
}
# Waits (bounded) until a command succeeds.
wait_for() {
  local seconds=$1
  shift
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# ---- Build, as dpkg-buildpackage does it anywhere ------------------------------------------
tar -C "$src" --exclude-vcs --exclude=./build --exclude='./build-*' --exclude=./demo-run -cf - . |
  tar -C "$work/vacataire-0.1.0" -xf -
started=$SECONDS
if [ -n "${VACATAIRE_DEB:-}" ]; then
  # A package built earlier: test the install path without rebuilding.
  cp "$VACATAIRE_DEB" "$work"/
  touch "$work/build.log"
elif command -v ccache >/dev/null; then
  # debhelper 13 gives the build its own HOME: name the cache, or every run starts cold.
  CCACHE_DIR=${CCACHE_DIR:-$(ccache --get-config cache_dir)}
  export CCACHE_DIR CMAKE_CXX_COMPILER_LAUNCHER=ccache
fi
if [ -z "${VACATAIRE_DEB:-}" ]; then
  say "building the package (dpkg-buildpackage -b -uc -us, DEB_BUILD_OPTIONS=nocheck)"
  (cd "$work/vacataire-0.1.0" &&
    DEB_BUILD_OPTIONS="nocheck parallel=2" exec timeout 3600 nice dpkg-buildpackage -b -uc -us \
      >"$work/build.log" 2>&1) &
  pids+=($!)
  wait $! || {
    tail -40 "$work/build.log"
    fail "dpkg-buildpackage failed (log above)"
  }
  say "built in $((SECONDS - started))s"
fi
deb=$(ls "$work"/vacataire_*.deb)
changes=$(ls "$work"/vacataire_*.changes 2>/dev/null || echo "$deb") # the .deb alone, given one
# Debian's flags with hardening=+all: every compiler warning is a finding, not noise.
if grep -E '\.(cpp|hpp|h):[0-9]+(:[0-9]+)?: warning:' "$work/build.log"; then
  fail "the compiler warned under Debian's flags (above)"
fi

if command -v lintian >/dev/null; then
  say "lintian"
  lintian --fail-on error --info "$changes" || fail "lintian found errors"
else
  say "lintian not installed: not linting (scripts/install-deps installs it)"
fi

# ---- Install ----------------------------------------------------------------------------------
say "installing $(basename "$deb")"
installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$deb" \
  >"$work/install.log" 2>&1 || {
  cat "$work/install.log"
  fail "apt-get install of the package failed"
}
for f in /usr/sbin/vacataire /usr/libexec/vacataire/vacataire-linkd \
  /usr/libexec/vacataire/probes/pcheck /usr/libexec/vacataire/probes/memcheck \
  /usr/libexec/vacataire/probes/content; do
  [ -x "$f" ] || fail "$f is not installed or not executable"
done
for f in /usr/share/man/man8/vacataire.8.gz /usr/share/man/man5/vacataire.json.5.gz \
  /usr/share/man/man7/vacataire-probes.7.gz /etc/vacataire/vacataire.json \
  /lib/systemd/system/vacataire.service /usr/share/doc/vacataire/examples/pair.json \
  /usr/share/doc/vacataire/examples/init/s6/vacataire/run; do
  [ -e "$f" ] || fail "$f is not installed"
done
# hardening=+all reached the link: full RELRO (bind now) and position-independent executables.
for f in /usr/sbin/vacataire /usr/libexec/vacataire/vacataire-linkd \
  /usr/libexec/vacataire/probes/*; do
  dyn=$(readelf -d "$f")
  grep -q 'BIND_NOW' <<<"$dyn" || fail "$f was linked without -z now"
  grep -q 'PIE' <<<"$dyn" || fail "$f is not a position-independent executable"
done
[ -d /etc/vacataire/services.d ] || fail "/etc/vacataire/services.d is missing"
dpkg-query -W -f='${Conffiles}' vacataire | grep -q '/etc/vacataire/vacataire.json' ||
  fail "/etc/vacataire/vacataire.json is not a conffile"
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd vacataire) ||
  fail "postinst did not create the vacataire user"
[ "$uid" -lt 1000 ] || fail "vacataire is not a system user (uid $uid)"
[ "$shell" = /usr/sbin/nologin ] || fail "vacataire can log in (shell $shell)"
[ ! -e "$home" ] || fail "vacataire has a home directory ($home)"
[ "$(stat -c '%U:%G %a' /var/lib/vacataire)" = "root:root 750" ] ||
  fail "/var/lib/vacataire is $(stat -c '%U:%G %a' /var/lib/vacataire), not root:root 750"

if command -v systemd-analyze >/dev/null; then
  say "systemd-analyze verify"
  systemd-analyze verify /lib/systemd/system/vacataire.service ||
    fail "systemd-analyze verify found problems in the unit"
fi
if command -v haproxy >/dev/null; then
  haproxy -c -q -f /usr/share/doc/vacataire/examples/haproxy.cfg ||
    fail "the HAProxy example does not pass haproxy -c"
fi

if [ -d /run/systemd/system ]; then
  # systemd runs this machine: the package started the unit, which is active only once the
  # supervisor said READY=1. Stop it; the rest of the test runs the binary itself.
  say "systemd: the unit is active after install (readiness by NOTIFY_SOCKET)"
  systemctl is-active --quiet vacataire || fail "vacataire.service is not active: $(systemctl status vacataire 2>&1 | tail -20)"
  systemctl stop vacataire
fi

say "vacataire check-config on the installed config"
out=$(/usr/sbin/vacataire check-config 2>&1) || fail "check-config: $out"
echo "$out"

# ---- The installed supervisor under the unit's command line ---------------------------------
# A datagram socket standing in for systemd's; each datagram becomes one line of notify.log.
listener() {
  exec python3 - "$1" "$2" 9>&- <<'PY'
import socket, sys, time
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sys.argv[1])
sock.settimeout(1)
deadline = time.monotonic() + 600
with open(sys.argv[2], "a", buffering=1) as out:
    print("LISTENING", file=out)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096)
        except socket.timeout:
            continue
        print(data.decode(errors="replace").replace("\n", " "), file=out)
PY
}
count() { grep -c -- "$1" "$work/notify.log" || true; }
pings_above() { [ "$(count '^WATCHDOG=1')" -gt "$1" ]; } # evaluated at each try of wait_for
listener "$work/notify.sock" "$work/notify.log" &
pids+=($!)
wait_for 20 grep -q LISTENING "$work/notify.log" 2>/dev/null || fail "the notify listener did not start"

exec_start=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/vacataire.service)
[ "$exec_start" = "/usr/sbin/vacataire run" ] || fail "unexpected ExecStart: $exec_start"
mkdir -p /run/vacataire # RuntimeDirectory= does this under systemd
say "starting '$exec_start' with NOTIFY_SOCKET and WATCHDOG_USEC=1000000"
NOTIFY_SOCKET=$work/notify.sock WATCHDOG_USEC=1000000 setsid $exec_start \
  >"$work/supervisor.log" 2>&1 &
sup=$!
pids+=("$sup")
wait_for 30 grep -q 'READY=1' "$work/notify.log" || {
  cat "$work/supervisor.log"
  fail "no READY=1 from the installed supervisor"
}
/usr/sbin/vacataire status >/dev/null || fail "READY=1 came before the control socket answered"
wait_for 10 grep -q '^WATCHDOG=1' "$work/notify.log" || fail "no WATCHDOG=1 after READY=1"
wait_for 10 pings_above 2 || fail "the watchdog pings do not repeat"

# Frozen, the supervisor pings no more: systemd would kill it after WatchdogSec.
kill -STOP "$sup"
sleep 0.2 # a ping already on its way when the process stopped
before=$(count '^WATCHDOG=1')
sleep 2 # four periods with no ping expected: an observation of absence needs a window
after=$(count '^WATCHDOG=1')
[ "$after" = "$before" ] || fail "a stopped supervisor still pinged the watchdog ($before -> $after)"
kill -CONT "$sup"
wait_for 5 pings_above "$after" || fail "no ping after SIGCONT"
kill -TERM "$sup"
wait_for 20 grep -q 'STOPPING=1' "$work/notify.log" || fail "no STOPPING=1 on SIGTERM"
wait_for 30 gone "$sup" || fail "the supervisor did not exit on SIGTERM"
wait "$sup" || fail "the supervisor exited with status $? on SIGTERM"
say "READY=1, $(count '^WATCHDOG=1') WATCHDOG=1, STOPPING=1; none while stopped"

# ---- The installed supervisor finds linkd in /usr/libexec and linkd drops to vacataire -------
say "a pair config: linkd from /usr/libexec/vacataire, running as the vacataire user"
/usr/sbin/vacataire keygen "$work/peer.key" >/dev/null
# A free loopback UDP port: check-config refuses port 0, as linkd would.
link_port=$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/pair.json" <<EOF
{"node": {"name": "web1", "role": "master", "state_dir": "$work/state"},
 "services_dir": "/etc/vacataire/services.d", "control_socket": "$work/control.sock",
 "peer": {"name": "web2", "key_file": "$work/peer.key",
          "links": [{"listen": "127.0.0.1:$link_port", "peer": "127.0.0.1:9"}]},
 "user": "vacataire"}
EOF
out=$(/usr/sbin/vacataire check-config -c "$work/pair.json" 2>&1) || fail "the pair config is refused: $out"
setsid /usr/sbin/vacataire run -c "$work/pair.json" >"$work/pair.log" 2>&1 &
pair=$!
pids+=("$pair")
linkd_pid() {
  local p
  for p in $(ps -o pid= --ppid "$pair"); do
    if [ "$(readlink /proc/"$p"/exe 2>/dev/null)" = /usr/libexec/vacataire/vacataire-linkd ]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
linkd_runs_as_vacataire() {
  local p
  p=$(linkd_pid) && [ "$(stat -c %u /proc/"$p")" = "$uid" ]
}
wait_for 20 linkd_runs_as_vacataire || {
  cat "$work/pair.log"
  fail "no vacataire-linkd from /usr/libexec/vacataire running as the vacataire user"
}
kill -TERM "$pair"
wait_for 30 gone "$pair" || fail "the pair supervisor did not exit"

# ---- s6: readiness through notification-fd ---------------------------------------------------
if command -v s6-supervise >/dev/null; then
  say "s6: the example service directory reports readiness on its notification-fd"
  cp -r /usr/share/doc/vacataire/examples/init/s6/vacataire "$work/s6"
  rm -rf "$work/s6/log"
  s6-supervise "$work/s6" >"$work/s6.log" 2>&1 &
  pids+=($!)
  s6=$!
  wait_for 20 s6-svok "$work/s6" || fail "s6-supervise did not start on $work/s6"
  s6-svwait -U -t 30000 "$work/s6" || {
    cat "$work/s6.log"
    fail "s6 never saw the supervisor ready"
  }
  s6-svc -d "$work/s6"
  s6-svwait -D -t 30000 "$work/s6" || fail "s6 could not stop the supervisor"
  s6-svc -x "$work/s6"
  wait_for 10 gone "$s6" || fail "s6-supervise did not exit"
fi

# ---- Upgrade over itself keeps the operator's config; remove; purge --------------------------
say "reinstalling over itself with a changed conffile"
sed -i 's/"5%"/"6%"/' /etc/vacataire/vacataire.json
dpkg -i "$deb" >"$work/reinstall.log" 2>&1 || {
  cat "$work/reinstall.log"
  fail "reinstalling over itself failed"
}
grep -q '"6%"' /etc/vacataire/vacataire.json || fail "the reinstall overwrote the operator's config"
/usr/sbin/vacataire check-config >/dev/null || fail "check-config after the reinstall"

say "remove, then purge"
dpkg -r vacataire >"$work/remove.log" 2>&1 || fail "dpkg -r: $(cat "$work/remove.log")"
[ ! -e /usr/sbin/vacataire ] || fail "remove left /usr/sbin/vacataire"
[ -e /etc/vacataire/vacataire.json ] || fail "remove took the config (only purge may)"
dpkg -P vacataire >"$work/purge.log" 2>&1 || fail "dpkg -P: $(cat "$work/purge.log")"
installed=0
for d in /etc/vacataire /var/lib/vacataire /run/vacataire /usr/libexec/vacataire \
  /usr/share/doc/vacataire /lib/systemd/system/vacataire.service; do
  [ ! -e "$d" ] || fail "purge left $d"
done
getent passwd vacataire >/dev/null || fail "purge removed the system user (Debian keeps it)"

say "reinstalling after the purge (the user exists already), then purging again"
installed=1
dpkg -i "$deb" >"$work/reinstall2.log" 2>&1 || fail "install after purge: $(cat "$work/reinstall2.log")"
/usr/sbin/vacataire check-config >/dev/null || fail "check-config after install over a purge"
dpkg -P vacataire >/dev/null 2>&1 || fail "the second purge failed"
installed=0
[ ! -e /etc/vacataire ] || fail "the second purge left /etc/vacataire"
say "ok in $((SECONDS))s"

#!/usr/bin/env bash
# The Debian package's life on a machine, checked step by step: install, start the units,
# enrol a device against the installed centre, stop, restart, upgrade to a newer build,
# remove, purge.
#
#   bash tests/package/deb_lifecycle.sh [--install-needs] OLD.deb NEW.deb
#
# It installs into the machine it runs on, so it only runs where that machine is a fresh
# Debian root made for the run: CI (CI=true, inside ../shared/tools/fresh-debian.sh), or
# by crates/cli/tests/package_deb.rs, which runs it inside fresh-debian.sh itself when
# not under CI. --install-needs first installs the packages of the `deb` need of
# scripts/setup.sh with apt (a root that scripts/setup.sh did not prepare).
#
# systemd cannot run in such a root, so the units are run the way systemd would run
# them, from the installed unit files: ExecStart= as User=/Group=, with exactly the
# capabilities of CapabilityBoundingSet=/AmbientCapabilities=, NoNewPrivileges=,
# UMask=, WorkingDirectory= and the RuntimeDirectory=, and the units are checked with
# `systemd-analyze verify`. Everything runs in a private network namespace (loopback
# only): the agent's TUN interface and nftables table never touch the host's network.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
install_needs=0
[[ "${1:-}" == --install-needs ]] && { install_needs=1; shift; }
(($# == 2)) || { echo "usage: $0 [--install-needs] OLD.deb NEW.deb" >&2; exit 2; }
old_deb="$(realpath "$1")" new_deb="$(realpath "$2")"

die() { echo "deb_lifecycle: ERROR: $*" >&2; exit 1; }
[[ "${CI:-}" == true ]] || die "this installs dodvpn into the machine it runs on: it runs only in a fresh root (CI=true; cargo test runs it inside ../shared/tools/fresh-debian.sh)"
[[ $(id -u) == 0 ]] || die "needs root (dpkg, users, TUN)"

if ((install_needs)); then
  mapfile -t pkgs < <("$repo/scripts/setup.sh" --list | awk '$2 == "deb" {print $1}' | sort -u)
  echo "deb_lifecycle: apt-get install ${pkgs[*]}" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; } >/dev/null 2>&1 ||
    die "apt-get could not install ${pkgs[*]}"
fi
"$repo/scripts/setup.sh" --check deb || die "a package this test needs is missing (above)"

# A private network namespace with loopback up: the centre on 127.0.0.1:8443, the
# agent's dodvpn0 and its nftables table stay inside it.
if [[ -z "${DEB_LIFECYCLE_NETNS:-}" ]]; then
  exec unshare --net -- env DEB_LIFECYCLE_NETNS=1 bash "$0" "$old_deb" "$new_deb"
fi
ip link set lo up || die "cannot bring up loopback in the private namespace"

PASSED=0 FAILED=0
result() {
  if [[ $1 == 0 ]]; then echo "PASS $2"; PASSED=$((PASSED + 1))
  else echo "FAIL $2${3:+: $3}"; FAILED=$((FAILED + 1)); fi
}
check() { local what="$1"; shift; "$@"; result $? "$what"; }
not() { ! "$@"; }
is() { [[ "$1" == "$2" ]] || { echo "  got '$1', want '$2'"; return 1; }; } # GOT WANT
wait_for() { # SECONDS CMD... : poll every 0.1 s
  local end=$((SECONDS + $1)); shift
  until "$@" 2>/dev/null; do ((SECONDS < end)) || return 1; sleep 0.1; done
}

work="$(mktemp -d /tmp/deb-lifecycle.XXXXXX)"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

unitdir=/lib/systemd/system
DATA=/var/lib/dodvpn-center
KS=/var/lib/dodvpn-agent/keystore
PASS=/etc/dodvpn/agent-keystore.passphrase
URL=https://127.0.0.1:8443

# ---------------------------------------------------------------- the units, as systemd runs them
unit_value() { sed -n "s/^$2=//p" "$unitdir/$1" | tail -1; } # UNIT KEY: the last KEY= line
caps_of() { # "CAP_A CAP_B" -> "+a,+b" (setpriv's spelling)
  local c out=""
  for c in $1; do c="${c#CAP_}"; out+="${out:+,}+${c,,}"; done
  echo "$out"
}
# start_unit UNIT LOG: run the unit's ExecStart the way systemd would; sets UNIT_PID.
start_unit() {
  local unit="$1" log="$2" user group exec bnd amb um wd rt rtmode nnp
  user="$(unit_value "$unit" User)" group="$(unit_value "$unit" Group)"
  exec="$(unit_value "$unit" ExecStart)" bnd="$(caps_of "$(unit_value "$unit" CapabilityBoundingSet)")"
  amb="$(caps_of "$(unit_value "$unit" AmbientCapabilities)")" um="$(unit_value "$unit" UMask)"
  wd="$(unit_value "$unit" WorkingDirectory)" rt="$(unit_value "$unit" RuntimeDirectory)"
  rtmode="$(unit_value "$unit" RuntimeDirectoryMode)" nnp="$(unit_value "$unit" NoNewPrivileges)"
  [[ -n "$user" && -n "$exec" && -n "$bnd" ]] || die "$unit: no User=, ExecStart= or CapabilityBoundingSet="
  if [[ -n "$rt" ]]; then install -d -m "${rtmode:-0755}" -o "$user" -g "$group" "/run/$rt"; fi
  local -a argv
  read -ra argv <<<"$exec"
  (
    cd "${wd:-/}" && umask "${um:-0022}" &&
      exec setpriv --reuid="$user" --regid="$group" --init-groups \
        ${nnp:+--no-new-privs} --bounding-set="-all,$bnd" --inh-caps="-all,$amb" --ambient-caps="-all,$amb" \
        -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        USER="$user" LOGNAME="$user" HOME="$wd" SHELL=/usr/sbin/nologin \
        STATE_DIRECTORY="/var/lib/$(unit_value "$unit" StateDirectory)" ${rt:+RUNTIME_DIRECTORY=/run/$rt} \
        CONFIGURATION_DIRECTORY="/etc/$(unit_value "$unit" ConfigurationDirectory)" \
        DODVPN_LOG=info "${argv[@]}"
  ) >"$log" 2>&1 &
  UNIT_PID=$!
  pids+=("$UNIT_PID")
}
# stop_unit PID: systemd's stop (SIGTERM, KillMode=control-group); the exit status.
stop_unit() {
  kill -TERM "$1" 2>/dev/null
  local rc=0
  wait "$1" || rc=$?
  local p keep=()
  for p in "${pids[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
  return "$rc"
}
status_field() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; } # PID FIELD
proc_user() { ps -o user= -p "$1" | tr -d ' '; }
# The capability masks of CAP_NET_BIND_SERVICE (10) and CAP_NET_ADMIN (12).
mask_of() { local m=0 c; for c in "$@"; do m=$((m | (1 << c))); done; printf '%016x' "$m"; }

centre_ready() { grep -qx ready "$1"; }
start_centre() { # LOG: the centre unit, ready
  start_unit dodvpn-center.service "$1"; CENTRE_PID=$UNIT_PID
  wait_for 60 centre_ready "$1" || { cat "$1" >&2; die "the centre unit did not become ready"; }
}
agent_connected() { grep -q "connected to the centre" "$1"; }
start_agent() { # LOG: the agent unit, connected to the centre
  start_unit dodvpn-agent.service "$1"; AGENT_PID=$UNIT_PID
  wait_for 30 agent_connected "$1" || { cat "$1" >&2; die "the agent unit did not connect to the centre"; }
}
admin() { dodvpn admin --json --center "$URL" --ca "$DATA/pki/root.pem" --credential-file "$DATA/admin.token" "$@"; }
as_dodvpn() { runuser -u dodvpn -- "$@"; }

# ---------------------------------------------------------------- install
old_version="$(dpkg-deb -f "$old_deb" Version)" new_version="$(dpkg-deb -f "$new_deb" Version)"
check "the new build has a higher version ($old_version < $new_version)" dpkg --compare-versions "$old_version" lt "$new_version"
check "dodvpn is not installed before the test" not dpkg-query -W dodvpn
dpkg -i "$old_deb" >"$work/install.log" 2>&1; rc=$?
result "$rc" "dpkg -i dodvpn $old_version" "$(tail -5 "$work/install.log")"
((rc == 0)) || { echo "$PASSED passed, $FAILED failed"; exit 1; }
check "installed: dpkg says 'install ok installed' $old_version" \
  test "$(dpkg-query -W -f='${Status} ${Version}' dodvpn)" = "install ok installed $old_version"
check "system user dodvpn: system uid, nologin shell" \
  sh -c 'u=$(getent passwd dodvpn) && uid=$(echo "$u" | cut -d: -f3) && [ "$uid" -lt 1000 ] && echo "$u" | grep -q ":/usr/sbin/nologin$"'
for d in /var/lib/dodvpn-center /var/lib/dodvpn-agent; do
  check "$d: dodvpn:dodvpn mode 700" test "$(stat -c '%U:%G %a' "$d")" = "dodvpn:dodvpn 700"
done
check "agent key store passphrase: dodvpn mode 600, 44 characters of base64" \
  sh -c "[ \"\$(stat -c '%U %a' $PASS)\" = 'dodvpn 600' ] && [ \$(tr -d '\n' <$PASS | wc -c) -eq 44 ]"
check "conffiles /etc/dodvpn/center.toml and agent.toml" \
  sh -c "dpkg-query -W -f='\${Conffiles}' dodvpn | grep -q /etc/dodvpn/center.toml && dpkg-query -W -f='\${Conffiles}' dodvpn | grep -q /etc/dodvpn/agent.toml"
check "man pages: dodvpn(1), dodvpn-center(1), dodvpn-agent-run(1), with --check-config" \
  sh -c 'for p in dodvpn dodvpn-center dodvpn-agent-run; do zcat /usr/share/man/man1/$p.1.gz | grep -q "^\.TH" || exit 1; done; zcat /usr/share/man/man1/dodvpn-center.1.gz | grep -q "check\\\\-config"'
check "completions for bash, zsh and fish know 'center' and --check-config" \
  sh -c 'for f in /usr/share/bash-completion/completions/dodvpn /usr/share/zsh/vendor-completions/_dodvpn /usr/share/fish/vendor_completions.d/dodvpn.fish; do grep -q center "$f" && grep -q check-config "$f" || exit 1; done'
check "bash completion completes 'dodvpn cen' to center" \
  bash -c '. /usr/share/bash-completion/completions/dodvpn; COMP_WORDS=(dodvpn cen); COMP_CWORD=1; COMP_LINE="dodvpn cen"; COMP_POINT=${#COMP_LINE}; _dodvpn dodvpn cen dodvpn; [[ " ${COMPREPLY[*]} " == *" center "* ]]'
for u in dodvpn-center.service dodvpn-agent.service; do
  systemd-analyze verify "$unitdir/$u" >"$work/verify-$u.log" 2>&1; rc=$?
  # In a root without a running systemd, verify still parses every directive; it
  # reports unknown ones as "Unknown key name" or "Unknown lvalue".
  # It also runs man(1) for each Documentation=man:… page, so the man pages are proven too.
  if grep -qiE "unknown (key|lvalue)|failed to parse|invalid|not executable|no such file|failed with code" "$work/verify-$u.log"; then rc=1; fi
  result "$rc" "systemd-analyze verify $u" "$(head -5 "$work/verify-$u.log")"
  exposure="$(systemd-analyze security --offline=true "$unitdir/$u" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) \(.*\)/\1 \2/p')"
  echo "INFO systemd-analyze security $u: exposure ${exposure:-?}"
done
check "agent unit: CapabilityBoundingSet is CAP_NET_ADMIN CAP_NET_BIND_SERVICE only" \
  test "$(unit_value dodvpn-agent.service CapabilityBoundingSet)" = "CAP_NET_ADMIN CAP_NET_BIND_SERVICE"
check "both units: User=dodvpn, NoNewPrivileges=yes, ProtectSystem=strict, StateDirectory" \
  sh -c "for u in dodvpn-center dodvpn-agent; do f=$unitdir/\$u.service; grep -qx User=dodvpn \$f && grep -qx NoNewPrivileges=yes \$f && grep -qx ProtectSystem=strict \$f && grep -qx StateDirectory=\$u \$f || exit 1; done"
check "the shipped centre configuration passes --check-config (as dodvpn)" \
  sh -c "runuser -u dodvpn -- dodvpn center --config /etc/dodvpn/center.toml --check-config >/dev/null"
check "the shipped agent configuration passes --check-config (as dodvpn)" \
  sh -c "runuser -u dodvpn -- dodvpn agent run --config /etc/dodvpn/agent.toml --check-config >/dev/null"

# A mistake in the conffile: the unit refuses to start and names the line.
cp /etc/dodvpn/center.toml "$work/center.toml.orig"
echo 'listen = "127.0.0.1:99999"' >>/etc/dodvpn/center.toml
bad_line=$(wc -l </etc/dodvpn/center.toml)
refuses() {
  start_unit dodvpn-center.service "$work/centre-bad.log"
  local rc=0; wait "$UNIT_PID" || rc=$?
  pids=("${pids[@]/$UNIT_PID}")
  [[ $rc == 1 ]] && grep -q "^/etc/dodvpn/center.toml:$bad_line:10: error: .listen.: invalid value '127.0.0.1:99999'" "$work/centre-bad.log" &&
    grep -q "was not started" "$work/centre-bad.log" && [[ ! -e $DATA/pki ]]
}
check "centre unit with a bad listen address in center.toml: exits 1 naming line $bad_line column 10, initialises nothing" refuses
cp "$work/center.toml.orig" /etc/dodvpn/center.toml

# ---------------------------------------------------------------- start, enrol
start_centre "$work/centre-1.log"
check "centre unit: initialised in $DATA, serving $URL" \
  sh -c "grep -q 'dodvpn centre initialised in $DATA' '$work/centre-1.log' && grep -q '$URL/' '$work/centre-1.log'"
check "centre unit runs as dodvpn" test "$(proc_user "$CENTRE_PID")" = dodvpn
check "centre unit: bounding set and effective capabilities are CAP_NET_BIND_SERVICE only" \
  sh -c "[ \$(awk '\$1==\"CapBnd:\"{print \$2}' /proc/$CENTRE_PID/status) = $(mask_of 10) ] && [ \$(awk '\$1==\"CapEff:\"{print \$2}' /proc/$CENTRE_PID/status) = $(mask_of 10) ]"
check "centre unit: NoNewPrivs is set" test "$(status_field "$CENTRE_PID" NoNewPrivs)" = 1
check "centre data: CA key and admin credential owner-only (0600, dodvpn)" \
  sh -c "[ \"\$(stat -c '%U %a' $DATA/admin.token)\" = 'dodvpn 600' ] && ! find $DATA -type f -perm /077 | grep -q ."

provider="$(admin org create "Device Provider" --kind vendor | jq -r .id)"
org="$(admin org create "Packaged Hospital" --kind hospital | jq -r .id)"
dev="$(admin device register --serial "DEB-1" --model DV-100 --owner "$org" --subnet 10.1.0.0/24 | jq -r .id)"
check "admin CLI against the installed centre: organisations and a device registered" \
  test -n "$provider" -a "$provider" != null -a -n "$dev" -a "$dev" != null
enrol() {
  as_dodvpn dodvpn device provision --center "$URL" --ca "$DATA/pki/root.pem" --credential-file "$DATA/admin.token" \
    --keystore "$KS" --passphrase-file "$PASS" --device "$dev" &&
    admin device deliver "$dev" && admin service apply "$dev" && admin service approve "$dev" &&
    as_dodvpn dodvpn agent enroll --keystore "$KS" --passphrase-file "$PASS" --center "$URL" &&
    admin service start "$dev"
}
enrol >"$work/enrol.log" 2>&1
result $? "TR D.6 d–l: the device enrolled into $KS against the installed centre" "$(tail -3 "$work/enrol.log")"
state() { admin device show "$dev" | jq -r .status; }
check "the device is in service" is "$(state)" in_service
check "the key store is the service user's: dodvpn, no file readable by others" \
  sh -c "[ \"\$(stat -c %U $KS)\" = dodvpn ] && ! find $KS -type f -perm /077 | grep -q ."

# The gateway's outer interface (the agent refuses to guess lo, where the centre is
# here): a veth in the private namespace, set in the agent's conffile as an operator would.
ip link add out0 type veth peer name out0-peer && ip addr add 192.0.2.1/24 dev out0 &&
  ip link set out0 up && ip link set out0-peer up || die "cannot make the outer interface out0"
sed -i 's|^# outer-interface = .*|outer-interface = ["out0"]|' /etc/dodvpn/agent.toml
check "the operator's agent.toml (outer-interface out0) passes --check-config" \
  sh -c "runuser -u dodvpn -- dodvpn agent run --config /etc/dodvpn/agent.toml --check-config >/dev/null"
start_agent "$work/agent-1.log"
check "agent unit runs as dodvpn, connected to the installed centre" test "$(proc_user "$AGENT_PID")" = dodvpn
check "agent unit: bounding set and effective capabilities are CAP_NET_ADMIN + CAP_NET_BIND_SERVICE only" \
  sh -c "[ \$(awk '\$1==\"CapBnd:\"{print \$2}' /proc/$AGENT_PID/status) = $(mask_of 10 12) ] && [ \$(awk '\$1==\"CapEff:\"{print \$2}' /proc/$AGENT_PID/status) = $(mask_of 10 12) ]"
check "agent unit with those capabilities only: TUN dodvpn0 up, nftables table inet dodvpn_agent on out0" \
  wait_for 10 sh -c "ip link show dodvpn0 >/dev/null && nft list table inet dodvpn_agent | grep -q out0"
check "agent control socket in the unit's RuntimeDirectory answers 'dodvpn tunnel status'" \
  sh -c "dodvpn tunnel status --json --control /run/dodvpn-agent/agent.sock | jq -e .interface >/dev/null"
digest() { sha256sum "$1" | cut -d' ' -f1; }
root_fp="$(digest "$DATA/pki/root.pem")" token_fp="$(digest "$DATA/admin.token")" pass_fp="$(digest "$PASS")"

# ---------------------------------------------------------------- stop, restart
check "agent unit stops on SIGTERM with status 0" stop_unit "$AGENT_PID"
check "the stopped agent removed its nftables table and TUN interface" \
  not sh -c "nft list table inet dodvpn_agent >/dev/null 2>&1 || ip link show dodvpn0 >/dev/null 2>&1"
check "centre unit stops on SIGTERM with status 0" stop_unit "$CENTRE_PID"
start_centre "$work/centre-2.log"
check "restarted centre: 'started' on the same data, not initialised again" \
  grep -q "dodvpn centre started in $DATA" "$work/centre-2.log"
check "after the restart the device is still in service" is "$(state)" in_service
start_agent "$work/agent-2.log"
check "after the restart the agent connects with its enrolment" agent_connected "$work/agent-2.log"

# ---------------------------------------------------------------- upgrade (while running, as with systemd)
# An operator's change to a conffile must survive the upgrade.
sed -i 's|^# tls-name = .*|tls-name = ["centre.deb-test.example"]|' /etc/dodvpn/center.toml
dpkg -i "$new_deb" >"$work/upgrade.log" 2>&1; rc=$?
result "$rc" "dpkg -i dodvpn $new_version over $old_version, units running" "$(tail -5 "$work/upgrade.log")"
check "upgraded: 'install ok installed' $new_version" \
  test "$(dpkg-query -W -f='${Status} ${Version}' dodvpn)" = "install ok installed $new_version"
check "the operator's changes to /etc/dodvpn/center.toml and agent.toml survived the upgrade" \
  sh -c "grep -qx 'tls-name = \[\"centre.deb-test.example\"\]' /etc/dodvpn/center.toml && grep -qx 'outer-interface = \[\"out0\"\]' /etc/dodvpn/agent.toml"
# postinst's try-restart, as systemd would do it.
check "centre stops for the restart after the upgrade" stop_unit "$CENTRE_PID"
check "agent stops for the restart after the upgrade" stop_unit "$AGENT_PID"
start_centre "$work/centre-3.log"
check "upgraded centre: started on the same data" grep -q "dodvpn centre started in $DATA" "$work/centre-3.log"
check "upgrade kept the CA, the admin credential and the key store passphrase byte for byte" \
  test "$(digest "$DATA/pki/root.pem") $(digest "$DATA/admin.token") $(digest "$PASS")" = "$root_fp $token_fp $pass_fp"
check "after the upgrade the device is still in service" is "$(state)" in_service
check "after the upgrade the audit chain verifies" sh -c "dodvpn admin --json --center $URL --ca $DATA/pki/root.pem --credential-file $DATA/admin.token audit verify >/dev/null"
start_agent "$work/agent-3.log"
check "after the upgrade the agent connects with the enrolment it had" agent_connected "$work/agent-3.log"
check "…and still holds its device and service certificates" \
  sh -c "as() { runuser -u dodvpn -- \"\$@\"; }; as dodvpn agent status --json --keystore $KS --passphrase-file $PASS | jq -e '.device_id == \"$dev\" and .service_certificate and .device_certificate' >/dev/null"

# ---------------------------------------------------------------- remove, purge
stop_unit "$AGENT_PID"; stop_unit "$CENTRE_PID"
# What `systemctl enable` would leave behind.
mkdir -p /etc/systemd/system/multi-user.target.wants
ln -sf "$unitdir/dodvpn-center.service" /etc/systemd/system/multi-user.target.wants/dodvpn-center.service
dpkg -r dodvpn >"$work/remove.log" 2>&1; rc=$?
result "$rc" "dpkg -r dodvpn" "$(tail -5 "$work/remove.log")"
check "removed: binary and units gone, configuration and data kept (status config-files)" \
  sh -c "[ ! -e /usr/bin/dodvpn ] && [ ! -e $unitdir/dodvpn-center.service ] && [ -f /etc/dodvpn/center.toml ] && [ -f $DATA/admin.token ] && dpkg-query -W -f='\${Status}' dodvpn | grep -q config-files"
dpkg --purge dodvpn >"$work/purge.log" 2>&1; rc=$?
result "$rc" "dpkg --purge dodvpn" "$(tail -5 "$work/purge.log")"
check "purged: dpkg no longer knows dodvpn" not sh -c "dpkg-query -W -f='\${Status}' dodvpn 2>/dev/null | grep -q ."
check "purged: /etc/dodvpn, /var/lib/dodvpn-center, /var/lib/dodvpn-agent, /run/dodvpn-agent gone" \
  sh -c "[ ! -e /etc/dodvpn ] && [ ! -e /var/lib/dodvpn-center ] && [ ! -e /var/lib/dodvpn-agent ] && [ ! -e /run/dodvpn-agent ]"
check "purged: user and group dodvpn gone, the enable link gone" \
  sh -c "! getent passwd dodvpn && ! getent group dodvpn && [ ! -e /etc/systemd/system/multi-user.target.wants/dodvpn-center.service ]"
left="$(find /etc /var/lib /usr -xdev -name '*dodvpn*' 2>/dev/null | grep -v '^/var/lib/dpkg/' | head -5)"
check "purged: no file named dodvpn left in /etc /var/lib /usr" test -z "$left"
[[ -z "$left" ]] || echo "left: $left"

echo "$PASSED passed, $FAILED failed"
((FAILED == 0))

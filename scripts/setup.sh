#!/usr/bin/env bash
# What the tests, the demo and the benchmarks need, in one list, and the one check of it.
#
#   scripts/setup.sh                   install every package below that is missing (needs root)
#   scripts/setup.sh --check NEED...   exit 1 naming the missing package(s) of NEEDs; installs nothing
#   scripts/setup.sh --list            print the table (package, need, what proves it is installed)
#
# A NEED is a group of packages that one kind of test uses (the second column below). Test
# scripts and test binaries call `--check` instead of keeping their own lists, so a package
# missing from this file is named by the first test that needs it.
#
# A package written `pypi:NAME==VERSION` comes from PyPI, pinned, into one virtualenv of the
# project's own ($DODVPN_PYTOOLS, default /opt/dodvpn/pytools): Debian's python refuses
# system-wide pip installs, and a pin keeps the fuzzer's verdicts repeatable.
set -euo pipefail
PYTOOLS=${DODVPN_PYTOOLS:-/opt/dodvpn/pytools}
# The Squid comparison of bench/gateway.sh needs `ssl_bump`, which only Debian's
# squid-openssl has; the two Squid packages conflict, so the list keeps `squid` (what the
# tests use) and the benchmark installs squid-openssl itself when it runs. Either one
# proves /usr/sbin/squid.
# npm packages (`npm:NAME@VERSION`, pinned) go into one directory of the project's own,
# never a global install: the console's browser tests load them from here.
NODETOOLS=${DODVPN_NODETOOLS:-/opt/dodvpn/nodetools}

# package                         need        what proves it is installed (a command or a file)
NEEDS="
iproute2                          netns       ip
iputils-ping                      netns       ping
coreutils                         netns       timeout sha256sum
mount                             netns       mount
jq                                netns       jq
socat                             socat       socat
python3                           python      python3
tcpdump                           capture     tcpdump
nftables                          nat         nft
iptables                          nat         iptables
iperf3                            iperf3      iperf3
strongswan-charon                 strongswan  /usr/lib/ipsec/charon
strongswan-swanctl                strongswan  swanctl
strongswan-pki                    strongswan  pki
libstrongswan                     strongswan  /usr/lib/ipsec/plugins/libstrongswan-kdf.so
libstrongswan-standard-plugins    strongswan  /usr/lib/ipsec/plugins/libstrongswan-openssl.so
libstrongswan-extra-plugins       strongswan  /usr/lib/ipsec/plugins/libstrongswan-curve25519.so
libcharon-extra-plugins           strongswan  /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so
wireguard-go                      wireguard   wireguard-go
wireguard-tools                   wireguard   wg
nebula                            nebula      nebula nebula-cert
softhsm2                          pkcs11      softhsm2-util /usr/lib/softhsm/libsofthsm2.so
opensc                            pkcs11      pkcs11-tool
postgresql                        postgresql  /usr/lib/postgresql
postgresql-client                 postgresql  psql
postgresql-client                 pgbackup    pg_dump psql
openssl                           openssl     openssl
sqlite3                           sqlite      sqlite3
python3-venv                      apifuzz     python3
pypi:schemathesis==4.32.5         apifuzz     $PYTOOLS/bin/schemathesis
vsftpd                            diagnose    /usr/sbin/vsftpd
bind9                             diagnose    /usr/sbin/named
squid                             diagnose    /usr/sbin/squid
nmap                              diagnose    nmap
dante-server                      diagnose    /usr/sbin/danted
snmpd                             diagnose    /usr/sbin/snmpd
apache2                           diagnose    /usr/sbin/apache2
openbsd-inetd                     diagnose    /usr/sbin/inetd
bind9                             gateway     /usr/sbin/named
squid                             gateway     /usr/sbin/squid
curl                              gateway     curl
netbase                           diagnose    /etc/services
graphviz                          ledger      dot
poppler-utils                     ledger      pdftoppm
haproxy                           haproxy     /usr/sbin/haproxy
chromium                          ledger      chromium
fonts-noto-cjk                    ledger      /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
chromium                          browser     /usr/bin/chromium
fonts-noto-cjk                    browser     /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
nodejs                            browser     node
npm                               browser     npm
npm:playwright-core@1.55.1        browser     $NODETOOLS/node_modules/playwright-core/package.json
npm:axe-core@4.10.3               browser     $NODETOOLS/node_modules/axe-core/axe.min.js
iproute2                          deb         ip
nftables                          deb         nft
jq                                deb         jq
systemd                           deb         systemd-analyze
man-db                            deb         man
util-linux                        deb         setpriv unshare runuser
"

rows() { local t=${NEEDS//\$PYTOOLS/$PYTOOLS}; grep -v '^[[:space:]]*$' <<<"${t//\$NODETOOLS/$NODETOOLS}"; }

installed() { # PROOF... : every proof is a command on PATH or an existing file
  local p
  for p in "$@"; do
    if [[ "$p" == /* ]]; then [[ -e "$p" ]] || return 1
    else command -v "$p" >/dev/null 2>&1 || return 1; fi
  done
}

check() { # NEED... : name what is missing, exit 1
  local -a missing=() known=()
  local pkg need proofs want
  while read -r pkg need proofs; do
    known+=("$need")
    for want in "$@"; do
      [[ "$want" == "$need" ]] || continue
      # shellcheck disable=SC2086
      local from="Debian package: $pkg"
      [[ "$pkg" == pypi:* ]] && from="PyPI package: ${pkg#pypi:}"
      [[ "$pkg" == npm:* ]] && from="npm package: ${pkg#npm:}"
      installed $proofs || missing+=("$from (for '$need': $proofs)")
    done
  done < <(rows)
  for want in "$@"; do
    [[ " ${known[*]} " == *" $want "* ]] || { echo "setup: unknown need '$want' (scripts/setup.sh --list shows them)" >&2; exit 2; }
  done
  if ((${#missing[@]})); then
    printf 'setup: missing %s\n' "${missing[@]}" >&2
    echo "setup: run scripts/setup.sh as root to install them" >&2
    exit 1
  fi
}

case "${1:-}" in
  --check) shift; check "$@"; exit 0 ;;
  --list) rows; exit 0 ;;
  -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
  "") ;;
  *) echo "setup: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

mapfile -t npms < <(rows | awk '$1 ~ /^npm:/ {print substr($1, 5)}' | sort -u)
mapfile -t pypi < <(rows | awk '$1 ~ /^pypi:/ {print substr($1, 6)}' | sort -u)
# A package counts as present when dpkg has it, or when what it must provide is already
# there from elsewhere (a machine whose Node.js came with its own npm cannot install
# Debian's npm beside it).
missing=()
while read -r p _ proofs; do
  [[ "$p" == pypi:* || "$p" == npm:* || " ${missing[*]} " == *" $p "* ]] && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
  # shellcheck disable=SC2086
  installed $proofs || missing+=("$p")
done < <(rows)
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]}: run as root or install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for req in "${pypi[@]}"; do
  name=${req%%==*}; want=${req#*==}
  have=$("$PYTOOLS/bin/python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)
  [[ "$have" == "$want" ]] && continue
  if ! mkdir -p "$PYTOOLS" 2>/dev/null; then
    echo "setup: cannot create $PYTOOLS for $req: run as root or set DODVPN_PYTOOLS" >&2
    exit 1
  fi
  echo "setup: installing $req from PyPI into $PYTOOLS"
  [[ -x "$PYTOOLS/bin/python" ]] || python3 -m venv "$PYTOOLS"
  "$PYTOOLS/bin/python" -m pip install -q --disable-pip-version-check "$req" >/dev/null
done
for req in "${npms[@]}"; do
  name=${req%@*}; want=${req##*@}
  have=$(node -p "require('$NODETOOLS/node_modules/$name/package.json').version" 2>/dev/null || true)
  [[ "$have" == "$want" ]] && continue
  if ! mkdir -p "$NODETOOLS" 2>/dev/null; then
    echo "setup: cannot create $NODETOOLS for $req: run as root or set DODVPN_NODETOOLS" >&2
    exit 1
  fi
  echo "setup: installing $req from npm into $NODETOOLS"
  npm install --prefix "$NODETOOLS" --save-exact --no-audit --no-fund --ignore-scripts "$req" >/dev/null
done
# Installed is not enough: each package must provide what the tests use.
check $(rows | awk '{print $2}' | sort -u)

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest >/dev/null
fi

#!/usr/bin/env bash
# Install what the tests and benchmarks need on a fresh Debian machine (idempotent).
# Runs apt-get only when something is missing; needs root for that.
set -euo pipefail

PKGS=(
  softhsm2 opensc                       # PKCS#11 key store tests (R-PKI-3)
  postgresql postgresql-client          # scale-out back-end tests (R-OPS-1)
  strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins strongswan-pki  # interop peer
  iperf3 nftables iptables iproute2 iputils-ping socat jq python3  # data-plane tests in namespaces
  wireguard-go wireguard-tools nebula   # benchmark peers (bench/dataplane)
  openssl sqlite3
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]} — run as root or install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest >/dev/null
fi

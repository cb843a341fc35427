#!/usr/bin/env bash
# The README's main job: `dodvpn demo`, the TR §9 network on this machine (as root).
# Installs what it needs (iproute2, ping, python3 for the TCP checks), builds the release
# binary, runs the demo. Extra arguments go to `dodvpn demo` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
  echo "demo: the demo builds network namespaces and TUN devices; run it as root (sudo -E $0)" >&2
  exit 1
fi
./scripts/setup.sh
cargo build --release -p dodvpn
exec ./target/release/dodvpn demo "$@"

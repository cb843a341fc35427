#!/usr/bin/env bash
# Secure messaging (R-SVC-4): the CMS layer of dodvpn-message against `openssl cms` on
# the same keys (ECDH P-256, AES-256-GCM, ECDSA P-256/SHA-256) and the same file, file
# to file (ours streamed in constant memory); then, unless E2E=0, end to end through a
# real centre: `dodvpn message send --attach` of a SIZE_MIB file from one enrolled device
# and `open --out` on the other (the cli test message_large_attachment_streams_in_bounded_memory,
# release build, E2E_RUNS runs, medians), and small messages per second through the
# centre (one CLI process per message).
#   bash bench/messages.sh [SIZE_MIB] [SMALL_COUNT]     (defaults: 1024 MiB, 2000)
# Scratch files go to a tmpfs (/dev/shm) and are removed; the release build goes to
# target/bench-messages and is removed afterwards. Writes bench/results/messages-*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
SMALL=${2:-2000}
RUNS=3
W=$(mktemp -d /dev/shm/dodvpn-msgbench.XXXXXX)
export CARGO_TARGET_DIR=${BENCH_TARGET_DIR:-$PWD/target/bench-messages}
cleanup() { rm -rf "$W"; [ -n "${KEEP_BUILD:-}" ] || rm -rf "$CARGO_TARGET_DIR"; }
trap cleanup EXIT

cargo build --release -q -p dodvpn-message --example cms_bench
BIN=$CARGO_TARGET_DIR/release/examples/cms_bench

cd "$W"
openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout ca.key -out ca.crt \
  -subj "/CN=bench-ca" -days 2 -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign 2>/dev/null
for n in sender recip; do
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout $n.key -out $n.csr \
    -subj "/CN=$n" 2>/dev/null
  printf 'keyUsage=critical,digitalSignature,keyAgreement\nsubjectKeyIdentifier=hash\n' > ext
  openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -set_serial $RANDOM -days 2 -out $n.crt -extfile ext 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in $n.key -out $n.p8
done
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > big.bin

ours=$("$BIN" sender.p8 sender.crt recip.p8 recip.crt big.bin "$SMALL")

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mb=$(awk -v s=$SIZE_MIB 'BEGIN {print s*1048576/1e6}')
seal=(); opn=()
for i in $(seq $RUNS); do
  t0=$(now)
  openssl cms -sign -binary -nodetach -md sha256 -in big.bin -signer sender.crt -inkey sender.key -outform DER -out s.der
  openssl cms -encrypt -binary -aes-256-gcm -in s.der -outform DER -out m.cms -recip recip.crt -keyopt ecdh_kdf_md:sha256
  t1=$(now)
  openssl cms -decrypt -binary -inform DER -in m.cms -recip recip.crt -inkey recip.key -out d.der
  openssl cms -verify -binary -inform DER -in d.der -CAfile ca.crt -out out.bin 2>/dev/null
  t2=$(now)
  cmp -s out.bin big.bin
  seal+=("$(awk -v a=$t0 -v b=$t1 -v m=$mb 'BEGIN {print m/(b-a)}')")
  opn+=("$(awk -v a=$t1 -v b=$t2 -v m=$mb 'BEGIN {print m/(b-a)}')")
  rm -f s.der m.cms d.der out.bin
done
os=$(printf '%s\n' "${seal[@]}" | median)
oo=$(printf '%s\n' "${opn[@]}" | median)
# openssl, small messages: process start-up dominates, so it is per message including exec.
t0=$(now); head -c 1024 /dev/zero > small.txt
for i in $(seq 50); do
  openssl cms -sign -binary -nodetach -md sha256 -in small.txt -signer sender.crt -inkey sender.key -outform DER \
  | openssl cms -encrypt -binary -aes-256-gcm -outform DER -out sm.cms -recip recip.crt -keyopt ecdh_kdf_md:sha256
done
t1=$(now)
osmall=$(awk -v a=$t0 -v b=$t1 'BEGIN {print 50/(b-a)}')

cd - >/dev/null
# E2E_PROFILE=dev E2E_TARGET_DIR=target reuses a debug test build (say so with the figures).
E2E_PROFILE=${E2E_PROFILE:-release}
e2e=null
if [ "${E2E:-1}" = 1 ]; then
  runs=()
  for i in $(seq "${E2E_RUNS:-3}"); do
    DODVPN_MESSAGE_BIG_MIB=$SIZE_MIB DODVPN_BENCH_JSON=$W/e2e-$i.json \
      CARGO_TARGET_DIR=${E2E_TARGET_DIR:-$CARGO_TARGET_DIR} \
      cargo nextest run --cargo-profile "$E2E_PROFILE" -p dodvpn --test centre_message \
      message_large_attachment_streams_in_bounded_memory >&2
    runs+=("$W/e2e-$i.json")
  done
  e2e=$(E2E_PROFILE=$E2E_PROFILE python3 - "${runs[@]}" <<'PY'
import json, statistics, sys
rs = [json.load(open(p)) for p in sys.argv[1:]]
out = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
out["runs"] = len(rs)
out["cargo_profile"] = __import__("os").environ.get("E2E_PROFILE")
print(json.dumps(out))
PY
)
fi
mkdir -p bench/results
out=bench/results/messages-$(date -u +%Y%m%dT%H%M%SZ).json
commit=$(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty)
cat > "$out" <<JSON
{"bench": "messages", "commit": "$commit", "nproc": $(nproc), "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)",
 "size_mib": $SIZE_MIB, "runs": $RUNS,
 "dodvpn_message": $ours,
 "end_to_end_through_centre": $e2e,
 "openssl": {"version": "$(openssl version)", "large_sign_encrypt_mb_s": $os, "large_decrypt_verify_mb_s": $oo, "small_sign_encrypt_per_s_with_exec": $osmall}}
JSON
cat "$out"

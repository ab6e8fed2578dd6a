#!/usr/bin/env bash
# Agent footprint on this machine: binary size, steady-state RSS of `garrison-agent run` once
# enrolled and idle, and the wall time of enrollments and renewals split into TPM time and the
# rest (the agent's "exchange timing" log lines), against a real swtpm and a standalone
# `garrison attestor serve`. Figures and method: docs/performance.md.
#
# Usage: bash scripts/agent-footprint.sh [DIR]   (DIR: where the demo site is kept; default a
# new temporary directory). Needs release binaries: cargo build --release -p garrison -p
# garrison-agent (and, for the shipped size, cargo build --profile dist -p garrison-agent).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/target/release
D=${1:-$(mktemp -d /tmp/garrison-footprint.XXXXXX)/site}
N=$D/nodes/node-1
export TSS2_LOG=all+none
ROUNDS=${ROUNDS:-5}
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "== binary size (bytes)"
ls -l "$BIN/garrison-agent" | awk '{print "release (line tables kept): " $5}'
if [[ -x target/dist/garrison-agent ]]; then
  ls -l target/dist/garrison-agent | awk '{print "dist (shipped, stripped): " $5}'
fi

# A site with CAs, policy and a node whose swtpm carries a real boot log.
[[ -f $D/site.toml ]] || "$BIN/garrison" demo --dir "$D" >/dev/null

port=$(sed -n 's/^tcti = "swtpm:host=127.0.0.1,port=\([0-9]*\)"/\1/p' "$N/agent.toml")
swtpm socket --tpm2 --tpmstate dir="$N/tpm/tpm" --server type=tcp,port="$port",bindaddr=127.0.0.1 \
  --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 --flags not-need-init,startup-clear \
  </dev/null >/dev/null 2>"$N/swtpm.footprint.stderr" &
pids+=($!)
sleep 0.5
# The demo's swtpm is gone: replay the boot log's SHA-256 digests into the fresh PCRs again.
"$BIN/garrison" evidence eventlog "$N/binary_bios_measurements" --json | python3 -c '
import json, sys
for e in json.load(sys.stdin)["events"]:
    if e["type_id"] != 3 and "sha256" in e["digests"]:
        print("%d:sha256=%s" % (e["pcr"], e["digests"]["sha256"]))' |
  TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port" xargs -n 16 tpm2_pcrextend
(cd "$D" && exec "$BIN/garrison" attestor serve --config "$D/site.toml") >"$D/attestor.footprint.log" 2>&1 &
pids+=($!)
sleep 1

echo "== steady state of garrison-agent run (enrolled, idle 5 s)"
rm -rf "$N/svid"
"$BIN/garrison-agent" --log-level info run --config "$N/agent.toml" >"$D/agent.footprint.log" 2>&1 &
agent=$!
for _ in $(seq 1 300); do [[ -f $N/svid/svid.pem ]] && break; sleep 0.1; done
sleep 5
grep -E "VmRSS|VmHWM|RssAnon|RssFile" "/proc/$agent/status"
kill -TERM "$agent"; wait "$agent" || true

echo "== exchange timing (ms): total, TPM, other"
for _ in $(seq 1 "$ROUNDS"); do
  "$BIN/garrison-agent" --log-level info enroll --once --config "$N/agent.toml" 2>&1 | grep "exchange timing"
done
for _ in $(seq 1 "$ROUNDS"); do
  "$BIN/garrison-agent" --log-level info renew --once --config "$N/agent.toml" 2>&1 | grep "exchange timing"
done
echo "site kept in $D"

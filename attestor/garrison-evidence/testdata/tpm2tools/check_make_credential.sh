#!/usr/bin/env bash
# Checks garrison_evidence::make_credential against a TPM: for an RSA and an ECC EK, the
# credential it makes must be accepted by TPM2_ActivateCredential (swtpm) and give back the
# secret. Not run by `cargo test` (it needs swtpm); run by hand after changing credential.rs.
# Usage: ./check_make_credential.sh [port]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PORT="${1:-23631}"
WORK="$(mktemp -d)"
SWTPM_PID=0
trap 'kill "$SWTPM_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
(cd "$HERE/../.." && cargo build -q -p garrison-evidence --example credential_file)
BIN="$(cd "$HERE/../../../.." && pwd)/target/debug/examples/credential_file"
mkdir -p "$WORK/state"
swtpm socket --tpm2 --tpmstate dir="$WORK/state" \
  --server type=tcp,port="$PORT",bindaddr=127.0.0.1 \
  --ctrl type=tcp,port=$((PORT + 1)),bindaddr=127.0.0.1 \
  --flags not-need-init,startup-clear &
SWTPM_PID=$!
sleep 1
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$PORT" TSS2_LOG=all+none
flush() { tpm2_flushcontext -t; tpm2_flushcontext -s; }
for ALG in rsa ecc; do
  tpm2_createek -c "$WORK/ek.ctx" -G "$ALG" -u "$WORK/ek.pub"; flush
  tpm2_createak -C "$WORK/ek.ctx" -c "$WORK/ak.ctx" -G ecc -g sha256 -s ecdsa -n "$WORK/ak.name" >/dev/null; flush
  SECRET="garrison-secret-$ALG-$RANDOM"
  "$BIN" "$WORK/ek.pub" "$WORK/ak.name" "$SECRET" "$WORK/cred.in"
  # The EK's authPolicy is PolicySecret(TPM_RH_ENDORSEMENT).
  tpm2_startauthsession --policy-session -S "$WORK/session.ctx"
  tpm2_policysecret -S "$WORK/session.ctx" -c e >/dev/null
  tpm2_activatecredential -c "$WORK/ak.ctx" -C "$WORK/ek.ctx" -i "$WORK/cred.in" -o "$WORK/secret.out" \
    -P "session:$WORK/session.ctx"
  tpm2_flushcontext "$WORK/session.ctx"; flush
  if [ "$(cat "$WORK/secret.out")" = "$SECRET" ]; then echo "$ALG EK: ActivateCredential returned the secret: OK"
  else echo "$ALG EK: MISMATCH" >&2; exit 1; fi
  tpm2_flushcontext "$WORK/ek.ctx" 2>/dev/null || true
  tpm2_flushcontext "$WORK/ak.ctx" 2>/dev/null || true
done

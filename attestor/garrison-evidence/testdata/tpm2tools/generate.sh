#!/usr/bin/env bash
# Regenerates the fixtures in this directory with a throwaway swtpm. See README.md.
# Usage: ./generate.sh [port]   (needs swtpm, swtpm_setup, tpm2-tools 5.4)
set -euo pipefail
OUT="$(cd "$(dirname "$0")" && pwd)"
PORT="${1:-23621}"
WORK="$(mktemp -d)"
trap 'kill "$SWTPM_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
SWTPM_PID=0
mkdir -p "$WORK/state" "$WORK/ca"
cat > "$WORK/swtpm-localca.conf" <<CONF
statedir = $WORK/ca
signingkey = $WORK/ca/signkey.pem
issuercert = $WORK/ca/issuercert.pem
certserial = $WORK/ca/certserial
CONF
cat > "$WORK/swtpm_setup.conf" <<CONF
create_certs_tool = /usr/bin/swtpm_localca
create_certs_tool_config = $WORK/swtpm-localca.conf
create_certs_tool_options = /etc/swtpm-localca.options
active_pcr_banks = sha256
CONF
swtpm_setup --tpm2 --tpmstate "$WORK/state" --create-ek-cert --create-platform-cert \
  --lock-nvram --pcr-banks sha256 --config "$WORK/swtpm_setup.conf" --overwrite
cp "$WORK/ca/swtpm-localca-rootca-cert.pem" "$OUT/swtpm-localca-root.pem"
cp "$WORK/ca/issuercert.pem" "$OUT/swtpm-localca-intermediate.pem"

swtpm socket --tpm2 --tpmstate dir="$WORK/state" \
  --server type=tcp,port="$PORT",bindaddr=127.0.0.1 \
  --ctrl type=tcp,port=$((PORT + 1)),bindaddr=127.0.0.1 \
  --flags not-need-init,startup-clear &
SWTPM_PID=$!
sleep 1
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$PORT" TSS2_LOG=all+none
flush() { tpm2_flushcontext -t; tpm2_flushcontext -s; }

tpm2_nvread 0x01c00002 -o "$OUT/ek_rsa_cert.der"
tpm2_nvread 0x01c00016 -o "$OUT/ek_ecc384_cert.der"

# Make PCRs 0..7 non-trivial and distinct.
for i in 0 1 2 3 4 5 6 7; do
  tpm2_pcrextend "$i:sha256=$(printf 'garrison-pcr-%d' "$i" | sha256sum | cut -d' ' -f1)"
done

NONCE=6761727269736f6e2d6e6f6e63652d3031  # "garrison-nonce-01"
for ALG in rsa ecc; do
  tpm2_createek -c "$WORK/ek_$ALG.ctx" -G "$ALG" -u "$OUT/ek_$ALG.pub"; flush
  if [ "$ALG" = rsa ]; then AKARGS=(-G rsa -g sha256 -s rsassa); else AKARGS=(-G ecc -g sha256 -s ecdsa); fi
  tpm2_createak -C "$WORK/ek_$ALG.ctx" -c "$WORK/ak_$ALG.ctx" "${AKARGS[@]}" \
    -u "$OUT/ak_$ALG.pub" -n "$OUT/ak_$ALG.name"; flush
  tpm2_quote -c "$WORK/ak_$ALG.ctx" -l sha256:0,1,2,3,4,5,6,7 -q "$NONCE" -g sha256 \
    -m "$OUT/quote_$ALG.msg" -s "$OUT/quote_$ALG.sig" -o "$OUT/quote_$ALG.pcrs"; flush
  tpm2_flushcontext "$WORK/ek_$ALG.ctx" 2>/dev/null || true
  tpm2_flushcontext "$WORK/ak_$ALG.ctx" 2>/dev/null || true
done
tpm2_pcrread sha256:0,1,2,3,4,5,6,7 > "$OUT/pcrread.txt"
echo "fixtures written to $OUT"

#!/usr/bin/env bash
# The main job, end to end. Today: the nested CA hierarchy (offline root -> hub -> site) issuing
# X.509-SVIDs for a site attestor and a node, each checked by openssl. The TPM-backed enrollment
# demo replaces this once the enrollment service lands (see README, "Status").
#
# Usage: scripts/demo.sh [DIR]   (default: a temporary directory, removed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --locked --quiet -p garrison
garrison=$PWD/target/debug/garrison

if [[ $# -ge 1 ]]; then
  dir=$1; mkdir -p "$dir"
else
  dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
fi
echo "demo directory: $dir"
step() { printf '\n== %s\n' "$*"; }

step "offline root CA for trust domain example.org"
"$garrison" ca init-root --trust-domain example.org --out "$dir/root" --ttl 3650d
step "hub intermediate, signed by the root"
"$garrison" ca issue-intermediate --issuer "$dir/root" --name hub --ttl 365d --out "$dir/hub"
step "site intermediate for site-a: its key never leaves the site, the hub signs its CSR"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=site-a \
  -keyout "$dir/site-a.key" -out "$dir/site-a.csr" 2>/dev/null
"$garrison" ca issue-intermediate --issuer "$dir/hub" --name site-a --csr "$dir/site-a.csr" --ttl 30d --out "$dir/site-a-cert"
# Assemble the site's issuer directory from its own key and the hub-signed certificate.
mkdir -p "$dir/site"
cp "$dir/site-a-cert/"{cert,chain,bundle}.pem "$dir/site/"
install -m 0600 "$dir/site-a.key" "$dir/site/key.pem"
step "the site attestor's own SVID"
"$garrison" ca issue-svid --issuer "$dir/site" --spiffe-id spiffe://example.org/site/site-a/attestor --ttl 24h --out "$dir/attestor"
step "a node SVID from the node's CSR (the CSR's own name claims are ignored)"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=claims-to-be-root \
  -keyout "$dir/node-1.key" -out "$dir/node-1.csr" 2>/dev/null
"$garrison" ca issue-svid --issuer "$dir/site" --spiffe-id spiffe://example.org/site/site-a/node/node-1 \
  --ttl 1h --csr "$dir/node-1.csr" --out "$dir/node-1"
step "independent check: openssl verify, as TLS client and server"
for who in attestor node-1; do
  for purpose in sslclient sslserver; do
    printf '%-9s %-10s ' "$who" "$purpose"
    openssl verify -CAfile "$dir/$who/bundle.pem" -untrusted "$dir/$who/chain.pem" -purpose "$purpose" "$dir/$who/cert.pem"
  done
done
step "refusal: a site CA may not mint another CA"
if "$garrison" ca issue-intermediate --issuer "$dir/site" --name rogue --ttl 1d --out "$dir/rogue"; then
  echo "UNEXPECTED: issued"; exit 1
fi
step "trust bundle as a SPIFFE bundle"
"$garrison" ca bundle --issuer "$dir/site" --format spiffe
step "the node's chain as an auditor sees it"
"$garrison" ca inspect "$dir/node-1/chain.pem"
echo; echo "demo complete"

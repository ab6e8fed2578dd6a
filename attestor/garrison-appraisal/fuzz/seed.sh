#!/usr/bin/env bash
# Seeds the corpus with records in the attestor's encoding (the golden values of
# src/evidence_record.rs's tests).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/evidence_record
printf '%s' '{"stage":"renew-complete","ek_public":"","ek_certificate":"","ak_public":"AAEC","nonce":"bm9uY2U=","attest":"/0RVRw==","signature":"ABQACw==","pcrs":[[11,0,"00ff"],[11,7,""]],"event_log_sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","csr":"MII="}' \
    > corpus/evidence_record/renew_complete.json
printf '%s' '{"stage":"","ek_public":"","ek_certificate":"","ak_public":"","nonce":"","attest":"","signature":"","pcrs":[],"event_log_sha256":"","csr":""}' \
    > corpus/evidence_record/empty.json
printf '%s' '{"stage":"renew-begin","peer":"127.0.0.1:4000","request_bytes":0,"request_sha256":"e3b0"}' \
    > corpus/evidence_record/unproven.json

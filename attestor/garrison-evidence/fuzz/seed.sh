#!/usr/bin/env bash
# Seeds each target's corpus from the fixtures (testdata/tpm2tools and the GCE vector).
set -euo pipefail
cd "$(dirname "$0")"
T=../testdata/tpm2tools
mkdir -p corpus/public_area corpus/attest corpus/signature corpus/tpm2_tools_pcrs
cp $T/*.pub corpus/public_area/
cp $T/*.msg corpus/attest/
cp $T/*.sig corpus/signature/
cp $T/*.pcrs corpus/tpm2_tools_pcrs/
GCE=../../../testdata/quotes/goattest-windows_gcp_shielded_vm.json
python3 - "$GCE" <<'PY'
import base64, json, sys
d = json.load(open(sys.argv[1]))
for path, value in [("corpus/public_area/gce_ak", d["AK"]["Public"]),
                    ("corpus/attest/gce_quote", d["Quote"]["Quote"]),
                    ("corpus/signature/gce_sig", d["Quote"]["Signature"])]:
    open(path, "wb").write(base64.b64decode(value))
PY

#!/usr/bin/env bash
# The main job, end to end: `garrison-demo` (swtpm-tests/garrison-demo). In a temporary directory (or DIR, kept for
# inspection) it creates an offline root -> hub -> site CA hierarchy and a signed strict
# admission policy, starts a site attestor on embedded SQLite, starts one swtpm per node with a
# real machine's measured-boot log replayed into its PCRs, and runs garrison-agent on each node:
# node-1 enrolls and renews, node-2 (Secure Boot off) and node-3 (untrusted EK manufacturer) are
# refused. It prints the SVIDs issued and the attestation log, and exits 0 only if every outcome
# was as expected. After the enrollments, a hub process joins: the site syncs, the hub is killed and node-1
# still renews, node-1 is revoked at the hub, and once the hub is back its renewal is refused.
#
# Usage: scripts/demo.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --locked --quiet -p garrison-demo -p garrison-agent -p garrison
export TSS2_LOG="${TSS2_LOG:-all+none}"
if [[ $# -ge 1 ]]; then
  exec target/debug/garrison-demo --dir "$1"
else
  exec target/debug/garrison-demo
fi

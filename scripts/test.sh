#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: formatting, lints, and every test, including
# the swtpm-backed ones (each test starts and kills its own software TPM).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

# ESYS logs an error for every absent NV index it is asked about; the tests ask on purpose.
export TSS2_LOG="${TSS2_LOG:-all+none}"

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
pg_virtualenv -t -- sh -c 'case "$PGHOST" in /*) h="localhost:$PGPORT/$PGDATABASE?host=$PGHOST" ;; *) h="$PGHOST:$PGPORT/$PGDATABASE" ;; esac; GARRISON_TEST_POSTGRES_URL="postgres://$PGUSER:$PGPASSWORD@$h" exec cargo test --workspace --locked'

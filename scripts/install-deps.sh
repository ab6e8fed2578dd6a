#!/usr/bin/env bash
# Installs the Debian 12 packages Garrison builds and tests with, if any are missing.
# Safe to run repeatedly: it only calls apt-get when something is absent.
set -euo pipefail

packages=(
  swtpm swtpm-tools        # software TPM 2.0 for the agent tests and the demo
  libtss2-dev pkg-config   # tpm2-tss, linked by tss-esapi in agent/garrison-tpm
  tpm2-tools               # interop tests: tpm2_createak / tpm2_quote output we must verify
  openssl                  # independent verifier of the certificates we issue
  protobuf-compiler        # protoc, for the gRPC definitions in proto/
  python3 python3-venv     # the Workload API test installs the PyPI `spiffe` client in a venv
  build-essential          # C toolchain for ring and the tss-esapi sys crate
  libssl-dev               # build time only: the `ear` crate's `cmw` dependency compiles reqwest (native-tls) for a build script it never runs; nothing Garrison ships links OpenSSL
  postgresql postgresql-common  # throwaway cluster (pg_virtualenv) for the PostgreSQL log tests
  systemd procps           # systemd-analyze, -sysusers, -tmpfiles check packaging/systemd (kill: ExecReload)
  man-db groff-base        # man and groff render the generated man pages (and systemd-analyze checks Documentation=)
)

missing=()
for pkg in "${packages[@]}"; do
  [[ "$pkg" == \#* ]] && continue
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

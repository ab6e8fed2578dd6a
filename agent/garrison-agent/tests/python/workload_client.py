"""An unmodified SPIFFE Workload API client (the PyPI `spiffe` package) against the agent.

Run by tests/workload_api.rs with SPIFFE_ENDPOINT_SOCKET set. One line per observation on
stdout, which the Rust test compares:

  stream: `svid <id> <serial>`, `bundle <td> <roots>`, `jwt-bundle <td> <keys>`, then
          `stream <id> <serial>` for the first two X.509 contexts of an open stream (the
          test rotates the SVID after the first), then exits 0.
  fetch:  `svid ...`, or `refused <error>` when the agent refuses this caller.
"""

import queue
import sys

from spiffe import TrustDomain, WorkloadApiClient

TRUST_DOMAIN = TrustDomain("example.org")


def say(line):
    print(line, flush=True)


def svid_line(tag, svid):
    return f"{tag} {svid.spiffe_id} {svid.leaf.serial_number:x}"


def main(mode):
    client = WorkloadApiClient(default_timeout=30)
    try:
        svid = client.fetch_x509_svid()
    except Exception as error:  # the client's own error type carries the gRPC code
        say(f"refused {error}")
        return 0
    say(svid_line("svid", svid))
    if mode == "fetch":
        return 0

    bundle = client.fetch_x509_bundles().get_bundle_for_trust_domain(TRUST_DOMAIN)
    say(f"bundle spiffe://{TRUST_DOMAIN} {len(bundle.x509_authorities)}")
    jwt = client.fetch_jwt_bundles().get_bundle_for_trust_domain(TRUST_DOMAIN)
    say(f"jwt-bundle spiffe://{TRUST_DOMAIN} {len(jwt.jwt_authorities)}")

    updates = queue.Queue()
    handler = client.stream_x509_contexts(
        on_success=lambda context: updates.put(("ok", context)),
        on_error=lambda error: updates.put(("error", error)),
        retry_connect=False,
    )
    for _ in range(2):
        kind, value = updates.get(timeout=30)
        if kind == "error":
            say(f"stream-error {value}")
            return 1
        say(svid_line("stream", value.default_svid))
    handler.cancel()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

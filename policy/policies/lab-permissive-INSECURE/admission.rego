# LAB ONLY — PERMISSIVE, INSECURE. Never ship this bundle to a production site.
#
# Admits any node whose evidence verified (EK chain, quote, log replay are checked by the
# attestor before policy runs), whatever it booted, with short-lived SVIDs under a /lab/ path
# so that lab identities can never be mistaken for production ones.
package garrison.admission

default allow := false

allow if count(reasons) == 0

spiffe_path := sprintf("/site/%s/lab/node/%s", [input.site.id, substring(input.tpm.ek_sha256, 0, 32)])

ttl_seconds := data.lab.ttl_seconds

reasons contains "tpm: EK hash is missing" if {
	not is_string(input.tpm.ek_sha256)
}

reasons contains "request: renewal whose previous decision was not an allow" if {
	input.request.kind == "renew"
	not input.request.previous.allow == true
}

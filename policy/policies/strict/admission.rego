# Strict default admission policy.
#
# Admits a node only when its EK comes from a trusted manufacturer, Secure Boot was on, every
# boot application and kernel command line is on the allow-lists in data.json, no measured
# event is unverifiable (its digest does not prove its data, or the rule for its PCR cannot
# read it: see garrison_eventlog::claims), firmware was not in debug mode, and every golden
# PCR value listed in data.json matches. Renewals also need the previous decision to have
# been an allow.
package garrison.admission

default allow := false

cfg := data.strict

allow if count(reasons) == 0

spiffe_path := sprintf("/site/%s/node/%s", [input.site.id, substring(input.tpm.ek_sha256, 0, 32)])

ttl_seconds := cfg.ttl_seconds if input.site.connected == true

ttl_seconds := cfg.disconnected_ttl_seconds if input.site.connected != true

reasons contains msg if {
	not cfg.trusted_ek_manufacturers[input.tpm.manufacturer]
	msg := sprintf("tpm: EK manufacturer %v is not trusted", [input.tpm.manufacturer])
}

reasons contains "tpm: EK hash is missing" if {
	not is_string(input.tpm.ek_sha256)
}

reasons contains "boot: Secure Boot is off" if {
	cfg.require_secure_boot
	input.boot.secure_boot == false
}

reasons contains "boot: Secure Boot state is unknown (PCR 7 not verified, or SecureBoot not measured exactly once)" if {
	cfg.require_secure_boot
	not is_boolean(input.boot.secure_boot)
}

reasons contains "boot: firmware is in debug mode" if {
	input.boot.debug_mode == true
}

reasons contains "boot: no boot application was measured" if {
	count(input.boot.boot_applications) == 0
}

reasons contains msg if {
	some app in input.boot.boot_applications
	key := sprintf("%s:%s", [app.bank, app.digest])
	not cfg.boot_applications[key]
	msg := sprintf("boot: boot application %s (event %d) is not on the allow-list", [key, app.event_index])
}

reasons contains "boot: no kernel command line was measured" if {
	count(input.boot.kernel_command_lines) == 0
}

reasons contains msg if {
	some line in input.boot.kernel_command_lines
	not cfg.kernel_command_lines[line.text]
	msg := sprintf("boot: kernel command line (event %d) is not on the allow-list: %s", [line.event_index, line.text])
}

reasons contains msg if {
	some event in input.boot.unverifiable
	msg := sprintf("boot: event %d in PCR %d (%s) is unverifiable: %s", [event.event_index, event.pcr, event.event_type, event.reason])
}

reasons contains msg if {
	some bank, pcrs in cfg.golden_pcrs
	some index, want in pcrs
	got := object.get(input.pcrs, [bank, index], "<missing>")
	got != want
	msg := sprintf("pcr: %s PCR %s is %s, golden value is %s", [bank, index, got, want])
}

reasons contains "request: renewal whose previous decision was not an allow" if {
	input.request.kind == "renew"
	not input.request.previous.allow == true
}

# METADATA
# title: KFM geometry sensitivity gate
# description: |
#   Restricted geometry never leaves the canonical store exactly: copies into
#   search, graph, cache or api must be generalized to a grid_degrees grid.
#   data.kfm.sensitivity.decision
#     input  {"sensitivity": "public"|"restricted", "store": "search"|"graph"|"cache"|"api", "geometry_exact": bool}
#     output {"allow": bool, "deny": [string], "required_generalization": "none"|"grid"}
package kfm.sensitivity

# Generalization grid, in degrees, for restricted geometry outside the canonical store.
grid_degrees := 0.1

sensitivities := {"public", "restricted"}

stores := {"search", "graph", "cache", "api"}

_in := input if {
	is_object(input)
} else := {}

_sensitivity := object.get(_in, "sensitivity", null)

_store := object.get(_in, "store", null)

_exact := object.get(_in, "geometry_exact", null)

deny contains "missing input.sensitivity" if _sensitivity == null

deny contains msg if {
	_sensitivity != null
	not _sensitivity in sensitivities
	msg := sprintf("input.sensitivity must be one of %v", [sort(sensitivities)])
}

deny contains "missing input.store" if _store == null

deny contains msg if {
	_store != null
	not _store in stores
	msg := sprintf("input.store must be one of %v", [sort(stores)])
}

deny contains "missing input.geometry_exact" if _exact == null

deny contains "input.geometry_exact must be a boolean" if {
	_exact != null
	not is_boolean(_exact)
}

deny contains msg if {
	_sensitivity == "restricted"
	_exact == true
	msg := sprintf(
		"restricted geometry must be generalized to the %v degree grid before it is written to %v",
		[grid_degrees, _store],
	)
}

# Only public data may skip generalization; anything else (including an
# unknown sensitivity) is treated as restricted.
default required_generalization := "grid"

required_generalization := "none" if _sensitivity == "public"

default allow := false

allow if count(deny) == 0

default decision := {"allow": false, "deny": ["policy evaluation failed; denying (fail-closed)"], "required_generalization": "grid"}

decision := {
	"allow": allow,
	"deny": sort(deny),
	"required_generalization": required_generalization,
}

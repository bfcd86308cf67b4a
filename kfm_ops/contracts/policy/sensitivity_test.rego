package kfm.sensitivity_test

import data.kfm.sensitivity

_decide(inp) := d if {
	d := sensitivity.decision with input as inp
}

_exact_restricted_reason(store) := sprintf(
	"restricted geometry must be generalized to the 0.1 degree grid before it is written to %s",
	[store],
)

test_grid_degrees if {
	sensitivity.grid_degrees == 0.1
}

test_public_exact_allowed_in_every_store if {
	every store in {"search", "graph", "cache", "api"} {
		_decide({"sensitivity": "public", "store": store, "geometry_exact": true}) == {"allow": true, "deny": [], "required_generalization": "none"}
	}
}

test_public_generalized_allowed if {
	_decide({"sensitivity": "public", "store": "api", "geometry_exact": false}) == {"allow": true, "deny": [], "required_generalization": "none"}
}

test_restricted_generalized_allowed_in_every_store if {
	every store in {"search", "graph", "cache", "api"} {
		_decide({"sensitivity": "restricted", "store": store, "geometry_exact": false}) == {"allow": true, "deny": [], "required_generalization": "grid"}
	}
}

test_restricted_exact_denied_in_every_store if {
	every store in {"search", "graph", "cache", "api"} {
		_decide({"sensitivity": "restricted", "store": store, "geometry_exact": true}) == {
			"allow": false,
			"deny": [_exact_restricted_reason(store)],
			"required_generalization": "grid",
		}
	}
}

test_unknown_sensitivity_denied if {
	d := _decide({"sensitivity": "internal", "store": "search", "geometry_exact": false})
	d == {
		"allow": false,
		"deny": [`input.sensitivity must be one of ["public", "restricted"]`],
		"required_generalization": "grid",
	}
}

test_sensitivity_is_case_sensitive if {
	not _decide({"sensitivity": "Public", "store": "search", "geometry_exact": true}).allow
}

test_unknown_store_denied if {
	d := _decide({"sensitivity": "public", "store": "s3", "geometry_exact": false})
	d == {
		"allow": false,
		"deny": [`input.store must be one of ["api", "cache", "graph", "search"]`],
		"required_generalization": "none",
	}
}

test_missing_sensitivity_denied if {
	d := _decide({"store": "search", "geometry_exact": false})
	d == {"allow": false, "deny": ["missing input.sensitivity"], "required_generalization": "grid"}
}

test_missing_store_denied if {
	d := _decide({"sensitivity": "restricted", "geometry_exact": false})
	d == {"allow": false, "deny": ["missing input.store"], "required_generalization": "grid"}
}

test_missing_geometry_exact_denied if {
	d := _decide({"sensitivity": "public", "store": "graph"})
	d == {"allow": false, "deny": ["missing input.geometry_exact"], "required_generalization": "none"}
}

test_geometry_exact_must_be_boolean if {
	d := _decide({"sensitivity": "restricted", "store": "cache", "geometry_exact": "false"})
	d == {"allow": false, "deny": ["input.geometry_exact must be a boolean"], "required_generalization": "grid"}
}

test_null_fields_are_missing if {
	d := _decide({"sensitivity": null, "store": null, "geometry_exact": null})
	d.deny == ["missing input.geometry_exact", "missing input.sensitivity", "missing input.store"]
}

test_empty_input_denied if {
	d := _decide({})
	d.allow == false
	d.required_generalization == "grid"
	count(d.deny) == 3
}

test_no_input_denied if {
	sensitivity.decision == {
		"allow": false,
		"deny": ["missing input.geometry_exact", "missing input.sensitivity", "missing input.store"],
		"required_generalization": "grid",
	}
	not sensitivity.allow
}

test_input_not_object_denied if {
	d := _decide("restricted")
	d.allow == false
	count(d.deny) == 3
}

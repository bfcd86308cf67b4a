package kfm.meta_test

import data.kfm.meta

test_bundle_identity if {
	meta.bundle == {
		"name": "kfm",
		"revision": "kfm-policy-2026.11.1",
		"packages": ["kfm.stac", "kfm.sensitivity"],
	}
}

# Every advertised package answers its decision with no input (fail-closed).
test_advertised_packages_are_loaded if {
	data.kfm.stac.decision.allow == false
	data.kfm.sensitivity.decision.allow == false
}

package kfm.stac_test

import data.kfm.stac

# A publishable item: a Konza Prairie (Riley County, Kansas) land-cover tile.
valid_item := {
	"type": "Feature",
	"stac_version": "1.0.0",
	"stac_extensions": ["https://stac-extensions.github.io/processing/v1.2.0/schema.json"],
	"id": "ks-landcover-konza-2026-10",
	"bbox": [-96.62, 39.06, -96.52, 39.12],
	"geometry": {
		"type": "Polygon",
		"coordinates": [[
			[-96.62, 39.06],
			[-96.52, 39.06],
			[-96.52, 39.12],
			[-96.62, 39.12],
			[-96.62, 39.06],
		]],
	},
	"properties": {
		"datetime": "2026-10-15T17:00:00Z",
		"title": "Konza Prairie land cover, October 2026",
		"kfm:policy_label": "public",
		"kfm:spec_hash": "sha256:3b1f0c9e2a7d4f6b8c0e1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d",
		"kfm:evidence_ref": "https://kfm.example/evidence/ks-landcover-konza-2026-10",
		"kfm:run_receipt_url": "https://kfm.example/runs/2026-10-15T1700Z/receipt.json",
		"kfm:release_manifest_ref": "https://kfm.example/releases/2026.11/manifest.json",
		"processing:software": {"kfm-pipeline": "2026.11.0", "gdal": "3.9.2"},
		"processing:version": "2026.11.0",
		"processing:datetime": "2026-10-15T17:42:10Z",
		"processing:lineage": "Classified from rawhide-free Sentinel-2 L2A composites",
	},
	"links": [
		{"rel": "self", "href": "https://kfm.example/stac/items/ks-landcover-konza-2026-10.json"},
		{"rel": "provenance", "href": "https://kfm.example/provenance/ks-landcover-konza-2026-10.jsonld"},
		{"rel": "evidence", "href": "https://kfm.example/evidence/ks-landcover-konza-2026-10"},
		{"rel": "release-manifest", "href": "https://kfm.example/releases/2026.11/manifest.json"},
	],
	"assets": {
		"data": {
			"href": "data/processed/landcover/ks-landcover-konza-2026-10.tif",
			"type": "image/tiff; application=geotiff; profile=cloud-optimized",
			"roles": ["data"],
		},
		"provenance": {
			"href": "data/processed/landcover/ks-landcover-konza-2026-10.prov.json",
			"type": "application/json",
			"roles": ["metadata"],
		},
	},
}

valid_point := json.patch(valid_item, [
	{"op": "replace", "path": "/id", "value": "ks-gauge-06887500"},
	{"op": "replace", "path": "/geometry", "value": {"type": "Point", "coordinates": [-96.5944, 39.1836]}},
	{"op": "remove", "path": "/bbox"},
])

# The decision for a single item.
_decide(item) := d if {
	d := stac.decision with input as {"item": item}
}

# The item is denied with exactly this one reason.
_denied_only(item, reason) if {
	_decide(item) == {"allow": false, "deny": [reason]}
}

_remove(item, pointer) := json.patch(item, [{"op": "remove", "path": pointer}])

_replace(item, pointer, value) := json.patch(item, [{"op": "replace", "path": pointer, "value": value}])

# --- valid items -------------------------------------------------------------

test_valid_polygon_item_allowed if {
	_decide(valid_item) == {"allow": true, "deny": []}
	stac.allow with input as {"item": valid_item}
}

test_valid_point_item_allowed if {
	_decide(valid_point) == {"allow": true, "deny": []}
}

test_restricted_label_allowed if {
	_decide(_replace(valid_item, "/properties/kfm:policy_label", "restricted")).allow
}

test_processing_software_string_allowed if {
	_decide(_replace(valid_item, "/properties/processing:software", "kfm-pipeline 2026.11.0")).allow
}

test_strings_merely_containing_raw_pass if {
	item := json.patch(valid_item, [
		{"op": "replace", "path": "/assets/data/href", "value": "data/processed/raw-ish.tif"},
		{"op": "replace", "path": "/properties/title", "value": "rawhide"},
		{"op": "add", "path": "/properties/kfm:note", "value": "network/workspace/quarantined-not/raw_data/teamwork"},
		{"op": "add", "path": "/links/-", "value": {"rel": "related", "href": "https://kfm.example/rawdata/working/x"}},
	])
	_decide(item) == {"allow": true, "deny": []}
}

# --- GeoJSON Feature ---------------------------------------------------------

test_missing_type if {
	_denied_only(_remove(valid_item, "/type"), `type must be "Feature"`)
}

test_wrong_type if {
	_denied_only(_replace(valid_item, "/type", "FeatureCollection"), `type must be "Feature"`)
}

test_missing_geometry if {
	_denied_only(_remove(valid_item, "/geometry"), "missing geometry")
}

test_null_geometry if {
	_denied_only(_replace(valid_item, "/geometry", null), "missing geometry")
}

test_geometry_not_object if {
	_denied_only(_replace(valid_item, "/geometry", "POINT(-96.59 39.18)"), "geometry must be a GeoJSON geometry object")
}

test_missing_geometry_type if {
	_denied_only(_remove(valid_item, "/geometry/type"), "missing geometry.type")
}

test_bad_geometry_type if {
	_decide(_replace(valid_item, "/geometry/type", "Circle")).allow == false
	startswith(_decide(_replace(valid_item, "/geometry/type", "Circle")).deny[0], "geometry.type must be one of")
}

test_missing_geometry_coordinates if {
	_denied_only(_remove(valid_item, "/geometry/coordinates"), "missing geometry.coordinates")
}

test_empty_geometry_coordinates if {
	_denied_only(_replace(valid_item, "/geometry/coordinates", []), "geometry.coordinates must be a non-empty array")
}

# --- stac_version and id -----------------------------------------------------

test_missing_stac_version if {
	_denied_only(_remove(valid_item, "/stac_version"), "missing stac_version")
}

test_empty_stac_version if {
	_denied_only(_replace(valid_item, "/stac_version", ""), "stac_version must be a non-empty string")
}

test_numeric_stac_version if {
	_denied_only(_replace(valid_item, "/stac_version", 1), "stac_version must be a non-empty string")
}

test_missing_id if {
	_denied_only(_remove(valid_item, "/id"), "missing id")
}

test_blank_id if {
	_denied_only(_replace(valid_item, "/id", "   "), "id must be a non-empty string")
}

# --- properties --------------------------------------------------------------

test_missing_properties if {
	_denied_only(_remove(valid_item, "/properties"), "missing properties")
}

test_properties_not_object if {
	_denied_only(_replace(valid_item, "/properties", []), "properties must be an object")
}

test_missing_policy_label if {
	_denied_only(_remove(valid_item, "/properties/kfm:policy_label"), "missing properties.kfm:policy_label")
}

test_missing_spec_hash if {
	_denied_only(_remove(valid_item, "/properties/kfm:spec_hash"), "missing properties.kfm:spec_hash")
}

test_empty_spec_hash if {
	_denied_only(_replace(valid_item, "/properties/kfm:spec_hash", ""), "properties.kfm:spec_hash must be a non-empty string")
}

test_missing_evidence_ref if {
	_denied_only(_remove(valid_item, "/properties/kfm:evidence_ref"), "missing properties.kfm:evidence_ref")
}

test_missing_run_receipt_url if {
	_denied_only(_remove(valid_item, "/properties/kfm:run_receipt_url"), "missing properties.kfm:run_receipt_url")
}

test_missing_release_manifest_ref if {
	_denied_only(
		_remove(valid_item, "/properties/kfm:release_manifest_ref"),
		"missing properties.kfm:release_manifest_ref",
	)
}

test_missing_processing_software if {
	_denied_only(_remove(valid_item, "/properties/processing:software"), "missing properties.processing:software")
}

test_empty_processing_software_object if {
	_denied_only(
		_replace(valid_item, "/properties/processing:software", {}),
		"properties.processing:software must be a non-empty object or string",
	)
}

test_empty_processing_software_string if {
	_denied_only(
		_replace(valid_item, "/properties/processing:software", ""),
		"properties.processing:software must be a non-empty object or string",
	)
}

test_missing_processing_version if {
	_denied_only(_remove(valid_item, "/properties/processing:version"), "missing properties.processing:version")
}

test_missing_processing_datetime if {
	_denied_only(_remove(valid_item, "/properties/processing:datetime"), "missing properties.processing:datetime")
}

test_null_processing_datetime if {
	_denied_only(_replace(valid_item, "/properties/processing:datetime", null), "missing properties.processing:datetime")
}

test_bad_policy_label if {
	_denied_only(
		_replace(valid_item, "/properties/kfm:policy_label", "internal"),
		`properties.kfm:policy_label must be one of ["public", "restricted"], got "internal"`,
	)
}

test_policy_label_is_case_sensitive if {
	not _decide(_replace(valid_item, "/properties/kfm:policy_label", "Public")).allow
}

test_policy_label_not_string if {
	_denied_only(
		_replace(valid_item, "/properties/kfm:policy_label", true),
		"properties.kfm:policy_label must be a non-empty string",
	)
}

test_all_properties_missing_reports_each if {
	d := _decide(_replace(valid_item, "/properties", {}))
	d.allow == false
	count(d.deny) == 8
	"missing properties.kfm:spec_hash" in d.deny
	"missing properties.processing:software" in d.deny
}

# --- links -------------------------------------------------------------------

test_missing_links if {
	_denied_only(_remove(valid_item, "/links"), "missing links")
}

test_links_not_array if {
	_denied_only(_replace(valid_item, "/links", {"provenance": "x"}), "links must be an array")
}

test_missing_provenance_link if {
	_denied_only(_remove(valid_item, "/links/1"), `missing links entry with rel "provenance" and a non-empty href`)
}

test_missing_evidence_link if {
	_denied_only(_remove(valid_item, "/links/2"), `missing links entry with rel "evidence" and a non-empty href`)
}

test_missing_release_manifest_link if {
	_denied_only(_remove(valid_item, "/links/3"), `missing links entry with rel "release-manifest" and a non-empty href`)
}

test_link_with_empty_href_does_not_count if {
	_denied_only(_replace(valid_item, "/links/2/href", ""), `missing links entry with rel "evidence" and a non-empty href`)
}

test_empty_links_reports_all_rels if {
	d := _decide(_replace(valid_item, "/links", []))
	d.deny == [
		`missing links entry with rel "evidence" and a non-empty href`,
		`missing links entry with rel "provenance" and a non-empty href`,
		`missing links entry with rel "release-manifest" and a non-empty href`,
	]
}

# --- assets ------------------------------------------------------------------

test_missing_assets if {
	_denied_only(_remove(valid_item, "/assets"), "missing assets")
}

test_assets_not_object if {
	_denied_only(_replace(valid_item, "/assets", ["data/processed/a.tif"]), "assets must be an object")
}

test_missing_data_asset if {
	_denied_only(_remove(valid_item, "/assets/data"), "missing assets.data")
}

test_missing_provenance_asset if {
	_denied_only(_remove(valid_item, "/assets/provenance"), "missing assets.provenance")
}

test_data_asset_not_object if {
	_denied_only(_replace(valid_item, "/assets/data", "data/processed/a.tif"), "assets.data must be an object")
}

test_missing_data_asset_href if {
	_denied_only(_remove(valid_item, "/assets/data/href"), "missing assets.data.href")
}

test_empty_provenance_asset_href if {
	_denied_only(_replace(valid_item, "/assets/provenance/href", ""), "assets.provenance.href must be a non-empty string")
}

# --- raw / work / quarantine references ----------------------------------------

test_raw_path_in_asset_href if {
	_denied_only(
		_replace(valid_item, "/assets/data/href", "s3://kfm/raw/x.tif"),
		`assets.data.href references a raw/work/quarantine path: "s3://kfm/raw/x.tif"`,
	)
}

test_work_path_in_link_href if {
	_denied_only(
		_replace(valid_item, "/links/1/href", "data/work/a"),
		`links[1].href references a raw/work/quarantine path: "data/work/a"`,
	)
}

test_quarantine_path_in_property if {
	_denied_only(
		_replace(valid_item, "/properties/kfm:evidence_ref", "/quarantine/"),
		`properties.kfm:evidence_ref references a raw/work/quarantine path: "/quarantine/"`,
	)
}

test_raw_prefix_relative_path if {
	_denied_only(
		_replace(valid_item, "/assets/provenance/href", "raw/ks/konza.prov.json"),
		`assets.provenance.href references a raw/work/quarantine path: "raw/ks/konza.prov.json"`,
	)
}

test_raw_after_colon if {
	_denied_only(
		_replace(valid_item, "/properties/processing:lineage", "kfm:raw/sentinel-2"),
		`properties.processing:lineage references a raw/work/quarantine path: "kfm:raw/sentinel-2"`,
	)
}

test_raw_reference_nested_in_array if {
	item := json.patch(valid_item, [{
		"op": "add", "path": "/properties/kfm:inputs",
		"value": ["data/processed/a.tif", {"href": "gs://kfm/work"}],
	}])
	_denied_only(item, `properties.kfm:inputs[1].href references a raw/work/quarantine path: "gs://kfm/work"`)
}

test_each_raw_reference_reported if {
	item := json.patch(valid_item, [
		{"op": "replace", "path": "/assets/data/href", "value": "s3://kfm/raw/x.tif"},
		{"op": "replace", "path": "/links/0/href", "value": "https://kfm.example/quarantine/x.json"},
	])
	count(_decide(item).deny) == 2
}

test_regex_boundaries if {
	regex.match(stac.forbidden_path_pattern, "s3://kfm/raw/x.tif")
	regex.match(stac.forbidden_path_pattern, "data/work/a")
	regex.match(stac.forbidden_path_pattern, "/quarantine/")
	regex.match(stac.forbidden_path_pattern, "raw")
	regex.match(stac.forbidden_path_pattern, "data/raw")
	not regex.match(stac.forbidden_path_pattern, "data/processed/raw-ish.tif")
	not regex.match(stac.forbidden_path_pattern, "rawhide")
	not regex.match(stac.forbidden_path_pattern, "data/rawdata/x")
	not regex.match(stac.forbidden_path_pattern, "homework/")
}

# --- malformed input -----------------------------------------------------------

_not_an_item := {"allow": false, "deny": ["input.item must be a STAC item object"]}

test_item_string if {
	stac.decision with input as {"item": "ks-landcover-konza-2026-10"}
	stac.decision == _not_an_item with input as {"item": "ks-landcover-konza-2026-10"}
}

test_item_number if {
	stac.decision == _not_an_item with input as {"item": 42}
}

test_item_null if {
	stac.decision == _not_an_item with input as {"item": null}
}

test_item_array if {
	stac.decision == _not_an_item with input as {"item": [valid_item]}
}

test_item_missing if {
	stac.decision == _not_an_item with input as {"items": [valid_item]}
}

test_input_missing if {
	stac.decision == _not_an_item
	not stac.allow
}

test_input_not_object if {
	stac.decision == _not_an_item with input as "ks-landcover-konza-2026-10"
}

test_empty_object_item_denied_for_everything if {
	d := _decide({})
	d.allow == false
	"missing id" in d.deny
	"missing geometry" in d.deny
	"missing properties" in d.deny
	"missing links" in d.deny
	"missing assets" in d.deny
	`type must be "Feature"` in d.deny
}

test_deny_is_sorted if {
	d := _decide({})
	d.deny == sort(d.deny)
}

# --- batch -------------------------------------------------------------------

_bad_label_point := json.patch(valid_point, [
	{"op": "replace", "path": "/id", "value": "ks-gauge-06888000"},
	{"op": "replace", "path": "/properties/kfm:policy_label", "value": "secret"},
])

_batch_input := {"items": [
	valid_item,
	valid_point,
	_remove(valid_item, "/id"),
	"not-an-item",
	_bad_label_point,
	null,
]}

test_batch_keys_by_id_with_index_fallback if {
	b := stac.batch with input as _batch_input
	object.keys(b) == {"ks-landcover-konza-2026-10", "ks-gauge-06887500", "#2", "#3", "ks-gauge-06888000", "#5"}
}

test_batch_decisions if {
	b := stac.batch with input as _batch_input
	b["ks-landcover-konza-2026-10"] == {"allow": true, "deny": []}
	b["ks-gauge-06887500"] == {"allow": true, "deny": []}
	b["#2"] == {"allow": false, "deny": ["missing id"]}
	b["#3"] == {"allow": false, "deny": ["input.items[3] must be a STAC item object"]}
	b["ks-gauge-06888000"] == {"allow": false, "deny": [`properties.kfm:policy_label must be one of ["public", "restricted"], got "secret"`]}
	b["#5"] == {"allow": false, "deny": ["input.items[5] must be a STAC item object"]}
}

test_batch_decision_matches_single_decision if {
	b := stac.batch with input as _batch_input
	b["ks-gauge-06888000"] == _decide(_bad_label_point)
}

test_batch_non_string_id_uses_index if {
	b := stac.batch with input as {"items": [_replace(valid_item, "/id", 7)]}
	b == {"#0": {"allow": false, "deny": ["id must be a non-empty string"]}}
}

test_batch_summary if {
	stac.batch_summary == {"checked": 6, "denied": 4} with input as _batch_input
}

test_batch_summary_all_valid if {
	stac.batch_summary == {"checked": 2, "denied": 0} with input as {"items": [valid_item, valid_point]}
}

test_batch_duplicate_ids_denied if {
	inp := {"items": [valid_item, valid_item]}
	b := stac.batch with input as inp
	b == {"ks-landcover-konza-2026-10": {
		"allow": false,
		"deny": [`duplicate batch key "ks-landcover-konza-2026-10" shared by input.items [0, 1]`],
	}}
	stac.batch_summary == {"checked": 2, "denied": 2} with input as inp
}

test_batch_duplicate_reasons_name_the_item if {
	b := stac.batch with input as {"items": [valid_item, _remove(valid_item, "/assets/data")]}
	b["ks-landcover-konza-2026-10"].deny == [
		`duplicate batch key "ks-landcover-konza-2026-10" shared by input.items [0, 1]`,
		"input.items[1]: missing assets.data",
	]
}

test_batch_empty if {
	stac.batch == {} with input as {"items": []}
	stac.batch_summary == {"checked": 0, "denied": 0} with input as {"items": []}
}

test_batch_malformed_input_is_empty if {
	stac.batch == {} with input as {"items": "ks-landcover-konza-2026-10"}
	stac.batch == {} with input as {"item": valid_item}
	stac.batch == {}
	stac.batch_summary == {"checked": 0, "denied": 0}
}

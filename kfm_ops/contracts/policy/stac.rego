# METADATA
# title: KFM STAC item publication gate
# description: |
#   Fail-closed gate deciding whether a STAC item may be published.
#   data.kfm.stac.decision       input {"item": {...}}   -> {"allow": bool, "deny": [string]}
#   data.kfm.stac.batch          input {"items": [...]}  -> {<id or "#i">: {"allow", "deny"}}
#   data.kfm.stac.batch_summary  input {"items": [...]}  -> {"checked": n, "denied": m}
package kfm.stac

# Reason used when evaluation fails in an unexpected way.
eval_failed := "policy evaluation failed; denying (fail-closed)"

allowed_policy_labels := {"public", "restricted"}

# GeoJSON geometry types that carry "coordinates" (GeometryCollection does not).
geometry_types := {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}

required_string_properties := [
	"kfm:policy_label",
	"kfm:spec_hash",
	"kfm:evidence_ref",
	"kfm:run_receipt_url",
	"kfm:release_manifest_ref",
	"processing:version",
	"processing:datetime",
]

required_link_rels := ["provenance", "evidence", "release-manifest"]

required_assets := ["data", "provenance"]

# Any string value in the item matching this references an unpublished stage.
forbidden_path_pattern := `(^|[/:])(raw|work|quarantine)(/|$)`

# ---------------------------------------------------------------------------
# Single item: data.kfm.stac.decision

default _input_item := null

_input_item := input.item

_reasons := _item_deny(_input_item, "input.item")

default allow := false

allow if {
	is_object(_input_item)
	count(_reasons) == 0
}

default decision := {"allow": false, "deny": ["policy evaluation failed; denying (fail-closed)"]}

decision := {"allow": allow, "deny": sort(_reasons)}

# ---------------------------------------------------------------------------
# Batch: data.kfm.stac.batch and data.kfm.stac.batch_summary
#
# A missing or non-array input.items is an empty batch: nothing is allowed.

_items := input.items if {
	is_array(input.items)
} else := []

# Key of item i: its id when that is a non-empty string, else "#<i>".
_batch_key(i, item) := item.id if {
	is_object(item)
	_nonempty_string(item.id)
} else := sprintf("#%d", [i])

_keys := {i: _batch_key(i, item) | some i, item in _items}

# key -> indices of the items carrying that key (more than one = duplicate).
_key_indices := {k: idxs |
	some k in _keys
	idxs := sort([i | some i, kk in _keys; kk == k])
}

_item_reason_sets := {i: _batch_item_reasons(i, item) | some i, item in _items}

_batch_item_reasons(i, item) := _item_deny(item, sprintf("input.items[%d]", [i])) if {
	count(_key_indices[_keys[i]]) == 1
} else := reasons if {
	# Duplicate key: every item sharing it is denied, and each reason says
	# which item it belongs to, since they are merged under one key.
	k := _keys[i]
	label := sprintf("input.items[%d]", [i])
	own := {sprintf("%s: %s", [label, r]) | some r in _item_deny(item, label)}
	dup := sprintf("duplicate batch key %q shared by input.items %v", [k, _key_indices[k]])
	reasons := own | {dup}
}

# Reasons for item i; an index whose evaluation failed is denied.
_reasons_at(i) := object.get(_item_reason_sets, i, {eval_failed})

default batch := {}

batch := {k: d |
	some k, idxs in _key_indices
	rs := {r | some i in idxs; some r in _reasons_at(i)}
	d := {"allow": count(rs) == 0, "deny": sort(rs)}
}

batch_summary := {
	"checked": count(_items),
	"denied": count([i | some i, _ in _items; count(_reasons_at(i)) > 0]),
}

# ---------------------------------------------------------------------------
# Rules for one item. `label` names the item in the "not an object" reason.

_item_deny(item, label) := {sprintf("%s must be a STAC item object", [label])} if {
	not is_object(item)
} else := union({
	_type_reasons(item),
	_geometry_reasons(item),
	_req_string(item, "stac_version", "stac_version"),
	_req_string(item, "id", "id"),
	_property_reasons(item),
	_link_reasons(item),
	_asset_reasons(item),
	_path_reasons(item),
})

_type_reasons(item) := set() if {
	object.get(item, "type", null) == "Feature"
} else := {`type must be "Feature"`}

_geometry_reasons(item) := {"missing geometry"} if {
	object.get(item, "geometry", null) == null
} else := {"geometry must be a GeoJSON geometry object"} if {
	not is_object(item.geometry)
} else := _geometry_type_reasons(item.geometry) | _geometry_coordinates_reasons(item.geometry)

_geometry_type_reasons(g) := set() if {
	g.type in geometry_types
} else := {"missing geometry.type"} if {
	object.get(g, "type", null) == null
} else := {sprintf("geometry.type must be one of %v", [sort(geometry_types)])}

_geometry_coordinates_reasons(g) := set() if {
	is_array(g.coordinates)
	count(g.coordinates) > 0
} else := {"missing geometry.coordinates"} if {
	object.get(g, "coordinates", null) == null
} else := {"geometry.coordinates must be a non-empty array"}

_property_reasons(item) := {"missing properties"} if {
	object.get(item, "properties", null) == null
} else := {"properties must be an object"} if {
	not is_object(item.properties)
} else := union({
	{r |
		some key in required_string_properties
		some r in _req_string(item.properties, key, concat(".", ["properties", key]))
	},
	_software_reasons(item.properties),
	_label_reasons(item.properties),
})

# processing:software is a {name: version} object in the STAC processing
# extension; a plain string is accepted too.
_software_reasons(props) := set() if {
	_nonempty_string(props["processing:software"])
} else := set() if {
	is_object(props["processing:software"])
	count(props["processing:software"]) > 0
} else := {"missing properties.processing:software"} if {
	object.get(props, "processing:software", null) == null
} else := {"properties.processing:software must be a non-empty object or string"}

# Only judged when the label is a non-empty string (else _req_string reports it).
_label_reasons(props) := {sprintf("properties.kfm:policy_label must be one of %v, got %q", [sort(allowed_policy_labels), label])} if {
	label := props["kfm:policy_label"]
	_nonempty_string(label)
	not label in allowed_policy_labels
} else := set()

_link_reasons(item) := {"missing links"} if {
	object.get(item, "links", null) == null
} else := {"links must be an array"} if {
	not is_array(item.links)
} else := {sprintf("missing links entry with rel %q and a non-empty href", [rel]) |
	some rel in required_link_rels
	not _has_link(item.links, rel)
}

_has_link(links, rel) if {
	some link in links
	is_object(link)
	link.rel == rel
	_nonempty_string(link.href)
}

_asset_reasons(item) := {"missing assets"} if {
	object.get(item, "assets", null) == null
} else := {"assets must be an object"} if {
	not is_object(item.assets)
} else := {r |
	some key in required_assets
	some r in _asset_key_reasons(item.assets, key)
}

_asset_key_reasons(assets, key) := {sprintf("missing assets.%s", [key])} if {
	object.get(assets, key, null) == null
} else := {sprintf("assets.%s must be an object", [key])} if {
	not is_object(assets[key])
} else := _req_string(assets[key], "href", sprintf("assets.%s.href", [key]))

# Every string value anywhere in the item is checked; the reason names its path.
_path_reasons(item) := {sprintf("%s references a raw/work/quarantine path: %q", [_path_string(path), value]) |
	walk(item, [path, value])
	is_string(value)
	regex.match(forbidden_path_pattern, value)
}

# ["links", 0, "href"] -> "links[0].href"
_path_string(path) := trim_prefix(concat("", [_path_segment(seg) | some seg in path]), ".")

_path_segment(seg) := sprintf("[%d]", [seg]) if {
	is_number(seg)
} else := sprintf(".%v", [seg])

# ---------------------------------------------------------------------------
# Helpers

_nonempty_string(x) if {
	is_string(x)
	trim_space(x) != ""
}

# One reason when obj[key] is not a non-empty string: "missing <label>" when
# absent or null, "<label> must be a non-empty string" otherwise.
_req_string(obj, key, label) := set() if {
	_nonempty_string(obj[key])
} else := {sprintf("missing %s", [label])} if {
	object.get(obj, key, null) == null
} else := {sprintf("%s must be a non-empty string", [label])}

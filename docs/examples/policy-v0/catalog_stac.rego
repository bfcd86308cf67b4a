# A KFM policy bundle written the other common way: Rego v0 (serve with `opa run --v0-compatible`),
# a `deny` set of messages and an `allow` rule over the bare STAC item as input.
# kfm-ops checks it by configuration only: ./policy.json (docs/policy.md, "Other bundles").
package kfm.catalog.stac

required_properties = ["kfm:policy_label", "kfm:spec_hash", "kfm:evidence_ref", "processing:version"]

policy_labels = {"public", "restricted"}

deny[msg] {
	not is_object(input)
	msg := "the input must be a STAC item object"
}

deny[msg] {
	is_object(input)
	object.get(input, "type", "") != "Feature"
	msg := "type must be Feature"
}

deny[msg] {
	is_object(input)
	not nonempty_string(object.get(input, "id", ""))
	msg := "id must be a non-empty string"
}

deny[msg] {
	is_object(input)
	p := required_properties[_]
	not nonempty_string(object.get(object.get(input, "properties", {}), p, ""))
	msg := sprintf("missing properties.%s", [p])
}

deny[msg] {
	is_object(input)
	label := object.get(object.get(input, "properties", {}), "kfm:policy_label", null)
	not policy_labels[label]
	msg := sprintf("kfm:policy_label %v is not public or restricted", [label])
}

deny[msg] {
	is_object(input)
	walk(input, [path, value])
	is_string(value)
	regex.match(`(^|[/:])(raw|work|quarantine)(/|$)`, value)
	msg := sprintf("%v references a raw/work/quarantine path", [concat(".", [sprintf("%v", [p]) | p := path[_]])])
}

allow {
	is_object(input)
	count(deny) == 0
}

nonempty_string(x) {
	is_string(x)
	x != ""
}

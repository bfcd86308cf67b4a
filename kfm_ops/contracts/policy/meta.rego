# METADATA
# title: KFM policy bundle identity
# description: |
#   GET /v1/data/kfm/meta/bundle lets a health check confirm the bundle is
#   loaded and which revision it is. Keep revision in step with .manifest.
package kfm.meta

bundle := {
	"name": "kfm",
	"revision": "kfm-policy-2026.11.1",
	"packages": ["kfm.stac", "kfm.sensitivity"],
}

#!/usr/bin/env bash
# Regenerate the container image's pinned dependency sets (with hashes) from pyproject.toml.
# Needs pip-tools (pip install pip-tools); run from anywhere, with the Python of the image (3.11).
set -euo pipefail
cd "$(dirname "$0")/../.."
unset PIP_FIND_LINKS
export CUSTOM_COMPILE_COMMAND="deploy/container/lock.sh"
pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
    --output-file deploy/container/requirements.txt pyproject.toml
printf 'setuptools>=68\nwheel\n' > deploy/container/build-requirements.in
pip-compile --quiet --generate-hashes --allow-unsafe --no-emit-index-url --no-emit-find-links \
    --output-file deploy/container/build-requirements.txt deploy/container/build-requirements.in

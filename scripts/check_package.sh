#!/bin/sh
# Build the sdist and wheel as a user or a release would (python -m build, in an isolated environment), then
# install the wheel with pipx into a throwaway PIPX_HOME and run the installed command. Needs the network
# (setuptools for the build, aibx's dependencies for pipx); tests/test_packaging.py checks the same offline.
#   usage: scripts/check_package.sh [PYTHON]      (PYTHON: an interpreter with build and pipx installed)
set -eu
python=${1:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/aibx-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$python" -m build --outdir "$work/dist" "$root"
wheel=$(ls "$work"/dist/aibx-*.whl)
export PIPX_HOME="$work/pipx" PIPX_BIN_DIR="$work/bin" PIPX_MAN_DIR="$work/man"
"$python" -m pipx install "$wheel"
"$work/bin/aibx" --version
"$work/bin/aibx" validate "$root/fixtures/quickstart/hello-linux.json"
"$work/bin/aibx" translate "$root/fixtures/translate/aib/linux-platform.json" --to packer -o "$work/x.pkr.hcl" --allow-lossy 2>/dev/null
"$python" -m pipx install --force "$root"   # pipx install . (from the source tree)
"$work/bin/aibx" --version
echo "package check passed: $(basename "$wheel")"

#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian/Ubuntu machine: system packages, then a Python venv.
# Safe to re-run: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"

# chromium + chromium-driver: the web page's browser test (tests/test_app.py) drives the system browser
SYSTEM_PACKAGES=(ffmpeg fluidsynth fluid-soundfont-gm chromium chromium-driver)
missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup: please install these Debian packages first: ${missing[*]}" >&2; exit 1
  fi
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt; then
  echo "setup: pip install failed (see above)" >&2; exit 1
fi
# The project itself, editable: the console commands (v2m-infer, v2m-train, ...) on the venv's PATH.
PIP_EDITABLE=(.venv/bin/python -m pip install --disable-pip-version-check -q --no-deps -e .)
if ! "${PIP_EDITABLE[@]}" --no-build-isolation 2>/dev/null && ! "${PIP_EDITABLE[@]}"; then
  echo "setup: pip install -e . failed (see above)" >&2; exit 1
fi
echo "setup: ready (.venv)"

#!/usr/bin/env bash
# Installs everything the test suite needs, then runs the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[test]"
# Headless Chromium renders the HTML report in its test (Debian package; skipped where apt is unavailable).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "note: chromium not installed; the report screenshot test will be skipped"
fi
python3 -m pytest -q "$@"

#!/usr/bin/env bash
# Installs everything the test suite needs, then runs the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[test]"
# Headless Chromium renders the HTML report and drives the review page in their tests (Debian package, driven
# through Playwright's Python client; never `playwright install`; the tests skip where chromium is missing).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "note: chromium not installed; the report and review-page browser tests will be skipped"
fi
python3 -m pytest -q "$@"

#!/usr/bin/env bash
# Refresh constraints/lock.txt and constraints/lock-transformers-min.txt: the newest releases pip resolves within
# pyproject.toml's ranges, in a temporary venv (on this image pip is capped at torch<=2.14.1 / torchvision<=0.29.1 by
# /etc/xdg/pip; uv would ignore that cap). The second lock is the same environment with the newest patch release of
# the lowest supported transformers minor (TESTED_TRANSFORMERS). Run the tests (.ci/run) before committing the result.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$(python_for_venv)" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check -e "$REPO[dev]"
write_lock "$tmp/venv" "$LOCK" ""
low="$("$tmp/venv/bin/python" -c '
import re
from modeling_frozencaptioner.configuration_frozencaptioner import TESTED_TRANSFORMERS
print(re.search(r">=\s*(\d+\.\d+)", TESTED_TRANSFORMERS).group(1))')"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "transformers~=$low.0"
write_lock "$tmp/venv" "$MIN_LOCK" ", then \`pip install \"transformers~=$low.0\"\` (the low end of the range)"
echo "wrote $LOCK and $MIN_LOCK"
diff "$LOCK" "$MIN_LOCK" || true

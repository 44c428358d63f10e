#!/usr/bin/env bash
# Fresh-machine test command (README): system packages, the project with its test extras in .venv at the locked
# versions (constraints/lock.txt), then the default suite. Extra arguments go to pytest (e.g. -m slow, -k name).
set -euo pipefail
source "$(dirname "$0")/_env.sh"
install_system_packages
install_project dev
cd "$REPO"
"$VENV/bin/python" -c 'import transformers; print("transformers", transformers.__version__)'
exec "$VENV/bin/python" -m pytest -q "$@"

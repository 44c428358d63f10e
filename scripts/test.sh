#!/usr/bin/env bash
# Fresh-machine test command (README): system packages, the project with its test extras, then the default suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ffmpeg >/dev/null || ! command -v java >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq ffmpeg default-jre-headless) >/dev/null
fi
python -m pip install -q -e ".[dev]"
python -m pytest -q "$@"

#!/usr/bin/env bash
# Drift report: install the newest releases pip can install here of every dependency (pyproject.toml's ranges
# ignored) into a temporary venv, run the fast model subset there, and print one line per package:
#   package  locked  newest  result
# `newest` is what pip installed: on this image /etc/xdg/pip caps torch<=2.14.1 and torchvision<=0.29.1, so for those
# the cap is the newest installable (PyPI's newest is shown next to it). `result` is the subset's outcome with the
# whole newest set (pass/FAIL); `same` marks packages whose newest equals the lock. Not part of CI (it needs time and
# the newest releases of the day); run it before widening a range, then refresh the lock (scripts/refresh_lock.sh).
set -euo pipefail
source "$(dirname "$0")/_env.sh"
install_system_packages
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$(python_for_venv)" -m venv "$tmp/venv"
py="$tmp/venv/bin/python"
# every requirement name of the [dev] closure, without version specifiers or markers that pin it
names="$("$py" - "$REPO/pyproject.toml" <<'PY'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras, seen, names = project["optional-dependencies"], set(), []
def walk(reqs):
    for req in reqs:
        spec, _, marker = req.partition(";")
        name = re.match(r"[A-Za-z0-9_.\-]+", spec.strip()).group(0)
        if name == project["name"]:
            for extra in re.search(r"\[(.*)\]", spec).group(1).split(","):
                if extra not in seen:
                    seen.add(extra)
                    walk(extras[extra.strip()])
        elif name not in names:
            names.append(name + (";" + marker if marker else ""))
walk(project["dependencies"] + ["frozencaptioner[dev]"])
print("\n".join(names))
PY
)"
mapfile -t reqs <<<"$names"
"$py" -m pip install -q --disable-pip-version-check --upgrade "${reqs[@]}"
"$py" -m pip install -q --disable-pip-version-check --no-deps -e "$REPO"
cd "$REPO"
if HF_HUB_OFFLINE=1 "$py" -m pytest -q -x tests/test_configuration.py tests/test_modeling.py tests/test_generation.py \
  tests/test_processor.py tests/test_remote_code.py >"$tmp/pytest.log" 2>&1; then result=pass; else result=FAIL; fi
tail -n 3 "$tmp/pytest.log"
printf '%-16s %-10s %-34s %s\n' package locked newest result
for name in transformers accelerate datasets huggingface_hub peft deepspeed torch torchvision torchcodec tokenizers \
  safetensors timm av numpy; do
  locked="$(grep -i "^${name}==" "$LOCK" | head -1 | cut -d= -f3)"
  newest="$("$py" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || echo '-')"
  note=""
  if [ "$name" = torch ] || [ "$name" = torchvision ]; then
    pypi="$("$py" -m pip index versions "$name" 2>/dev/null | sed -nE '1s/.*\((.*)\).*/\1/p' || true)"
    [ -n "$pypi" ] && [ "$pypi" != "$newest" ] && note=" (image cap; PyPI: $pypi)"
  fi
  status="$result"
  [ "$locked" = "$newest" ] && status="same, $result"
  printf '%-16s %-10s %-34s %s\n' "$name" "${locked:--}" "$newest$note" "$status"
done

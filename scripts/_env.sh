# Sourced by scripts/demo.sh, scripts/test.sh and .ci/run: system packages and the project's virtual environment,
# installed from the checked-in lock (constraints/lock.txt: Linux x86_64, CPython 3.11). Not a command of its own.
#   FROZENCAPTIONER_VENV  the environment folder (default: <repo>/.venv)
#   PYTHON                the interpreter that creates it (default: python3.11, else python3)
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FROZENCAPTIONER_VENV:-$REPO/.venv}"
LOCK="$REPO/constraints/lock.txt"

install_system_packages() {  # ffmpeg (test videos, PyAV/torchcodec), Java (PTB tokenizer + METEOR of CIDEr-D)
  if ! command -v ffmpeg >/dev/null || ! command -v java >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq ffmpeg default-jre-headless) >/dev/null
  fi
}

python_for_venv() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; elif command -v python3.11 >/dev/null; then echo python3.11; else echo python3; fi
}

install_project() {  # $1: extras, e.g. dev or all; installs exactly the locked versions into $VENV
  local py
  py="$(python_for_venv)"
  if [ "$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')" != "3.11" ]; then
    echo "warning: constraints/lock.txt was made for CPython 3.11; $py is not 3.11" >&2
  fi
  [ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$LOCK" -e "$REPO[$1]"
  activate "$VENV"
}

activate() {  # console scripts (accelerate, frozencaptioner) and `python` of this environment come first on PATH
  export VIRTUAL_ENV="$1" PATH="$1/bin:$PATH"
}

# The second environment at the other end of the supported transformers range: a venv layered over $VENV (its
# site-packages are added by a .pth file, after the layer's own), holding only the distributions whose locked
# versions differ (constraints/lock-transformers-min.txt vs lock.txt) and the project's own entry points. Installs in
# seconds instead of a second copy of torch.
MIN_VENV="${FROZENCAPTIONER_MIN_VENV:-$REPO/.venv-min}"
MIN_LOCK="$REPO/constraints/lock-transformers-min.txt"

install_min_env() {
  [ -x "$MIN_VENV/bin/python" ] || "$VENV/bin/python" -m venv --without-pip "$MIN_VENV"
  local site base
  site="$("$MIN_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  base="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "import site; site.addsitedir('$base')" > "$site/_frozencaptioner_base_env.pth"
  local differ
  differ="$(comm -13 <(locked_freeze "$LOCK" | sort) <(locked_freeze "$MIN_LOCK" | sort) | tr '\n' ' ')"
  # pip is the base environment's (the layer has none of its own) and installs into the layer's site-packages
  # shellcheck disable=SC2086
  "$MIN_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --ignore-installed $differ
  # the project's console scripts (frozencaptioner, ...) with the layer's interpreter
  "$MIN_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$REPO"
  activate "$MIN_VENV"
}

locked_freeze() {  # the lock without its comments, for comparison with `pip freeze`
  grep -v '^\s*#' "$1" | grep -v '^\s*$'
}

write_lock() {  # $1: environment, $2: lock file; the exact version of every installed distribution
  {
    echo "# Exact versions of every distribution of the environment CI passed with (Linux x86_64, CPython 3.11):"
    echo "# \`pip freeze --exclude-editable\` after \`pip install -e \".[dev]\"\`$3. .ci/run fails if the installed"
    echo "# set differs. Refresh both lock files with: bash scripts/refresh_lock.sh"
    "$1/bin/python" -m pip freeze --exclude-editable
  } > "$2"
}

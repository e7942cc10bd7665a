# Shared set-up steps for scripts/demo and scripts/test: install what is missing, nothing else.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PYTHON=${PYTHON:-python3}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root (or sudo) to run: $*" >&2; return 1; fi
}

# apt_need CMD:PACKAGE... -- install the Debian packages whose command is missing.
apt_need() {
    local missing=() pair cmd pkg
    for pair in "$@"; do
        cmd=${pair%%:*}; pkg=${pair#*:}
        if [ "${cmd:0:1}" = "@" ]; then
            "$PYTHON" -c "import ${cmd:1}" 2>/dev/null || missing+=("$pkg")
        else
            command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# venv_with EXTRAS -- a virtual environment at .venv with the project installed (editable).
# Re-installs only when pyproject.toml changed since the last install.
venv_with() {
    local extras=$1 stamp="$VENV/.installed" want
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        echo "clusterdns needs Python 3.11 or newer ($PYTHON is $("$PYTHON" -V 2>&1))" >&2; exit 1; }
    apt_need "@ensurepip:python3-venv"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1) $extras"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e "$ROOT$extras"
        echo "$want" >"$stamp"
    fi
}

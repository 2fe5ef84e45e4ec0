# Sourced by ./impasto and scripts/test: makes sure .venv holds impasto and its packages.
# Re-runs pip only when pyproject.toml changed since the last install.

impasto_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
impasto_venv=${IMPASTO_VENV:-$impasto_root/.venv}

ensure_venv() {
    local extras=${1:-}
    local stamp="$impasto_venv/.impasto-installed${extras:+-$extras}"
    if [ -x "$impasto_venv/bin/python" ] && [ -e "$stamp" ] && \
       [ ! "$impasto_root/pyproject.toml" -nt "$stamp" ]; then
        return 0
    fi
    local py=${PYTHON:-python3}
    if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "impasto: needs Python 3.11 or newer as '$py' (set PYTHON=...)" >&2
        return 1
    fi
    echo "impasto: setting up $impasto_venv (torch is large: this takes a few minutes, once)" >&2
    [ -x "$impasto_venv/bin/python" ] || "$py" -m venv "$impasto_venv"
    "$impasto_venv/bin/python" -m pip install -q --upgrade pip >&2 || true
    "$impasto_venv/bin/python" -m pip install --progress-bar on -e "$impasto_root${extras:+[$extras]}" >&2
    touch "$stamp"
}

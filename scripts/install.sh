# Sourced by scripts/dev and scripts/test: make .venv (or $KINEMA_VENV) and install Kinema with the
# extras named in $1 (e.g. "worker" or "worker,dev"). Torch is pinned first so pip takes the local
# wheel where one is provided instead of pulling a newer build.
VENV=${KINEMA_VENV:-.venv}
TORCH_SPEC=${KINEMA_TORCH_SPEC:-torch==2.13.0}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$TORCH_SPEC"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$1]"

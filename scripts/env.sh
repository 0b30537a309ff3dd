# shellcheck shell=bash
# Source this file: it creates or reuses the cached libtorch venv and exports what cargo needs
# to build tch against it with an embedded rpath (so `decal` runs without LD_LIBRARY_PATH).
#
#   DECAL_CACHE   where the venv lives (default: $XDG_CACHE_HOME/decal or ~/.cache/decal)
#   DECAL_PYTHON  the python used to create the venv (default: python3)
_decal_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=versions.env
. "$_decal_root/scripts/versions.env"
DECAL_CACHE="${DECAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/decal}"
_decal_venv="$DECAL_CACHE/torch-$TORCH_VERSION"
if [ ! -f "$_decal_venv/.complete" ]; then
  echo "decal setup: installing torch==$TORCH_VERSION (libtorch) into $_decal_venv (one time, ~4.7 GB)" >&2
  mkdir -p "$DECAL_CACHE"
  rm -rf "$_decal_venv"
  "${DECAL_PYTHON:-python3}" -m venv "$_decal_venv" || { echo "decal setup: cannot create a venv with ${DECAL_PYTHON:-python3}" >&2; return 1; }
  "$_decal_venv/bin/pip" install --quiet --progress-bar off --disable-pip-version-check "torch==$TORCH_VERSION" \
    || { echo "decal setup: pip could not install torch==$TORCH_VERSION" >&2; return 1; }
  touch "$_decal_venv/.complete"
fi
# numpy, once per pinned version (venvs made before it was pinned get it here, on their next use); the lock
# keeps two builds started at once from running pip on the same venv together.
if [ ! -f "$_decal_venv/.numpy-$NUMPY_VERSION" ]; then
  (
    command -v flock >/dev/null && flock 9
    [ -f "$_decal_venv/.numpy-$NUMPY_VERSION" ] && exit 0
    echo "decal setup: installing numpy==$NUMPY_VERSION into $_decal_venv (one time)" >&2
    "$_decal_venv/bin/pip" install --quiet --progress-bar off --disable-pip-version-check \
      "numpy==$NUMPY_VERSION; python_version >= '3.11'" "numpy==$NUMPY_VERSION_PY310; python_version < '3.11'" \
      && touch "$_decal_venv/.numpy-$NUMPY_VERSION"
  ) 9>"$_decal_venv/.setup.lock" || { echo "decal setup: pip could not install numpy==$NUMPY_VERSION" >&2; return 1; }
fi
_decal_torch="$("$_decal_venv/bin/python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')" \
  || { echo "decal setup: torch in $_decal_venv is broken; delete that folder and retry" >&2; return 1; }
export PATH="$_decal_venv/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export DECAL_LIBTORCH_LIB="$_decal_torch/lib"
# The rpath makes every binary cargo links (decal itself and the test binaries) find libtorch.
export RUSTFLAGS="-C link-arg=-Wl,-rpath,$_decal_torch/lib ${DECAL_EXTRA_RUSTFLAGS:-}"
unset _decal_root _decal_venv _decal_torch

#!/usr/bin/env bash
# One-time set-up on a fresh Debian/Ubuntu machine: system packages (when root or sudo is there)
# and a virtual environment .venv with momu-live installed (editable) and its pinned deps.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PKGS=(libportaudio2 libsndfile1 jackd2 puredata-core ffmpeg fluidsynth fluid-soundfont-gm)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
  echo "[setup] apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.momu-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing momu-live and pinned dependencies"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, pinned to the lean CPU build (2.13.0)
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[test,corpus]"
  touch "$stamp"
fi

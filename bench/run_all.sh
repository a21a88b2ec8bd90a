#!/usr/bin/env bash
# Runs every benchmark under bench/ (bench/*_bench.py) one after another; `make bench` calls this.
# Arguments are passed to each script (e.g. --quick). Exits non-zero if any script did.
set -u
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[[ -x $python ]] || python=python3
status=0
shopt -s nullglob
for script in bench/*_bench.py; do
  echo "=== $script"
  "$python" "$script" "$@" || { echo "=== $script failed (exit $?)"; status=1; }
  echo
done
exit $status

#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only those missing.
set -euo pipefail
packages=(unixodbc odbc-postgresql odbc-mariadb prometheus prometheus-alertmanager mtail wrk prometheus-sql-exporter faketime)
# The second engine (tests/test_vmalert.py): VictoriaMetrics with vmagent and vmalert, one Debian package.
packages+=(victoria-metrics)
# The status page in a real browser (tests/test_status_page.py, scripts/status_screenshot.py): Debian's chromium,
# driven by playwright from PyPI (which never downloads a browser here), a font so that screenshots of a
# minimal image show letters rather than boxes, and jq for the documented bot filter.
packages+=(chromium fonts-dejavu-core jq)
# The container test (tests/test_container.py): podman with runc, its network plugins and iptables for
# published ports, debootstrap for a base image when no container registry is reachable.
packages+=(podman runc containernetworking-plugins iptables debootstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "installing system packages: ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to apt-get install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"

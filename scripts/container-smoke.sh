#!/usr/bin/env bash
# Builds the image from the repository's Containerfile with podman and checks what it promises: the
# demo serves /metrics on a published loopback port, the HEALTHCHECK passes on the default and on a
# different --web.listen-address (and fails when nothing answers), and the ODBC drivers are installed.
#
# Everything podman keeps (images, layers, its run state, network state) stays in one work folder,
# $CONTAINER_WORK_DIR or build/container/ in the repository; containers are removed on exit. Without a
# reachable registry, the Containerfile's base image is a stand-in: Debian 12 from debootstrap (with the
# mirror apt uses) plus Debian's Python 3.11, tagged with the FROM name and built once. Needs root and
# scripts/install-system-deps.sh.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${CONTAINER_WORK_DIR:-$repo/build/container}
image=localhost/batch-exporter:smoke
containerfile=${CONTAINERFILE:-$repo/Containerfile}
base=$(awk 'toupper($1) == "FROM" { print $2; exit }' "$containerfile")
ca_bundle=/etc/ssl/certs/ca-certificates.crt

say() { printf '[container-smoke %(%T)T] %s\n' -1 "$*"; }
fail() { say "FAILED: $*" >&2; exit 1; }

mkdir -p "$work"/{storage,run,tmp,cni/net.d,cni/ipam}
exec 9>"$work/lock"
flock 9  # one run at a time per work folder

# podman's settings, all pointing into the work folder. crun refuses this kind of VM; runc works. The
# ulimits must stay within root's hard limits, or container start fails in setrlimit.
nofile=$(ulimit -Hn)
cat >"$work/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]

[engine]
runtime = "runc"
tmp_dir = "$work/run/libpod"
image_copy_tmp_dir = "$work/tmp"
events_logger = "none"
cgroup_manager = "cgroupfs"

[network]
network_backend = "cni"
network_config_dir = "$work/cni/net.d"
CONF
cat >"$work/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$work/storage"
runroot = "$work/run/storage"
CONF
# The default network with its address leases in the work folder (the packaged one keeps them in /var/lib/cni).
cat >"$work/cni/net.d/podman.conflist" <<CONF
{
  "cniVersion": "0.4.0",
  "name": "podman",
  "plugins": [
    {"type": "bridge", "bridge": "cni-podman0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$work/cni/ipam", "routes": [{"dst": "0.0.0.0/0"}],
              "ranges": [[{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall"},
    {"type": "tuning"}
  ]
}
CONF
export CONTAINERS_CONF=$work/containers.conf CONTAINERS_STORAGE_CONF=$work/storage.conf TMPDIR=$work/tmp

# Two caches podman keeps at fixed system paths whatever it is told (CNI results, the blob info cache):
# removed on exit when this run created them.
created=()
for dir in /var/lib/cni /var/lib/containers; do
  [[ -e $dir ]] || created+=("$dir")
done
containers=()
cleanup() {
  if ((${#containers[@]})); then
    podman rm --force --volumes --time 2 "${containers[@]}" >/dev/null 2>&1 || true
  fi
  if ((${#created[@]})); then
    rm -rf "${created[@]}"
  fi
}
trap cleanup EXIT

if ! podman image exists "$base"; then
  say "building the stand-in for $base (once per work folder)"
  mirror=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  rootfs=$work/rootfs
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 \
    || fail "debootstrap failed, see $work/debootstrap.log"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*  # 100 MB of downloads
  tar -C "$rootfs" -c . | podman import --quiet - localhost/debian:bookworm-minbase >/dev/null
  rm -rf "$rootfs"
  podman build --quiet --network host --pull=never -f "$repo/scripts/container-base.Containerfile" \
    -t "$base" "$repo/scripts" >/dev/null
fi

# A clean build context: only what the Containerfile copies, without caches that would defeat the
# layer cache.
context=$work/context
rm -rf "$context"
mkdir -p "$context"
tar -C "$repo" -c --exclude=__pycache__ --exclude='*.egg-info' pyproject.toml setup.py MANIFEST.in README.md exporter \
  alerts deploy/prometheus dashboards | tar -C "$context" -x

say "building $image from Containerfile"
# --format docker keeps the HEALTHCHECK; pip inside the build trusts the registry with the host's CA bundle.
# The first stage gets a tag too, so that pruning what older builds left keeps its cached layers.
build() {
  podman build --quiet --network host --pull=never --format docker --layers \
    -v "$ca_bundle:$ca_bundle:ro" -f "$containerfile" "$@" "$context" >/dev/null
}
build --target build -t "$image-build"
build -t "$image"
podman image prune --force >/dev/null

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start NAME HOST_PORT CONTAINER_PORT [demo arguments...]: the image's demo, read-only root file system
start() {
  local name=$1 host_port=$2 port=$3
  shift 3
  podman rm --force --volumes "$name" >/dev/null 2>&1 || true
  containers+=("$name")
  # podman complains on stderr that there is no systemd to schedule the HEALTHCHECK: kept out of sight
  podman run -d --name "$name" --read-only -p "127.0.0.1:$host_port:$port" "$image" demo "$@" \
    >/dev/null 2>"$work/$name.err" || { cat "$work/$name.err" >&2; fail "$name did not start"; }
}

# scrape NAME HOST_PORT: /metrics until the demo batch's run series shows (the first poll takes a moment)
scrape() {
  local name=$1 url="http://127.0.0.1:$2/metrics" body=""
  for _ in $(seq 60); do
    body=$(curl -fsS --max-time 3 "$url" 2>/dev/null || true)
    grep -q '^batch_run_last_start_timestamp_seconds{.*batch="card-authorization"' <<<"$body" && break
    [[ $(podman inspect -f '{{.State.Running}}' "$name") == true ]] || { podman logs "$name" >&2; fail "$name exited"; }
    sleep 0.5
  done
  grep -q '^batch_run_last_start_timestamp_seconds{.*batch="card-authorization"' <<<"$body" \
    || { podman logs "$name" >&2; fail "$url has no batch_run_last_start_timestamp_seconds for card-authorization"; }
  grep -q '^batch_exporter_source_up{.*} 1' <<<"$body" || fail "$url: no source is up"
  say "$name: $url serves the demo batch"
}

healthy() {
  local name=$1 status
  status=$(podman healthcheck run "$name" 2>&1) || fail "$name: HEALTHCHECK says ${status:-unhealthy}"
  say "$name: HEALTHCHECK healthy"
}

default_port=$(free_port)
other_port=$(free_port)
start batch-exporter-smoke-default "$default_port" 10117
start batch-exporter-smoke-other "$other_port" 9187 --web.listen-address=:9187
scrape batch-exporter-smoke-default "$default_port"
scrape batch-exporter-smoke-other "$other_port"
healthy batch-exporter-smoke-default
healthy batch-exporter-smoke-other
if podman exec batch-exporter-smoke-other batch-exporter healthcheck --web.listen-address=127.0.0.1:1 >/dev/null; then
  fail "the health check passes where nothing listens"
fi

drivers=$(podman run --rm --no-healthcheck --entrypoint odbcinst "$image" -q -d)
for driver in "PostgreSQL Unicode" "MariaDB Unicode"; do
  grep -qF "[$driver]" <<<"$drivers" || fail "odbcinst -q -d does not list $driver: $drivers"
done
podman run --rm --no-healthcheck --entrypoint python "$image" -c \
  'import pyodbc, sys; missing = {"PostgreSQL Unicode", "MariaDB Unicode"} - set(pyodbc.drivers()); sys.exit(sorted(missing) or 0)' \
  || fail "pyodbc in the image does not see the drivers"
say "ODBC drivers: $(tr '\n' ' ' <<<"$drivers")"
# drill and demo --stack find the shipped rules, routing and Prometheus config inside the installed wheel
shipped=$(podman run --rm --no-healthcheck --entrypoint python "$image" -c \
  'from batch_exporter.practice.stack import ShippedFiles; s = ShippedFiles.locate(); print(len(s.rules), s.alertmanager_config.name, s.prometheus_config.name)') \
  || fail "the image's package does not carry the shipped files"
[[ $shipped == "1 alertmanager.yml prometheus.yml" ]] || fail "shipped files in the image: $shipped"
say "shipped files: $shipped"
say "OK"

#!/usr/bin/env bash
# Prepare this machine to build and run chiml's images with podman, without any registry.
#
# Idempotent; safe to run on every CI start:
#   1. apt-get install podman buildah runc debootstrap slirp4netns (only the missing ones; the
#      image tests run pods on slirp4netns networks, a recommended package apt would skip here);
#   2. /etc/containers/containers.conf: runc (crun refuses some sandboxes' hybrid cgroup layout),
#      the cgroupfs manager, and default ulimits below the hard limits (podman's defaults make
#      setrlimit fail where the hard limit is lower);
#   3. the stand-in base image: Debian 12 (bookworm) minbase with python3 and python3-venv (whose
#      bundled pip wheel is what `python3 -m venv` installs; Debian's own pip package is left out,
#      as the official image has no system pip either), built with debootstrap
#      from the apt mirror this machine uses and imported under the name the Dockerfiles' FROM
#      uses (BASE_IMAGE below), unless an image of that name already exists. The stand-in is the
#      same distribution as python:*-slim-bookworm but Debian's Python (3.11.2 in /usr/bin), not
#      the official image's (3.11.x built into /usr/local): see docs/kubernetes.md, "Images".
#
# Environment: BASE_IMAGE (default: the name in services/images.yaml), DEBIAN_MIRROR (default:
# the first URI of /etc/apt/sources.list.d/debian.sources), IMAGES_SETUP_FORCE_BASE=1 rebuilds
# the stand-in. Needs root (podman as root is what works in these sandboxes).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
log() { printf 'images-setup: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "images-setup: must run as root (rootful podman)" >&2
  exit 1
fi

missing=()
for tool in podman buildah runc debootstrap slirp4netns; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

conf=/etc/containers/containers.conf
mkdir -p /etc/containers
want="# written by chiml scripts/images_setup.sh
[containers]
default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]

[engine]
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
"
if [ ! -f "$conf" ] || ! grep -q "chiml scripts/images_setup.sh" "$conf"; then
  if [ -f "$conf" ]; then cp "$conf" "$conf.before-chiml"; fi
  printf '%s' "$want" >"$conf"
  log "wrote $conf"
fi

BASE_IMAGE="${BASE_IMAGE:-$(sed -n 's/^  image: *//p' "$ROOT/services/images.yaml" | head -n1 | tr -d '"')}"
if [ -z "$BASE_IMAGE" ]; then
  echo "images-setup: no base image name in services/images.yaml (base.image)" >&2
  exit 1
fi
if podman image exists "$BASE_IMAGE" && [ "${IMAGES_SETUP_FORCE_BASE:-0}" != 1 ]; then
  log "base $BASE_IMAGE present"
  exit 0
fi

MIRROR="${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
dir="$(mktemp -d /var/tmp/chiml-base.XXXXXX)"
trap 'rm -rf "$dir"' EXIT
log "debootstrap bookworm from $MIRROR (about a minute)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$dir" "$MIRROR" >"$dir.log" 2>&1 || { tail -n 5 "$dir.log" >&2; rm -f "$dir.log"; exit 1; }
rm -f "$dir.log"
# As in the official slim images: `python` names python3, no apt lists or caches in the layer.
ln -sf python3 "$dir/usr/bin/python"
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
  "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/locale/*
tar -C "$dir" -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null 2>&1
log "imported stand-in base as $BASE_IMAGE ($(podman image inspect --format '{{.Size}}' "$BASE_IMAGE") bytes)"

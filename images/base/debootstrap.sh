#!/usr/bin/env bash
# Offline path for berth/rootfs: a Debian bookworm rootfs made by debootstrap from the apt mirror
# this machine already uses, then `docker import`ed. Used where no registry can be pulled from;
# Dockerfile beside this script is the equivalent for machines that can pull.
#
# Usage: debootstrap.sh IMAGE_TAG CONTENT_HASH
set -euo pipefail

tag=$1
content_hash=$2
suite=bookworm
packages=bash,coreutils,procps,ca-certificates,python3,git,curl,less,nano

# The mirror comes from BERTH_DEBIAN_MIRROR, else from apt's own configuration (deb822 or
# one-line format), so the bootstrap goes wherever `apt-get install` already goes.
mirror=${BERTH_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /tmp/berth-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

echo "==> debootstrap $suite from $mirror (this takes a few minutes the first time)"
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" |
  while IFS= read -r line; do
    # Progress without the wall of per-package lines: one line per stage.
    case "$line" in
      I:\ Retrieving* | I:\ Validating* | I:\ Unpacking* | I:\ Configuring* | I:\ Extracting*) : ;;
      *) echo "    $line" ;;
    esac
  done

echo "==> adding user 'user' (uid 1000)"
chroot "$rootfs" groupadd --gid 1000 user
chroot "$rootfs" useradd --uid 1000 --gid 1000 --create-home --home-dir /home/user --shell /bin/bash user

echo "==> trimming caches"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
# Point apt inside sessions at the same mirror, so `apt-get` works where the host's does.
echo "deb $mirror $suite main" >"$rootfs"/etc/apt/sources.list

echo "==> importing as $tag"
tar -C "$rootfs" --numeric-owner -c . |
  docker import \
    --change "LABEL berth.content-hash=$content_hash" \
    --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    - "$tag" >/dev/null

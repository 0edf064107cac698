#!/usr/bin/env bash
# Builds the example custom-container image offline: the static binary of
# main.go alone in an image made by `podman import` (no registry, no base
# image). The tag is a hash of the binary, so an unchanged build is skipped;
# the image is also tagged :latest. Prints the tag.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=localhost/sandpool-example-app
podman=${PODMAN:-podman}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/tmp" "$work/root/mnt/data"
CGO_ENABLED=0 "${GO:-go}" build -trimpath -ldflags=-s -o "$work/root/app" ./examples/custom-container
tag="$repo:$(sha256sum "$work/root/app" | cut -c1-16)"
# One build at a time (test binaries run this in parallel).
exec 9>"${TMPDIR:-/tmp}/sandpool-example-app.lock"
flock 9
if ! "$podman" image exists "$tag"; then
	# /tmp and /mnt/data get tmpfs mounts; runc keeps the mode of the
	# directory it mounts over, so make them world-writable here.
	chmod 1777 "$work/root/tmp" "$work/root/mnt/data"
	chmod 0755 "$work/root" "$work/root/app"
	tar -C "$work/root" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf - . |
		"$podman" import --quiet --change 'ENTRYPOINT=["/app"]' --change 'ENV=PORT=8080' \
			--change 'EXPOSE=8080' --change 'WORKDIR=/' - "$tag" >/dev/null
fi
"$podman" tag "$tag" "$repo:latest"
# Older builds go, unless a container still uses them.
for old in $("$podman" images --format '{{.Repository}}:{{.Tag}}' "$repo"); do
	[ "$old" = "$tag" ] || [ "$old" = "$repo:latest" ] || "$podman" rmi "$old" >/dev/null 2>&1 || true
done
echo "$tag"

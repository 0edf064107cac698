#!/usr/bin/env bash
# Installs what sandpool needs and is missing, on Debian 12 as root:
# podman, runc, Debian's runsc (the 2022 gVisor, runtime runsc-debian),
# debootstrap (for the image), chromium (for the test of the browser page),
# staticcheck, and the current gVisor's runsc, built from the Go module
# proxy at the version pinned in sandbox/runtime.go into
# /usr/local/lib/sandpool/gvisor/<version>/ (skipped when already there).
# Go itself must be present (/usr/local/go or on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION=v0.8.2

if ! command -v go >/dev/null; then
	echo "deps: Go 1.26 or newer is required (install it at /usr/local/go or put it on PATH)" >&2
	exit 1
fi

missing=()
for tool in podman runc runsc debootstrap chromium; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: ${missing[*]} missing; run as root to install them" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v staticcheck >/dev/null; then
	echo "deps: installing staticcheck $STATICCHECK_VERSION"
	GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi

# The one place the version is set is sandbox/runtime.go.
gvisor_version=$(sed -n 's/^const GVisorVersion = "\(.*\)"$/\1/p' sandbox/runtime.go)
gvisor_root=$(sed -n 's/^const GVisorRoot = "\(.*\)"$/\1/p' sandbox/runtime.go)
if [ -z "$gvisor_version" ] || [ -z "$gvisor_root" ]; then
	echo "deps: cannot read GVisorVersion and GVisorRoot from sandbox/runtime.go" >&2
	exit 1
fi
gvisor_dir="$gvisor_root/$gvisor_version"
if [ ! -x "$gvisor_dir/runsc" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: gVisor $gvisor_version missing; run as root to build it" >&2
		exit 1
	fi
	echo "deps: building gVisor's runsc $gvisor_version (about a minute)"
	tmp=$(mktemp -d "$gvisor_root.build-XXXXXX" 2>/dev/null || { mkdir -p "$gvisor_root" && mktemp -d "$gvisor_root.build-XXXXXX"; })
	trap 'rm -rf "$tmp"' EXIT
	GOFLAGS= CGO_ENABLED=0 GOBIN="$tmp" go install "gvisor.dev/gvisor/runsc@$gvisor_version"
	mkdir -p "$gvisor_root"
	# Whole or not at all: a build cut short never looks installed.
	mkdir -p "$tmp/dir" && mv "$tmp/runsc" "$tmp/dir/runsc"
	rm -rf "$gvisor_dir" && mv "$tmp/dir" "$gvisor_dir"
fi

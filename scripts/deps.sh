#!/usr/bin/env bash
# Installs what sandpool needs and is missing, on Debian 12 as root:
# podman, runc, runsc (gVisor), debootstrap (for the image), chromium (for
# the test of the browser page), staticcheck.
# Go itself must be present (/usr/local/go or on PATH).
set -euo pipefail

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

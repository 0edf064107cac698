#!/usr/bin/env bash
# Removes containers that tests left behind (label sandpool.test) and the
# tests' temporary state, and fails if there were any containers: tests
# remove their own, so a leftover means a test binary crashed or leaked.
set -uo pipefail
# Also sandboxes of a sandpool server a test ran (server ids start "t-").
left=$( (podman ps -aq --filter label=sandpool.test
	podman ps -a --filter label=sandpool.engine --format '{{.ID}} {{index .Labels "sandpool.server"}}' |
		awk '$2 ~ /^t-/ {print $1}') 2>/dev/null | sort -u)
if [ -n "$left" ]; then
	echo "sweep: tests left $(echo "$left" | wc -l) container(s) behind; removing them" >&2
	for id in $left; do podman ps -a --filter id="$id" --format '  {{.Names}} {{.Labels}}' >&2; done
	echo "$left" | xargs podman rm -f -t 0 >/dev/null
fi
# After the containers: a test's state holds the runtime wrapper that
# podman runs to remove its gVisor containers.
rm -rf /tmp/sandpool-test-*
[ -z "$left" ]

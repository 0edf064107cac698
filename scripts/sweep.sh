#!/usr/bin/env bash
# Removes containers that tests left behind (label sandpool.test) and the
# tests' temporary state, and fails if there were any containers: tests
# remove their own, so a leftover means a test binary crashed or leaked.
set -uo pipefail
left=$(podman ps -aq --filter label=sandpool.test 2>/dev/null)
rm -rf /tmp/sandpool-test-*
if [ -n "$left" ]; then
	echo "sweep: tests left $(echo "$left" | wc -l) container(s) behind; removing them" >&2
	podman ps -a --filter label=sandpool.test --format '  {{.Names}} {{.Labels}}' >&2
	echo "$left" | xargs podman rm -f -t 0 >/dev/null
	exit 1
fi

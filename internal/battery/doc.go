// Package battery holds sandpool's escape-and-abuse battery
// (../shared/reference/security-bar.md section 2, as tests): untrusted
// Python submitted through the public HTTP API, as an attacker would, under
// runc and runsc, with host-side canary listeners deciding egress. It has
// no code of its own: the checks are in its tests and the probes in
// testdata. Run it with `go test ./internal/battery/` (part of `make test`).
package battery

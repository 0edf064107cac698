// Package pool runs Azure-style session pools on the sandbox engine: a warm
// pool of Ready sandboxes per pool, sessions keyed by (principal,
// identifier) that each get a sandbox of their own for life, capacity
// (maxConcurrentSessions), lifecycle (cooldown, maximum life, explicit
// delete), health checks, Prometheus metrics, and adoption of running
// sandboxes when the server restarts. It knows nothing of HTTP or MCP; the
// surfaces call a Pool with a SessionKey they built from a parsed
// Identifier.
package pool

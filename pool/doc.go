// Package pool will hold Azure-style session pools on top of the sandbox
// engine: warm pools, session identifiers keyed by principal, capacity,
// cooldown and restart adoption. It is built by issue 3; today it holds
// nothing.
package pool

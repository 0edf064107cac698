package api_test

import (
	"testing"

	"github.com/sandpool/sandpool/pool"
)

// TestInprocFilesRoundTrip is TestFilesRoundTrip over the in-process
// engine, with a small upload cap (the cap's behaviour without moving
// 129 MiB).
func TestInprocFilesRoundTrip(t *testing.T) {
	t.Parallel()
	testFilesRoundTrip(t, newInprocEnv(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(0)}}), 1<<20)
}

// TestInprocSessionsAndPools: TestSessionsAndPools over the in-process
// engine: session routes, listings, readiness, principals kept apart.
func TestInprocSessionsAndPools(t *testing.T) {
	t.Parallel()
	testSessionsAndPools(t, newInprocEnv(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 3, ReadySessionInstances: ptr(1)}}))
}

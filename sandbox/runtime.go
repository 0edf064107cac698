package sandbox

import (
	"path/filepath"
	"strings"
)

// The OCI runtime names sandpool knows. A pool may also name a runtime by
// its absolute path; what it provides is then read from its file name.
const (
	// RuntimeRunc is a plain container on the host kernel.
	RuntimeRunc = "runc"
	// RuntimeGVisor is the gVisor release sandpool pins (GVisorVersion),
	// built from source by scripts/deps.sh into GVisorDir. It is the
	// default runtime.
	RuntimeGVisor = "runsc"
	// RuntimeGVisorDebian is Debian 12's runsc (release 20221219, at
	// /usr/bin/runsc), kept to be measured beside the current one.
	RuntimeGVisorDebian = "runsc-debian"
)

// GVisorVersion is the version of gvisor.dev/gvisor whose runsc sandpool
// runs: the one place it is set. scripts/deps.sh reads it from this line.
const GVisorVersion = "v0.0.0-20260905035102-160fafc42237"

// GVisorRoot is the sandpool-owned directory that holds one directory per
// gVisor version built (never Debian's /usr/bin/runsc).
const GVisorRoot = "/usr/local/lib/sandpool/gvisor"

// GVisorDir is the directory of the pinned gVisor's runsc.
func GVisorDir() string { return filepath.Join(GVisorRoot, GVisorVersion) }

// IsolationOf is the isolation a runtime name provides: gvisor for the
// runsc runtimes, vm for Kata, container otherwise. The identity gate
// checks it on every sandbox; this only says what to expect.
func IsolationOf(runtime string) Isolation {
	base := filepath.Base(runtime)
	switch {
	case strings.HasPrefix(base, "runsc"):
		return IsolationGVisor
	case strings.HasPrefix(base, "kata"):
		return IsolationVM
	}
	return IsolationContainer
}

// IsGVisor reports a runtime that runs sandboxes under gVisor.
func IsGVisor(runtime string) bool { return IsolationOf(runtime) == IsolationGVisor }

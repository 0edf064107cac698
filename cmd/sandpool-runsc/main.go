// Command sandpool-runsc is the OCI runtime sandpool's podman services run
// the current gVisor through: a pass-through to runsc that turns the start
// of a container carrying a checkpoint image into `runsc restore`
// (sandbox/podman/runscwrap). sandpool installs it with the path of the
// runsc it wraps; it is not run by hand.
package main

import (
	"os"

	"github.com/sandpool/sandpool/sandbox/podman/runscwrap"
)

func main() { os.Exit(runscwrap.Main(os.Args[1:])) }

package sandbox

import "time"

// CheckpointOptions choose how a checkpoint image is written.
type CheckpointOptions struct {
	// Compress writes the memory pages compressed (gVisor's
	// flate-best-speed): a smaller image for a slower checkpoint and
	// restore.
	Compress bool
	// ExcludeZeroPages leaves committed pages that hold only zeros out of
	// the image.
	ExcludeZeroPages bool
}

// CheckpointImage describes a checkpoint image an engine wrote and
// verified.
type CheckpointImage struct {
	// Dir is the image's directory on the engine's host. It must never
	// reach a client.
	Dir string
	// Bytes is the size of the image's files.
	Bytes int64
	// Took is the time from the start of the checkpoint until the image
	// was verified on disk.
	Took time.Duration
}

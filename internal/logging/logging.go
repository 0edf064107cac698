// Package logging builds sandpool's zerolog loggers and holds the redaction
// helpers. Loggers are injected, never global; each component takes a
// sub-logger named after itself. Tokens, raw session identifiers, code and
// output are never logged: identifiers go through a keyed hash first.
package logging

import (
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Options configures New.
type Options struct {
	// Level is a zerolog level name ("debug", "info", "warn", "error");
	// empty means "info".
	Level string
	// Format is "json", "console" or "" (console when w is a terminal).
	Format string
}

// New returns a logger writing to w.
func New(w io.Writer, opts Options) (zerolog.Logger, error) {
	lvl := zerolog.InfoLevel
	if opts.Level != "" {
		l, err := zerolog.ParseLevel(strings.ToLower(opts.Level))
		if err != nil {
			return zerolog.Nop(), err
		}
		lvl = l
	}
	// One logger serves every goroutine: writes to w must not interleave,
	// whatever w is (a file is safe on its own; a buffer is not).
	out := zerolog.SyncWriter(w)
	if opts.Format == "console" || (opts.Format == "" && isTerminal(w)) {
		out = zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger(), nil
}

// Component returns a sub-logger tagged with the component's name.
func Component(l zerolog.Logger, name string) zerolog.Logger {
	return l.With().Str("component", name).Logger()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

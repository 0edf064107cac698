package agentproto

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrBadPath is returned for a path the data directory must not resolve.
var ErrBadPath = errors.New("invalid file path")

// SplitPath validates a path relative to DataDir and returns its segments.
// The empty path and "." name DataDir itself (nil segments). Refused: NUL
// and other control characters, invalid UTF-8, absolute paths, backslashes,
// "." and ".." segments, empty segments, over-long paths or segments. The
// agent resolves the segments one by one without following symlinks; the
// server calls SplitPath too, to refuse bad names before a round trip.
func SplitPath(p string) ([]string, error) {
	if p == "" || p == "." {
		return nil, nil
	}
	if len(p) > MaxPathBytes {
		return nil, errors.New("invalid file path: too long")
	}
	if !utf8.ValidString(p) {
		return nil, errors.New("invalid file path: not UTF-8")
	}
	for _, r := range p {
		if unicode.IsControl(r) { // C0, DEL and C1
			return nil, errors.New("invalid file path: control character")
		}
		if r == '\\' {
			return nil, errors.New("invalid file path: backslash")
		}
	}
	if strings.HasPrefix(p, "/") {
		return nil, errors.New("invalid file path: absolute paths are not allowed")
	}
	segs := strings.Split(strings.TrimSuffix(p, "/"), "/")
	for _, s := range segs {
		switch {
		case s == "":
			return nil, errors.New("invalid file path: empty segment")
		case s == "." || s == "..":
			return nil, errors.New("invalid file path: '.' and '..' are not allowed")
		case len(s) > MaxNameBytes:
			return nil, errors.New("invalid file path: name too long")
		}
	}
	return segs, nil
}

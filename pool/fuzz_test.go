package pool

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sandpool/sandpool/internal/errcode"
)

// identifierAlphabet is the documented identifier alphabet, spelled out
// here rather than taken from identifierByte so that the fuzz oracle does
// not share the code it checks.
const identifierAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789|-&^%$#(){}[];<>"

// FuzzParseIdentifier checks ParseIdentifier on arbitrary strings. It never
// panics; it accepts exactly the strings of 4 to 128 bytes drawn from
// identifierAlphabet, and an accepted identifier's String is the input.
// A refused one fails with InvalidIdentifier and a printable public message
// that does not echo the input: the message must be the same as for a
// masked input of the same shape (allowed bytes replaced by 'a', others by
// '_'), so nothing of the identifier's content can reach it. (A plain
// "message does not contain the input" test would be wrong: an input such
// as "session identifier" is refused for its space and is, as fixed text,
// part of the message.)
func FuzzParseIdentifier(f *testing.F) {
	for _, s := range []string{
		"test",
		"abc",
		"8f14e45f-ceea-4670-9a1c-9f0a1b2c3d4e",
		"|-&^%$#(){}[];<>",
		strings.Repeat("a", MaxIdentifierLen),
		strings.Repeat("a", MaxIdentifierLen+1),
		"caf\u00e9abc",
		"../../etc/passwd",
		"abc%2e%2e%2Fdef",
		"abc\x00def",
		"sk-live-0123456789 secret",
		"session identifier may",
		"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseIdentifier(s)
		if want := validIdentifier(s); (err == nil) != want {
			t.Fatalf("ParseIdentifier(%q) error = %v, want valid=%v", s, err, want)
		}
		if err == nil {
			if id.String() != s || id.IsZero() {
				t.Fatalf("ParseIdentifier(%q) = %q (zero %v)", s, id.String(), id.IsZero())
			}
			return
		}
		if c := errcode.Of(err); c != errcode.InvalidIdentifier {
			t.Fatalf("ParseIdentifier(%q): code %q, want %q", s, c, errcode.InvalidIdentifier)
		}
		msg := errcode.Public(err)
		checkPrintable(t, msg)
		_, merr := ParseIdentifier(maskIdentifier(s))
		if merr == nil {
			t.Fatalf("the mask of %q was accepted", s)
		}
		if mmsg := errcode.Public(merr); msg != mmsg {
			t.Fatalf("ParseIdentifier(%q): the message depends on the content of the input:\n%s\nvs, for its mask:\n%s", s, msg, mmsg)
		}
	})
}

// validIdentifier is the identifier rule as documented.
func validIdentifier(s string) bool {
	if len(s) < MinIdentifierLen || len(s) > MaxIdentifierLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(identifierAlphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

// maskIdentifier keeps only the shape of s: its length and which bytes
// are allowed.
func maskIdentifier(s string) string {
	b := []byte(s)
	for i, c := range b {
		if strings.IndexByte(identifierAlphabet, c) >= 0 {
			b[i] = 'a'
		} else {
			b[i] = '_'
		}
	}
	return string(b)
}

// checkPrintable fails unless msg is non-empty printable ASCII.
func checkPrintable(t *testing.T, msg string) {
	t.Helper()
	if msg == "" || !utf8.ValidString(msg) {
		t.Fatalf("public message %q is empty or not UTF-8", msg)
	}
	for i := 0; i < len(msg); i++ {
		if msg[i] < 0x20 || msg[i] >= 0x7f {
			t.Fatalf("public message %q has the unprintable byte %#x", msg, msg[i])
		}
	}
}

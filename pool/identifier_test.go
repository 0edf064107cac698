package pool

import (
	"strings"
	"testing"

	"github.com/sandpool/sandpool/internal/errcode"
)

func TestParseIdentifier(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"test", true},
		{"8f14e45f-ceea-4670-9a1c-9f0a1b2c3d4e", true},
		{"|-&^%$#(){}[];<>", true},
		{strings.Repeat("a", 128), true},
		{"abc", false},                    // 3 characters
		{strings.Repeat("a", 129), false}, // 129 characters
		{"has space", false},              // space
		{"caf\u00e9abc", false},           // unicode
		{"a/b/c/d", false},                // slash
		{"..abcd", false},                 // dots
		{"../../etc", false},              // traversal
		{"abc\x00def", false},             // NUL
		{"abc%00def", true},               // '%' and digits are allowed; nothing is decoded here
		{"abc%2Fdef", true},               // likewise: an HTTP layer decodes once, before parsing
		{"abc_def", false},                // underscore is not in Azure's documented list
		{"abc\ndef", false},               // newline
		{"", false},
	}
	for _, tc := range tests {
		id, err := ParseIdentifier(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseIdentifier(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if err != nil {
			if errcode.Of(err) != errcode.InvalidIdentifier {
				t.Errorf("ParseIdentifier(%q) code = %s", tc.in, errcode.Of(err))
			}
			if strings.Contains(errcode.Public(err), tc.in) && tc.in != "" {
				t.Errorf("ParseIdentifier(%q): the message echoes the input: %s", tc.in, errcode.Public(err))
			}
			continue
		}
		if id.String() != tc.in {
			t.Errorf("ParseIdentifier(%q) = %q", tc.in, id)
		}
	}
}

func TestHasherSeparatesPrincipals(t *testing.T) {
	h, err := NewHasher([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	id := func(s string) Identifier { i, _ := ParseIdentifier(s); return i }
	a := h.Hash(Key("alice", id("same-id")))
	b := h.Hash(Key("bob", id("same-id")))
	if a == b {
		t.Fatal("two principals with one identifier share a hash")
	}
	if h.Hash(Key("ab", id("cdefg"))) == h.Hash(Key("abc", id("defg"))) {
		t.Fatal("principal and identifier are not separated")
	}
	if a != h.Hash(Key("alice", id("same-id"))) {
		t.Fatal("hash is not stable")
	}
	if _, err := ParseIdentifier(a); err != nil || strings.Contains(a, "same-id") {
		t.Fatalf("hash %q must be a valid identifier that does not contain the input", a)
	}
	h2, _ := NewHasher([]byte(strings.Repeat("z", 32)))
	if h2.Hash(Key("alice", id("same-id"))) == a {
		t.Fatal("hash does not depend on the secret")
	}
	if _, err := NewHasher([]byte("short")); err == nil {
		t.Fatal("short secret accepted")
	}
}

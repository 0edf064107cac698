package pool

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/sandpool/sandpool/internal/errcode"
)

// Identifier limits, as Azure dynamic sessions defines them.
const (
	MinIdentifierLen = 4
	MaxIdentifierLen = 128
)

// identifierSpecials are the characters besides ASCII letters and digits
// that an identifier may contain.
const identifierSpecials = "|-&^%$#(){}[];<>"

// Identifier is a session identifier that passed validation. The only way
// to get one is ParseIdentifier, so code that holds an Identifier never
// needs to check it again.
type Identifier struct{ s string }

// ParseIdentifier validates s: 4 to 128 characters, each an ASCII letter,
// digit or one of |-&^%$#(){}[];<>. s is taken as it is: no decoding,
// trimming or case folding happens here (an HTTP layer decodes its query
// string once before calling this).
func ParseIdentifier(s string) (Identifier, error) {
	if len(s) < MinIdentifierLen || len(s) > MaxIdentifierLen {
		return Identifier{}, errcode.Newf(errcode.InvalidIdentifier,
			"the session identifier must be %d to %d characters long, not %d", MinIdentifierLen, MaxIdentifierLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		if !identifierByte(s[i]) {
			// Say where, not what: the identifier may be a secret the
			// caller pasted by mistake, and the byte may be unprintable.
			return Identifier{}, errcode.Newf(errcode.InvalidIdentifier,
				"the session identifier may contain only ASCII letters, digits and %s (character %d is not allowed)", identifierSpecials, i+1)
		}
	}
	return Identifier{s: s}, nil
}

func identifierByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	for i := 0; i < len(identifierSpecials); i++ {
		if c == identifierSpecials[i] {
			return true
		}
	}
	return false
}

// String returns the identifier. It is the caller's raw identifier: never
// log it or put it on a container.
func (id Identifier) String() string { return id.s }

// IsZero reports whether id was never parsed.
func (id Identifier) IsZero() bool { return id.s == "" }

// Principal names who is calling: an API key's name, or a token's tenant
// and subject. Sessions are namespaced by it, so two principals using the
// same identifier get two different sessions. The empty principal is the
// anonymous caller of a server without authentication.
type Principal string

// Within is p on a surface that derives identifiers of its own (MCP,
// langchaingo tools): the sessions keyed by it belong to that surface, so
// the same caller on another surface (REST, keyed by p itself) can neither
// reach nor list them, even knowing an identifier. Authenticated principals
// hold no control characters, so none equals another's Within.
func (p Principal) Within(surface string) Principal { return p + "\x00" + Principal(surface) }

// SessionKey is what a session is keyed by: (principal, identifier).
type SessionKey struct {
	Principal  Principal
	Identifier Identifier
}

// Key returns the session key of principal and an identifier.
func Key(p Principal, id Identifier) SessionKey { return SessionKey{Principal: p, Identifier: id} }

// Hasher turns session keys into keyed hashes, which are all that
// containers, state files and logs carry. Without the secret a hash cannot
// be linked to an identifier, even by someone who can guess identifiers.
type Hasher struct{ secret []byte }

// MinSecretLen is the shortest accepted hashing secret.
const MinSecretLen = 32

// NewHasher returns a Hasher keyed by secret (at least MinSecretLen bytes).
func NewHasher(secret []byte) (*Hasher, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("session hashing secret: need at least %d bytes, got %d", MinSecretLen, len(secret))
	}
	return &Hasher{secret: append([]byte(nil), secret...)}, nil
}

// Hash returns the keyed hash of k: 32 hex digits, which also satisfy the
// identifier rules (so a surface can hand one out as an identifier).
func (h *Hasher) Hash(k SessionKey) string {
	m := hmac.New(sha256.New, h.secret)
	// Length-prefix the principal so ("ab","cdef") and ("abc","def") differ.
	fmt.Fprintf(m, "session\x00%d\x00%s\x00%s", len(k.Principal), k.Principal, k.Identifier.s)
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// sub derives a key for another purpose from the secret.
func (h *Hasher) sub(purpose string) []byte {
	m := hmac.New(sha256.New, h.secret)
	m.Write([]byte("derive\x00" + purpose))
	return m.Sum(nil)
}

// Derive returns a 32-byte key for purpose, derived from the secret: a
// surface that mints its own tokens (MCP session ids) keys them with it,
// so they stay valid across restarts without a secret of their own.
func (h *Hasher) Derive(purpose string) []byte { return h.sub("surface\x00" + purpose) }

// IdentifierFor derives an identifier for purpose from parts (for surfaces
// that bind sessions to something other than a caller's identifier: an MCP
// session, an application's conversation). It is a keyed hash, 32 hex
// digits, so it satisfies the identifier rules and shows nothing of parts.
func (h *Hasher) IdentifierFor(purpose string, parts ...string) Identifier {
	m := hmac.New(sha256.New, h.secret)
	m.Write([]byte("identifier\x00" + purpose))
	for _, p := range parts {
		// Length-prefixed, so no two part lists hash alike.
		fmt.Fprintf(m, "\x00%d\x00%s", len(p), p)
	}
	return Identifier{s: hex.EncodeToString(m.Sum(nil)[:16])}
}

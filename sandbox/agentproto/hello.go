package agentproto

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
)

// The hello opens every connection to the agent daemon, before the yamux
// session: a magic string and a 32-byte token. The daemon knows only the
// token's SHA-256 (given on its command line, which code in the sandbox can
// read: a hash is useless to it), so only the holder of the token (the
// server, which derives it from a key of its own) can drive the agent. Code
// in the sandbox can connect to the agent's socket but cannot say hello.
const (
	helloMagic = "SPA1"
	// TokenSize is the size of an agent token.
	TokenSize = 32
	// HelloSize is the size of the hello.
	HelloSize = len(helloMagic) + TokenSize
)

// ErrBadHello is returned for a connection that does not open with a valid hello.
var ErrBadHello = errors.New("agentproto: bad hello")

// WriteHello writes the hello carrying token.
func WriteHello(w io.Writer, token []byte) error {
	if len(token) != TokenSize {
		return errors.New("agentproto: token must be 32 bytes")
	}
	_, err := w.Write(append([]byte(helloMagic), token...))
	return err
}

// TokenHash is what the daemon is configured with.
func TokenHash(token []byte) [32]byte { return sha256.Sum256(token) }

// ReadHello reads a hello and checks its token against hash.
func ReadHello(r io.Reader, hash [32]byte) error {
	var b [HelloSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return errors.Join(ErrBadHello, err)
	}
	if string(b[:len(helloMagic)]) != helloMagic {
		return ErrBadHello
	}
	got := sha256.Sum256(b[len(helloMagic):])
	if subtle.ConstantTimeCompare(got[:], hash[:]) != 1 {
		return ErrBadHello
	}
	return nil
}

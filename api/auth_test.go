package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/internal/errcode"
)

const (
	testIssuer   = "https://login.example/tenant"
	testAudience = "https://dynamicsessions.io"
	testSecret   = "an-hs256-secret-of-at-least-32-bytes!"
)

type testKeys struct {
	rsa  *rsa.PrivateKey
	ec   *ecdsa.PrivateKey
	jwks []byte
}

func newTestKeys(t *testing.T) testKeys {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	pad := func(n *big.Int) []byte { return n.FillBytes(make([]byte, 32)) }
	set := map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig", "n": b64(rk.N.Bytes()), "e": b64(big.NewInt(int64(rk.E)).Bytes())},
		{"kty": "EC", "kid": "ec-1", "alg": "ES256", "use": "sig", "crv": "P-256", "x": b64(pad(ek.X)), "y": b64(pad(ek.Y))},
	}}
	j, _ := json.Marshal(set)
	return testKeys{rsa: rk, ec: ek, jwks: j}
}

func claims(mod func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"iss": testIssuer, "aud": testAudience, "sub": "user-1", "tid": "tenant-1",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "roles": []string{"Session Executor"}}
	if mod != nil {
		mod(c)
	}
	return c
}

func sign(t *testing.T, m jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func bearer(token string) *http.Request {
	r := httptest.NewRequest("GET", "/pools/x/metadata", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

func TestAuthenticate(t *testing.T) {
	keys := newTestKeys(t)
	jwksPath := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwksPath, keys.jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := newAuthenticator(context.Background(), AuthConfig{
		APIKeys: []APIKey{{Name: "ci", Key: "a-static-key-0123456789"}},
		JWT: &JWTConfig{Issuer: testIssuer, Audiences: []string{testAudience}, Secret: testSecret,
			JWKSFile: jwksPath, Roles: []string{"Session Executor"}},
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	rsaPub := x509.MarshalPKCS1PublicKey(&keys.rsa.PublicKey)
	want := "jwt:" + testIssuer + "|tenant-1|user-1"
	tests := []struct {
		name, token, principal string
		code                   errcode.Code
		header                 string
	}{
		{name: "no token", code: errcode.Unauthenticated},
		{name: "basic auth", header: "Basic YTpi", code: errcode.Unauthenticated},
		{name: "api key", token: "a-static-key-0123456789", principal: "key:ci"},
		{name: "unknown api key", token: "a-static-key-0123456788", code: errcode.Unauthenticated},
		{name: "HS256", token: sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), claims(nil)), principal: want},
		{name: "RS256 from the JWKS", token: sign(t, jwt.SigningMethodRS256, "rsa-1", keys.rsa, claims(nil)), principal: want},
		{name: "ES256 from the JWKS", token: sign(t, jwt.SigningMethodES256, "ec-1", keys.ec, claims(nil)), principal: want},
		{name: "role as a string", token: sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), claims(func(c jwt.MapClaims) { c["roles"] = "Session Executor" })), principal: want},
		{name: "wrong audience", token: sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), claims(func(c jwt.MapClaims) { c["aud"] = "https://other" })), code: errcode.Unauthenticated},
		{name: "wrong issuer", token: sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), claims(func(c jwt.MapClaims) { c["iss"] = "https://evil" })), code: errcode.Unauthenticated},
		{name: "expired", token: sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), code: errcode.Unauthenticated},
		{name: "no expiry", token: sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), claims(func(c jwt.MapClaims) { delete(c, "exp") })), code: errcode.Unauthenticated},
		{name: "not yet valid", token: sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), claims(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() })), code: errcode.Unauthenticated},
		{name: "no subject", token: sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), claims(func(c jwt.MapClaims) { delete(c, "sub") })), code: errcode.Unauthenticated},
		{name: "wrong role", token: sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), claims(func(c jwt.MapClaims) { c["roles"] = []string{"Reader"} })), code: errcode.Forbidden},
		{name: "no role", token: sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), claims(func(c jwt.MapClaims) { delete(c, "roles") })), code: errcode.Forbidden},
		{name: "bad signature", token: sign(t, jwt.SigningMethodHS256, "", []byte(testSecret+"x"), claims(nil)), code: errcode.Unauthenticated},
		{name: "unknown key id", token: sign(t, jwt.SigningMethodRS256, "rsa-2", keys.rsa, claims(nil)), code: errcode.Unauthenticated},
		{name: "none algorithm", token: sign(t, jwt.SigningMethodNone, "", jwt.UnsafeAllowNoneSignatureType, claims(nil)), code: errcode.Unauthenticated},
		{name: "HS256 keyed with the RSA public key", token: sign(t, jwt.SigningMethodHS256, "rsa-1", rsaPub, claims(nil)), code: errcode.Unauthenticated},
		{name: "RS384 (not allowed)", token: sign(t, jwt.SigningMethodRS384, "rsa-1", keys.rsa, claims(nil)), code: errcode.Unauthenticated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := bearer(tc.token)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			p, err := a.authenticate(r)
			if got := errcode.Of(err); got != tc.code || string(p) != tc.principal {
				t.Fatalf("got %q, %v (code %q); want %q, code %q", p, err, got, tc.principal, tc.code)
			}
			if err != nil {
				rec := httptest.NewRecorder()
				writeError(rec, err)
				if want := statusOf(tc.code); rec.Code != want {
					t.Fatalf("status %d, want %d", rec.Code, want)
				}
			}
		})
	}
}

// TestJWKSURLRefreshIsThrottled: keys come from a URL; a token with an
// unknown key id refreshes the set, but at most once a minute.
func TestJWKSURLRefreshIsThrottled(t *testing.T) {
	keys := newTestKeys(t)
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(keys.jwks)
	}))
	t.Cleanup(srv.Close)
	a, err := newAuthenticator(context.Background(), AuthConfig{JWT: &JWTConfig{
		Issuer: testIssuer, Audiences: []string{testAudience}, JWKSURL: srv.URL}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	if _, err := a.authenticate(bearer(sign(t, jwt.SigningMethodES256, "ec-1", keys.ec, claims(nil)))); err != nil {
		t.Fatal(err)
	}
	start := fetches.Load()
	for range 5 {
		if _, err := a.authenticate(bearer(sign(t, jwt.SigningMethodRS256, "rsa-9", keys.rsa, claims(nil)))); errcode.Of(err) != errcode.Unauthenticated {
			t.Fatalf("unknown key id: %v", err)
		}
	}
	if n := fetches.Load() - start; n != 1 {
		t.Fatalf("%d refreshes for 5 unknown key ids, want 1", n)
	}
	// HS256 is not configured: an HS256 token is refused outright.
	if _, err := a.authenticate(bearer(sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), claims(nil)))); errcode.Of(err) != errcode.Unauthenticated {
		t.Fatalf("HS256 without a secret: %v", err)
	}
}

func TestAuthConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  AuthConfig
	}{
		{"key without name", AuthConfig{APIKeys: []APIKey{{Key: "0123456789abcdef"}}}},
		{"short key", AuthConfig{APIKeys: []APIKey{{Name: "a", Key: "short"}}}},
		{"key twice", AuthConfig{APIKeys: []APIKey{{Name: "a", Key: "0123456789abcdef"}, {Name: "b", Key: "0123456789abcdef"}}}},
		{"key and env", AuthConfig{APIKeys: []APIKey{{Name: "a", Key: "0123456789abcdef", KeyEnv: "X"}}}},
		{"jwt without issuer", AuthConfig{JWT: &JWTConfig{Audiences: []string{"a"}, Secret: testSecret}}},
		{"jwt without audience", AuthConfig{JWT: &JWTConfig{Issuer: "i", Secret: testSecret}}},
		{"jwt without keys", AuthConfig{JWT: &JWTConfig{Issuer: "i", Audiences: []string{"a"}}}},
		{"short HS256 secret", AuthConfig{JWT: &JWTConfig{Issuer: "i", Audiences: []string{"a"}, Secret: "short"}}},
	}
	for _, tc := range tests {
		if _, err := newAuthenticator(context.Background(), tc.cfg, zerolog.Nop()); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// TestJWKSURLFailures: a JWKS URL that cannot be fetched at start stops
// the server with a message naming the field; one that fails later keeps
// the keys it had.
func TestJWKSURLFailures(t *testing.T) {
	keys := newTestKeys(t)
	var broken atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if broken.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(keys.jwks)
	}))
	t.Cleanup(srv.Close)
	cfg := func(u string) AuthConfig {
		return AuthConfig{JWT: &JWTConfig{Issuer: testIssuer, Audiences: []string{testAudience}, JWKSURL: u}}
	}

	broken.Store(true)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, u := range []string{srv.URL, closed.URL} {
		a, err := newAuthenticator(context.Background(), cfg(u), zerolog.Nop())
		if err == nil {
			a.close()
			t.Fatalf("%s: started with an unreachable JWKS", u)
		}
		if !strings.HasPrefix(err.Error(), "jwt.jwksUrl: ") {
			t.Fatalf("error does not name the field: %v", err)
		}
	}

	broken.Store(false)
	a, err := newAuthenticator(context.Background(), cfg(srv.URL), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	broken.Store(true)
	// An unknown key id triggers a refresh, which fails; known keys still work.
	if _, err := a.authenticate(bearer(sign(t, jwt.SigningMethodRS256, "rsa-9", keys.rsa, claims(nil)))); errcode.Of(err) != errcode.Unauthenticated {
		t.Fatalf("unknown key id: %v", err)
	}
	if _, err := a.authenticate(bearer(sign(t, jwt.SigningMethodRS256, "rsa-1", keys.rsa, claims(nil)))); err != nil {
		t.Fatalf("known key after a failed refresh: %v", err)
	}
}

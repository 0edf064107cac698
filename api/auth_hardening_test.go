package api

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"
)

// TestF9JWTPrincipalUnambiguous: no two (issuer, tenant, subject) triples
// give one principal, whatever "|" or "%" they hold.
func TestF9JWTPrincipalUnambiguous(t *testing.T) {
	a, err := newAuthenticator(context.Background(), AuthConfig{JWT: &JWTConfig{Issuer: testIssuer, Audiences: []string{testAudience}, Secret: testSecret}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	principal := func(tid, sub string) string {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), claims(func(c jwt.MapClaims) {
			c["tid"], c["sub"] = tid, sub
		})))
		p, err := a.authenticate(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(p)
	}
	pairs := [][2][2]string{
		{{"A|x", "u"}, {"A", "x|u"}},
		{{"A%7Cx", "u"}, {"A|x", "u"}},
		{{"", "a|b"}, {"a", "b"}},
	}
	for _, p := range pairs {
		if x, y := principal(p[0][0], p[0][1]), principal(p[1][0], p[1][1]); x == y {
			t.Errorf("tid %q sub %q and tid %q sub %q are one principal %q", p[0][0], p[0][1], p[1][0], p[1][1], x)
		}
	}
	if p := principal("t\x00", "s"); strings.ContainsRune(p, 0) {
		t.Errorf("a control character in a principal: %q", p)
	}
}

// TestF9KeyNamesWithoutControlCharacters: a principal never holds a control
// character (surfaces namespace theirs with one).
func TestF9KeyNamesWithoutControlCharacters(t *testing.T) {
	err := ValidateAuth(AuthConfig{APIKeys: []APIKey{{Name: "alice\x00mcp", Key: "a-key-of-16-chars-or-more"}}})
	if err == nil || !strings.Contains(err.Error(), "apiKeys[0].name") {
		t.Fatalf("err = %v", err)
	}
}

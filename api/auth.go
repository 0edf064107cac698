package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/internal/statedir"
	"github.com/sandpool/sandpool/pool"
)

// AuthConfig says who may call: static API keys, JWTs, or both. With
// neither, the surface runs without authentication (development only; the
// server refuses to listen beyond loopback that way unless told to).
type AuthConfig struct {
	APIKeys []APIKey   `yaml:"apiKeys"`
	JWT     *JWTConfig `yaml:"jwt"`
}

// APIKey is a static bearer token. Its name is the caller's principal.
// Exactly one of Key, KeyFile and KeyEnv gives the secret.
type APIKey struct {
	Name    string `yaml:"name"`
	Key     string `yaml:"key"`
	KeyFile string `yaml:"keyFile"`
	KeyEnv  string `yaml:"keyEnv"`
}

// JWTConfig validates bearer JWTs: HS256 with a shared secret, RS256 and
// ES256 with keys from a JWKS file or URL. Issuer and audience are always
// checked, as are expiry and not-before (with Leeway); Roles, when given,
// must meet the token's role claim.
type JWTConfig struct {
	Issuer    string   `yaml:"issuer"`
	Audiences []string `yaml:"audiences"`
	// Secret, SecretFile or SecretEnv: the HS256 key (32 bytes or more).
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secretFile"`
	SecretEnv  string `yaml:"secretEnv"`
	// JWKSFile or JWKSURL: RS256/ES256 public keys. A URL is fetched at
	// start, refreshed every RefreshIntervalSeconds (default 3600), and
	// at most once a minute when a token names an unknown key id.
	JWKSFile               string `yaml:"jwksFile"`
	JWKSURL                string `yaml:"jwksUrl"`
	RefreshIntervalSeconds int    `yaml:"refreshIntervalSeconds"`
	// Roles: the token must carry one of them in RoleClaim (default
	// "roles"; a string or an array of strings). Empty: no role check.
	Roles     []string `yaml:"roles"`
	RoleClaim string   `yaml:"roleClaim"`
	// LeewaySeconds tolerates clock skew on exp/nbf/iat (default 30).
	LeewaySeconds int `yaml:"leewaySeconds"`
}

// Anonymous is the principal of every caller when authentication is off.
const Anonymous pool.Principal = "anonymous"

// authenticator turns a request's bearer token into a principal.
type authenticator struct {
	none   bool
	keys   map[[32]byte]pool.Principal
	jwt    *jwtVerifier
	cancel context.CancelFunc // stops JWKS refreshes
}

// Errors with their own codes: clients tell "who are you" (401) from
// "not you" (403).
var (
	errNoToken   = errcode.New(errcode.Unauthenticated, "a bearer token is required")
	errBadToken  = errcode.New(errcode.Unauthenticated, "the bearer token is not valid")
	errForbidden = errcode.New(errcode.Forbidden, "the token does not carry a role that may use this pool")
)

// ValidateAuth checks c as the server will at start, without fetching a
// JWKS URL, so configuration errors show before anything starts.
func ValidateAuth(c AuthConfig) error {
	a, err := buildAuthenticator(context.Background(), c, zerolog.Nop(), false)
	if a != nil {
		a.close()
	}
	return err
}

func newAuthenticator(ctx context.Context, c AuthConfig, log zerolog.Logger) (*authenticator, error) {
	return buildAuthenticator(ctx, c, log, true)
}

// buildAuthenticator builds an authenticator; with fetch false a JWKS URL
// is checked but not fetched.
func buildAuthenticator(ctx context.Context, c AuthConfig, log zerolog.Logger, fetch bool) (*authenticator, error) {
	a := &authenticator{keys: map[[32]byte]pool.Principal{}, none: len(c.APIKeys) == 0 && c.JWT == nil}
	for i, k := range c.APIKeys {
		field := fmt.Sprintf("apiKeys[%d]", i)
		if k.Name == "" {
			return nil, fmt.Errorf("%s.name: required", field)
		}
		if strings.IndexFunc(k.Name, unicode.IsControl) >= 0 {
			// Principals never hold control characters: surfaces
			// namespace theirs with one (pool.Principal.Within).
			return nil, fmt.Errorf("%s.name: must not contain control characters", field)
		}
		secret, err := secretFrom(field+".key", k.Key, k.KeyFile, k.KeyEnv)
		if err != nil {
			return nil, err
		}
		if len(secret) < 16 {
			return nil, fmt.Errorf("%s.key: at least 16 characters", field)
		}
		h := sha256.Sum256([]byte(secret))
		if _, dup := a.keys[h]; dup {
			return nil, fmt.Errorf("%s.key: the same key is given twice", field)
		}
		a.keys[h] = pool.Principal("key:" + k.Name)
	}
	if c.JWT != nil {
		jctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		v, err := newJWTVerifier(jctx, *c.JWT, log, fetch)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("jwt.%w", err)
		}
		a.jwt, a.cancel = v, cancel
	}
	return a, nil
}

func (a *authenticator) close() {
	if a.cancel != nil {
		a.cancel()
	}
}

// secretFrom reads a secret given inline, in a file or in an environment
// variable: exactly one of them.
func secretFrom(field, inline, file, env string) (string, error) {
	n := 0
	for _, s := range []string{inline, file, env} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return "", fmt.Errorf("%s: give exactly one of the value, a file or an environment variable", field)
	}
	switch {
	case file != "":
		b, err := statedir.ReadSecret(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		return strings.TrimSpace(string(b)), nil
	case env != "":
		v := os.Getenv(env)
		if v == "" {
			return "", fmt.Errorf("%s: environment variable %s is empty", field, env)
		}
		return v, nil
	}
	return inline, nil
}

// authenticate returns the caller's principal.
func (a *authenticator) authenticate(r *http.Request) (pool.Principal, error) {
	if a.none {
		return Anonymous, nil
	}
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		if h == "" {
			return "", errNoToken
		}
		return "", errBadToken
	}
	token = strings.TrimSpace(token)
	sum := sha256.Sum256([]byte(token))
	// Map lookup by digest: equal-time for every key of a given length,
	// and the digest reveals nothing about near misses.
	if p, ok := a.keys[sum]; ok {
		return p, nil
	}
	if a.jwt != nil && strings.Count(token, ".") == 2 {
		return a.jwt.verify(r.Context(), token)
	}
	return "", errBadToken
}

// jwtVerifier checks JWTs against one configuration.
type jwtVerifier struct {
	cfg    JWTConfig
	secret []byte
	jwks   keyfunc.Keyfunc
	parser *jwt.Parser
}

func newJWTVerifier(ctx context.Context, c JWTConfig, log zerolog.Logger, fetch bool) (*jwtVerifier, error) {
	if c.Issuer == "" {
		return nil, errors.New("issuer: required")
	}
	if len(c.Audiences) == 0 {
		return nil, errors.New("audiences: at least one is required")
	}
	if c.RoleClaim == "" {
		c.RoleClaim = "roles"
	}
	if c.LeewaySeconds == 0 {
		c.LeewaySeconds = 30
	}
	if c.LeewaySeconds < 0 || c.LeewaySeconds > 300 {
		return nil, errors.New("leewaySeconds: between 0 and 300")
	}
	if c.RefreshIntervalSeconds == 0 {
		c.RefreshIntervalSeconds = 3600
	}
	if c.RefreshIntervalSeconds < 60 {
		return nil, errors.New("refreshIntervalSeconds: at least 60")
	}
	v := &jwtVerifier{cfg: c}
	var algs []string
	if c.Secret != "" || c.SecretFile != "" || c.SecretEnv != "" {
		s, err := secretFrom("secret", c.Secret, c.SecretFile, c.SecretEnv)
		if err != nil {
			return nil, err
		}
		if len(s) < 32 {
			return nil, errors.New("secret: at least 32 bytes for HS256")
		}
		v.secret = []byte(s)
		algs = append(algs, "HS256")
	}
	switch {
	case c.JWKSFile != "" && c.JWKSURL != "":
		return nil, errors.New("jwksFile, jwksUrl: give one")
	case c.JWKSFile != "":
		b, err := os.ReadFile(c.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("jwksFile: %w", err)
		}
		if v.jwks, err = keyfunc.NewJWKSetJSON(json.RawMessage(b)); err != nil {
			return nil, fmt.Errorf("jwksFile: %w", err)
		}
	case c.JWKSURL != "" && !fetch:
		if _, err := url.ParseRequestURI(c.JWKSURL); err != nil {
			return nil, fmt.Errorf("jwksUrl: %w", err)
		}
		algs = append(algs, "RS256", "ES256")
	case c.JWKSURL != "":
		fail := false
		kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{c.JWKSURL}, keyfunc.Override{
			Client:      &http.Client{Timeout: 10 * time.Second},
			HTTPTimeout: 10 * time.Second,
			// A token with an unknown key id refreshes the set at most
			// once a minute, and never waits for that: it is refused.
			RefreshUnknownKID:         rate.NewLimiter(rate.Every(time.Minute), 1),
			RateLimitWaitMax:          time.Millisecond,
			RefreshInterval:           time.Duration(c.RefreshIntervalSeconds) * time.Second,
			NoErrorReturnFirstHTTPReq: &fail,
			RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
				return func(_ context.Context, err error) {
					log.Warn().Err(err).Msg("refreshing the JWKS failed; keeping the keys we have")
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("jwksUrl: %w", err)
		}
		v.jwks = kf
	}
	if v.jwks != nil {
		algs = append(algs, "RS256", "ES256")
	}
	if len(algs) == 0 {
		return nil, errors.New("secret, jwksFile or jwksUrl: one is required")
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(algs),
		jwt.WithIssuer(c.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(time.Duration(c.LeewaySeconds)*time.Second),
	)
	return v, nil
}

// verify checks a token and returns its principal: issuer, tenant and
// subject together, so equal subjects of two tenants stay apart.
func (v *jwtVerifier) verify(ctx context.Context, token string) (pool.Principal, error) {
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		// The key source follows the algorithm, which WithValidMethods
		// already restricted: an HS256 token is never checked against a
		// public key (the RS/HS confusion) nor the reverse.
		if t.Method.Alg() == "HS256" {
			return v.secret, nil
		}
		return v.jwks.KeyfuncCtx(ctx)(t)
	})
	if err != nil {
		return "", errcode.Wrap(errcode.Unauthenticated, "the bearer token is not valid", err)
	}
	aud, _ := claims.GetAudience()
	if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(v.cfg.Audiences, a) }) {
		return "", errcode.New(errcode.Unauthenticated, "the bearer token is for another audience")
	}
	sub, _ := claims.GetSubject()
	if sub == "" {
		return "", errcode.New(errcode.Unauthenticated, "the bearer token has no subject")
	}
	if len(v.cfg.Roles) > 0 && !hasRole(claims[v.cfg.RoleClaim], v.cfg.Roles) {
		return "", errForbidden
	}
	tid, _ := claims["tid"].(string)
	return jwtPrincipal(v.cfg.Issuer, tid, sub), nil
}

// jwtPrincipal joins a token's issuer, tenant and subject so that no two
// triples give the same principal: each part is escaped ("%", "|" and
// control characters) before the parts are joined with "|".
func jwtPrincipal(iss, tid, sub string) pool.Principal {
	esc := func(s string) string {
		var b strings.Builder
		for _, r := range s {
			if r == '%' || r == '|' || unicode.IsControl(r) {
				fmt.Fprintf(&b, "%%%02X", r)
				continue
			}
			b.WriteRune(r)
		}
		return b.String()
	}
	return pool.Principal("jwt:" + esc(iss) + "|" + esc(tid) + "|" + esc(sub))
}

func hasRole(claim any, want []string) bool {
	switch c := claim.(type) {
	case string:
		return slices.Contains(want, c)
	case []any:
		for _, r := range c {
			if s, ok := r.(string); ok && slices.Contains(want, s) {
				return true
			}
		}
	}
	return false
}

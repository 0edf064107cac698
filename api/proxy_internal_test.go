package api

import "testing"

func TestForwardPathAndQuery(t *testing.T) {
	paths := []struct{ in, want string }{
		{"/pools/app", "/"},
		{"/pools/app/", "/"},
		{"/pools/app/count", "/count"},
		{"/pools/app/dir/", "/dir/"},
		{"/pools//app//a///b", "/a/b"},
		{"/pools/app%2Dx/a%20b", "/a%20b"},
		{"/pools/app/caf%C3%A9", "/caf%C3%A9"},
	}
	for _, tc := range paths {
		if got, err := forwardPath(tc.in); err != nil || got != tc.want {
			t.Errorf("forwardPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"/pools/app/..", "/pools/app/a/../b", "/pools/app/%2e%2E/x", "/pools/app/a%2Fb", "/pools/app/a%5Cb", "/pools/app/%00", "/pools/app/%c2%9b", "/pools/app/%zz"} {
		if got, err := forwardPath(bad); err == nil {
			t.Errorf("forwardPath(%q) = %q, want a refusal", bad, got)
		}
	}
	queries := []struct{ in, want string }{
		{"identifier=a&api-version=1&x=1", "x=1"},
		{"x=1&identifier=a&y=%20z&x=2", "x=1&y=%20z&x=2"},
		{"identifie%72=a&b", "b"},
		{"&&identifier&", ""},
		{"ident=1", "ident=1"},
	}
	for _, tc := range queries {
		if got := forwardQuery(tc.in); got != tc.want {
			t.Errorf("forwardQuery(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

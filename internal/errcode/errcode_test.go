package errcode

import (
	"errors"
	"fmt"
	"testing"
)

func TestCodesAndMessages(t *testing.T) {
	cause := errors.New("dial unix /var/lib/sandpool/run/x.sock: connection refused")
	tests := []struct {
		name     string
		err      error
		code     Code
		public   string
		unwrapTo error
	}{
		{"nil", nil, "", "", nil},
		{"plain error is internal and says nothing", cause, Internal, "internal error", nil},
		{"coded", New(NotFound, "file not found"), NotFound, "file not found", nil},
		{"wrapped cause stays private", Wrap(Unavailable, "the sandbox engine is unavailable", cause), Unavailable, "the sandbox engine is unavailable", cause},
		{"outermost code wins through %w", fmt.Errorf("ctx: %w", Wrap(Timeout, "too slow", cause)), Timeout, "too slow", cause},
	}
	for _, tc := range tests {
		if got := Of(tc.err); got != tc.code {
			t.Errorf("%s: Of = %q, want %q", tc.name, got, tc.code)
		}
		if got := Public(tc.err); got != tc.public {
			t.Errorf("%s: Public = %q, want %q", tc.name, got, tc.public)
		}
		if tc.unwrapTo != nil && !errors.Is(tc.err, tc.unwrapTo) {
			t.Errorf("%s: cause lost", tc.name)
		}
	}
	if Wrap(Internal, "x", nil) != nil {
		t.Error("Wrap(nil) must be nil")
	}
}

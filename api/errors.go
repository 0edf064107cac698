package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/sandpool/sandpool/internal/errcode"
)

// Codes of this surface only. SessionPropertiesMissing is Azure's own
// spelling: clients that flip the body wrapper on it must see it verbatim.
const (
	codePropertiesMissing errcode.Code = "SessionPropertiesMissing"
	codeRouteNotFound     errcode.Code = "route_not_found"
	codeMethodNotAllowed  errcode.Code = "method_not_allowed"
	codePoolNotFound      errcode.Code = "pool_not_found"
	codeBadAPIVersion     errcode.Code = "unsupported_api_version"
	codeExecNotFound      errcode.Code = "execution_not_found"
)

// statusOf is the one table from error codes to HTTP statuses.
func statusOf(c errcode.Code) int {
	switch c {
	case errcode.InvalidArgument, errcode.InvalidIdentifier, codePropertiesMissing, codeBadAPIVersion:
		return http.StatusBadRequest
	case errcode.Unauthenticated:
		return http.StatusUnauthorized
	case errcode.Forbidden, codeHostNotAllowed, codeCrossOrigin:
		return http.StatusForbidden
	case codeMediaType:
		return http.StatusUnsupportedMediaType
	case errcode.NotFound, codeRouteNotFound, codePoolNotFound, codeExecNotFound:
		return http.StatusNotFound
	case codeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case errcode.Busy, codeOperationInUse:
		return http.StatusConflict
	case errcode.SessionLost, errcode.SandboxGone:
		return http.StatusGone
	case errcode.TooLarge:
		return http.StatusRequestEntityTooLarge
	case errcode.CapacityExceeded, errcode.PrincipalSessionQuota, errcode.RateLimited:
		return http.StatusTooManyRequests
	case errcode.Canceled:
		return 499 // the client went away; nobody reads this
	case errcode.NoSpace:
		return http.StatusInsufficientStorage
	case errcode.Unavailable, errcode.SandboxUnreachable, errcode.ShuttingDown:
		return http.StatusServiceUnavailable
	case errcode.Timeout, codeUpstreamTimeout:
		return http.StatusGatewayTimeout
	case codeUpstreamFailed:
		return http.StatusBadGateway
	case errcode.Unsupported:
		return http.StatusNotImplemented
	case errcode.CheckpointInvalid:
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

// retryAfter is the Retry-After (seconds) sent with a code, or 0.
func retryAfter(c errcode.Code) int {
	switch c {
	case errcode.CapacityExceeded, errcode.PrincipalSessionQuota:
		return 10
	case errcode.Unavailable, errcode.SandboxUnreachable, errcode.ShuttingDown:
		return 5
	}
	return 0
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeError answers with Azure's error shape, the code also in
// x-ms-error-code. Only the public message of err leaves the server.
func writeError(w http.ResponseWriter, err error) {
	code := errcode.Of(err)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		code, err = errcode.TooLarge, errcode.Newf(errcode.TooLarge, "the request body is larger than the %d-byte limit", mbe.Limit)
	}
	h := w.Header()
	h.Set("x-ms-error-code", string(code))
	if s := retryAfter(code); s > 0 && h.Get("Retry-After") == "" {
		h.Set("Retry-After", strconv.Itoa(s))
	}
	if code == errcode.Unauthenticated {
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	writeJSON(w, statusOf(code), errorBody{Error: errorDetail{Code: string(code), Message: errcode.Public(err)}})
}

// writeLimited answers a limiter's refusal, with its Retry-After.
func writeLimited(w http.ResponseWriter, err error) {
	var le *limitError
	if errors.As(err, &le) {
		w.Header().Set("Retry-After", strconv.Itoa(le.retryAfter))
	}
	writeError(w, err)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// Package wire holds the message types of sandpool's own protocols that
// both the server (api) and its Go client (api/client) speak, so the two
// cannot drift: the WebSocket streaming messages. It imports nothing of the
// server. (The Azure wire formats are the server's, in api.)
package wire

// WSSubprotocol is the WebSocket subprotocol of the streaming endpoint;
// browsers, which cannot set an Authorization header, offer
// WSBearerPrefix+token beside it.
const (
	WSSubprotocol  = "sandpool.v1"
	WSBearerPrefix = "bearer."
)

// WSRequest is a message from the client: "execute" (Code, optional ID
// and Timeout) or "interrupt" (ID, or the running execution).
type WSRequest struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
	Code string `json:"code,omitempty"`
	// Timeout is in seconds; 0 means the pool's default.
	Timeout float64 `json:"timeout,omitempty"`
}

// WSMessage is a message from the server. Type is one of queued, started,
// stdout, stderr, display, result, error, done and failure; which fields
// are set depends on it.
type WSMessage struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
	// stdout, stderr
	Text string `json:"text,omitempty"`
	// display, result: a MIME bundle (image/png is base64)
	Data map[string]string `json:"data,omitempty"`
	// error: a Python exception
	Ename     string   `json:"ename,omitempty"`
	Evalue    string   `json:"evalue,omitempty"`
	Traceback []string `json:"traceback,omitempty"`
	// done
	Status          string `json:"status,omitempty"`
	DurationMs      *int64 `json:"durationMs,omitempty"`
	StdoutTruncated bool   `json:"stdoutTruncated,omitempty"`
	StderrTruncated bool   `json:"stderrTruncated,omitempty"`
	KernelRestarted bool   `json:"kernelRestarted,omitempty"`
	Reason          string `json:"reason,omitempty"`
	// queued: how many executions are ahead of this one
	Position *int `json:"position,omitempty"`
	// failure: the execution could not run (a stable code and a message)
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

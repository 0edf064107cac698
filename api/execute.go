package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
)

// generation is a wire format of the Azure data plane.
type generation int

const (
	genLegacy     generation = iota + 1 // python/execute, python/*: flat, "$values"
	genProperties                       // 2024-02-02/2024-08-02: code/execute, files/upload, "properties" envelopes
	genExecutions                       // 2024-10-02 and later: executions, files, flat resources
)

// execRequest is an execution request in any generation's body, after
// normalisation.
type execRequest struct {
	code       string
	async      bool
	timeout    time.Duration
	maxOutput  int64
	jupyterFmt bool
	// identifier from the body, used only when the query has none (early
	// clients put it there).
	identifier string
}

// execFields are the fields of every generation, wrapped in "properties"
// or flat. Unknown fields are ignored: clients add their own.
type execFields struct {
	Identifier             string          `json:"identifier"`
	SessionID              string          `json:"sessionId"`
	CodeInputType          string          `json:"codeInputType"`
	ExecutionType          string          `json:"executionType"`
	Code                   *string         `json:"code"`
	PythonCode             *string         `json:"pythonCode"`
	TimeoutInSeconds       json.RawMessage `json:"timeoutInSeconds"`
	OutputStreamsMaxLength json.RawMessage `json:"outputStreamsMaxLength"`
	ReturnJupyterFormat    *bool           `json:"returnJupyterFormatExecutionResult"`
	ReturnJupyterFormat2   *bool           `json:"returnJupyterFormat"`
	ShellCommand           *string         `json:"shellCommand"`
	ExecCommandAndArgs     json.RawMessage `json:"execCommandAndArgs"`
}

// parseExec reads an execution body of at most maxBody bytes with code of
// at most maxCode bytes.
// maxTimeoutSeconds bounds a requested timeout before any pool's cap (the
// pool maximum can be at most a day).
const maxTimeoutSeconds = 7 * 86400

func parseExec(r io.Reader, maxCode int64) (execRequest, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return execRequest{}, readErr(err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return execRequest{}, errcode.New(codePropertiesMissing, "the request has no body; send {\"code\": \"...\"}")
	}
	var outer struct {
		Properties json.RawMessage `json:"properties"`
		execFields
	}
	if err := json.Unmarshal(b, &outer); err != nil {
		return execRequest{}, errcode.Wrap(errcode.InvalidArgument, "the body is not a valid JSON object", err)
	}
	f := outer.execFields
	if len(outer.Properties) > 0 && !bytes.Equal(outer.Properties, []byte("null")) {
		f = execFields{}
		if err := json.Unmarshal(outer.Properties, &f); err != nil {
			return execRequest{}, errcode.Wrap(errcode.InvalidArgument, "\"properties\" is not a valid JSON object", err)
		}
	}
	if f.ShellCommand != nil || len(f.ExecCommandAndArgs) > 0 {
		return execRequest{}, errcode.New(errcode.InvalidArgument, "shell commands are not supported by this pool; send Python in \"code\"")
	}
	var req execRequest
	code := f.Code
	if code == nil {
		code = f.PythonCode
	}
	if code == nil || *code == "" {
		return execRequest{}, errcode.New(codePropertiesMissing, "code is required but not provided")
	}
	req.code = *code
	switch strings.ToLower(f.CodeInputType) {
	case "", "inline", "inlinetext":
	case "inlinebase64":
		dec, err := base64.StdEncoding.DecodeString(req.code)
		if err != nil {
			return execRequest{}, errcode.New(errcode.InvalidArgument, "codeInputType is InlineBase64 but code is not valid base64")
		}
		req.code = string(dec)
		if req.code == "" {
			return execRequest{}, errcode.New(codePropertiesMissing, "code is required but not provided")
		}
	default:
		return execRequest{}, errcode.New(errcode.InvalidArgument, "codeInputType must be Inline, InlineText or InlineBase64")
	}
	if int64(len(req.code)) > maxCode {
		return execRequest{}, errcode.Newf(errcode.TooLarge, "the code is larger than the %d-byte limit", maxCode)
	}
	switch strings.ToLower(f.ExecutionType) {
	case "", "synchronous":
	case "asynchronous":
		req.async = true
	default:
		return execRequest{}, errcode.New(errcode.InvalidArgument, "executionType must be Synchronous or Asynchronous")
	}
	t, err := flexInt("timeoutInSeconds", f.TimeoutInSeconds)
	if err != nil {
		return execRequest{}, err
	}
	// Capped before the multiplication, which would overflow: the pool
	// caps it again at its own maximum.
	req.timeout = time.Duration(min(t, maxTimeoutSeconds)) * time.Second
	if req.maxOutput, err = flexInt("outputStreamsMaxLength", f.OutputStreamsMaxLength); err != nil {
		return execRequest{}, err
	}
	req.jupyterFmt = f.ReturnJupyterFormat != nil && *f.ReturnJupyterFormat || f.ReturnJupyterFormat2 != nil && *f.ReturnJupyterFormat2
	req.identifier = f.Identifier
	if req.identifier == "" {
		req.identifier = f.SessionID
	}
	return req, nil
}

// flexInt reads a non-negative integer sent as a number or a numeric
// string; absent or null is 0.
func flexInt(field string, raw json.RawMessage) (int64, error) {
	s := strings.Trim(string(bytes.TrimSpace(raw)), `"`)
	if s == "" || s == "null" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errcode.Newf(errcode.InvalidArgument, "%s must be a non-negative integer", field)
	}
	return n, nil
}

func readErr(err error) error {
	if _, ok := err.(*http.MaxBytesError); ok {
		return err
	}
	return errcode.Wrap(errcode.InvalidArgument, "the request body could not be read", err)
}

// outcome is a finished (or running) execution, ready to be encoded in
// any generation.
type outcome struct {
	id         string
	identifier string
	async      bool
	running    bool
	status     sandbox.Status
	reason     string
	stdout     string
	stderr     string
	elapsed    time.Duration
	err        *sandbox.ExecError
	// fault is why an asynchronous execution could not run at all.
	fault error
	// result: the last expression (or the first image shown when there is
	// no expression value), in the two encodings clients expect.
	value      any // code/execute "result": a JSON primitive, a repr string, or an image
	execResult any // executions "executionResult": a string, or an image
}

// imageResult is how an image result travels in every generation.
type imageResult struct {
	Type       string `json:"type"`
	Format     string `json:"format"`
	Base64Data string `json:"base64_data"`
}

// newOutcome renders what an execution produced.
func newOutcome(res *sandbox.Result, out *sandbox.Output, jupyterFmt bool) *outcome {
	o := &outcome{id: res.ID, status: res.Status, reason: res.Reason, elapsed: res.Duration, err: out.Error}
	o.stdout = string(out.Stdout) + truncNote(res.StdoutTruncated, res.StdoutBytes)
	o.stderr = string(out.Stderr) + truncNote(res.StderrTruncated, res.StderrBytes)
	if out.Error != nil {
		o.stderr += strings.Join(out.Error.Traceback, "\n") + "\n"
	}
	if res.Reason != "" && res.Status != sandbox.StatusOK && res.Status != sandbox.StatusError {
		o.stderr += res.Reason + "\n"
	}
	if res.KernelRestarted {
		o.stderr += "The Python kernel restarted: variables and imports are gone (files in /mnt/data are kept).\n"
	}
	o.value, o.execResult = "", ""
	switch {
	case out.Result != nil && out.Result.Data["image/png"] != "":
		o.value = imageResult{"image", "png", out.Result.Data["image/png"]}
		o.execResult = o.value
	case out.Result != nil:
		text := out.Result.Data["text/plain"]
		o.value, o.execResult = text, text
		var v any
		if len(out.Result.Value) > 0 && json.Unmarshal(out.Result.Value, &v) == nil {
			if s, ok := v.(string); ok {
				if !jupyterFmt {
					o.execResult = s
				}
				o.value = s
			} else {
				o.value = out.Result.Value
			}
		}
	default:
		for _, d := range out.Displays {
			if png := d.Data["image/png"]; png != "" {
				o.value = imageResult{"image", "png", png}
				o.execResult = o.value
				break
			}
		}
	}
	return o
}

func truncNote(truncated bool, total int64) string {
	if !truncated {
		return ""
	}
	return fmt.Sprintf("\n[sandpool: output truncated; %d bytes in all]\n", total)
}

func (o *outcome) ms() int64 { return o.elapsed.Milliseconds() }

// legacyStatus is the status of the python/execute and code/execute
// generations: Success, or Failure for an exception, a timeout, an
// interruption or a crash.
func (o *outcome) legacyStatus() string {
	if o.status == sandbox.StatusOK {
		return "Success"
	}
	return "Failure"
}

// operationState is the status of the executions generation.
func (o *outcome) operationState() string {
	switch {
	case o.running:
		return "Running"
	case o.status == sandbox.StatusOK && o.fault == nil:
		return "Succeeded"
	case o.status == sandbox.StatusInterrupted:
		return "Canceled"
	}
	return "Failed"
}

// failure is the "error" of a failed execution in the executions
// generation (nil when it succeeded).
func (o *outcome) failure() *errorDetail {
	switch {
	case o.running || o.status == sandbox.StatusOK:
		return nil
	case o.fault != nil:
		return &errorDetail{Code: string(errcode.Of(o.fault)), Message: errcode.Public(o.fault)}
	case o.status == sandbox.StatusTimeout:
		return &errorDetail{Code: "timeout", Message: "the execution ran past its timeout and was stopped"}
	case o.status == sandbox.StatusInterrupted:
		return &errorDetail{Code: "interrupted", Message: "the execution was interrupted"}
	case o.err != nil:
		return &errorDetail{Code: "python_exception", Message: o.err.Name + ": " + o.err.Value}
	}
	return &errorDetail{Code: "kernel_crashed", Message: "the Python kernel died during the execution"}
}

// encode renders o in generation g.
func (o *outcome) encode(g generation) any {
	switch g {
	case genLegacy:
		m := map[string]any{"$id": "1", "status": o.legacyStatus(), "stdout": o.stdout, "stderr": o.stderr,
			"result": o.value, "executionTimeInMilliseconds": o.ms()}
		if o.err != nil {
			m["error"] = map[string]any{"name": o.err.Name, "value": o.err.Value, "traceback": o.err.Traceback}
		}
		return m
	case genProperties:
		return map[string]any{"$id": "1", "properties": map[string]any{
			"$id": "2", "status": o.legacyStatus(), "stdout": o.stdout, "stderr": o.stderr,
			"result": o.value, "executionResult": o.execResult, "executionTimeInMilliseconds": o.ms()}}
	}
	typ := "Synchronous"
	if o.async {
		typ = "Asynchronous"
	}
	m := map[string]any{"id": o.id, "identifier": o.identifier, "executionType": typ, "status": o.operationState()}
	if o.running {
		return m
	}
	m["result"] = map[string]any{"stdout": o.stdout, "stderr": o.stderr, "executionResult": o.execResult,
		"executionTimeInMilliseconds": o.ms()}
	if f := o.failure(); f != nil {
		m["error"] = f
	}
	return m
}

// execute runs req in the session of k and gathers its outcome.
func (s *Server) execute(ctx context.Context, p *pool.Pool, k pool.SessionKey, id string, req execRequest) (*outcome, error) {
	max := req.maxOutput
	if max <= 0 {
		max = int64(p.Config().Execution.MaxOutput)
	}
	col := sandbox.Collector{Max: max, MaxDisplayBytes: int(s.limits.MaxResponseBytes)}
	res, err := p.Execute(ctx, k, sandbox.ExecRequest{ID: id, Code: req.code, Timeout: req.timeout, MaxOutput: max}, col.Sink())
	if err != nil {
		return nil, err
	}
	o := newOutcome(res, &col.Out, req.jupyterFmt)
	o.async, o.identifier = req.async, k.Identifier.String()
	return o, nil
}

// handleExecute serves every generation's execute route.
func (s *Server) handleExecute(w http.ResponseWriter, r *http.Request, c *call, g generation) {
	if err := requireJSON(r); err != nil {
		writeError(w, err)
		return
	}
	req, err := parseExec(http.MaxBytesReader(w, r.Body, s.limits.MaxRequestBytes.Bytes()), s.limits.MaxCodeBytes.Bytes())
	if err != nil {
		writeError(w, err)
		return
	}
	k, err := c.key(req.identifier)
	if err != nil {
		writeError(w, err)
		return
	}
	c.session(k)
	id := sandbox.NewExecID()
	if g == genExecutions {
		if op := r.Header.Get("operation-id"); validOperationID(op) {
			id = op
		}
		w.Header().Set("operation-id", id)
		w.Header().Set("Operation-Location", c.base+"/executions/"+url.PathEscape(id)+"?"+url.Values{
			"api-version": {c.apiVersion()}, "identifier": {k.Identifier.String()}}.Encode())
	}
	if req.async && g == genExecutions {
		// A running asynchronous execution counts against the caller's
		// concurrency as a request in flight would.
		held, err := s.limiter.hold(c.principal)
		if err != nil {
			writeLimited(w, err)
			return
		}
		run := func(ctx context.Context) (*outcome, error) { return s.execute(ctx, c.pool, k, id, req) }
		if err := s.execs.start(c.pool.Name(), k, id, held, run); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusAccepted, (&outcome{id: id, identifier: k.Identifier.String(), async: true, running: true}).encode(g))
		return
	}
	var x *storedExec
	if g == genExecutions {
		// The id is taken before the execution starts: two executions
		// never share one.
		if x, err = s.execs.reserve(c.pool.Name(), k, id); err != nil {
			writeError(w, err)
			return
		}
	}
	o, err := s.execute(r.Context(), c.pool, k, id, req)
	if err != nil {
		if x != nil {
			s.execs.drop(x)
		}
		writeError(w, err)
		return
	}
	if x != nil {
		s.execs.finish(x, o)
	}
	writeJSON(w, http.StatusOK, o.encode(g))
}

// validOperationID accepts a caller's operation id only when it is a
// plain token (it is echoed in headers and URLs).
func validOperationID(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// handleGetExecution serves GET executions/{id}.
func (s *Server) handleGetExecution(w http.ResponseWriter, r *http.Request, c *call, id string) {
	k, err := c.key("")
	if err != nil {
		writeError(w, err)
		return
	}
	c.session(k)
	o := s.execs.get(c.pool.Name(), k, id)
	if o == nil {
		writeError(w, errcode.New(codeExecNotFound, "no such execution in this session"))
		return
	}
	writeJSON(w, http.StatusOK, o.encode(genExecutions))
}

package tools

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
)

// ExecuteArgs are the arguments of execute_python.
type ExecuteArgs struct {
	Code    string
	Timeout time.Duration // 0: the default
}

// Execute runs args.Code in the session of k. Events go to observe (may
// be nil) as they happen, for surfaces that stream output; the result
// holds everything, capped. Canceling ctx interrupts the execution.
func (s *Service) Execute(ctx context.Context, k pool.SessionKey, args ExecuteArgs, observe pool.Sink) Result {
	if strings.TrimSpace(args.Code) == "" {
		return textResult(true, "code is empty: pass the Python source to run in the code argument")
	}
	if len(args.Code) > s.limits.MaxCodeBytes {
		return textResult(true, fmt.Sprintf("code is %s, above the limit of %s: write less code per call, or upload data with upload_file and read it from code",
			byteCount(int64(len(args.Code))), byteCount(int64(s.limits.MaxCodeBytes))))
	}
	timeout := args.Timeout
	if timeout <= 0 {
		timeout = s.limits.DefaultTimeout
	}
	timeout = min(timeout, s.limits.MaxTimeout)
	// Keep a little more than the model will see, so truncation notes
	// can say how much there was.
	col := pool.Collector{Max: int64(s.limits.MaxTextBytes) + 1, MaxDisplayBytes: 4 * s.limits.MaxImages * s.limits.MaxImageBytes}
	sink := col.Sink()
	if observe != nil {
		collect := sink
		sink = func(ev pool.Event) { observe(ev); collect(ev) }
	}
	res, err := s.backend.Execute(ctx, k, pool.ExecRequest{Code: args.Code, Timeout: timeout, MaxOutput: int64(s.limits.MaxTextBytes) + 1}, sink)
	if err != nil {
		return ErrorResult(err)
	}
	return s.render(res, &col.Out, timeout, col.DroppedDisplays)
}

// ErrorResult renders an error of the backend (no session, capacity,
// lost sandbox, ...) for the model: its public message and stable code.
func ErrorResult(err error) Result {
	code := errcode.Of(err)
	msg := errcode.Public(err)
	switch code {
	case errcode.SessionLost:
		msg += ". Call the tool again to start a fresh sandbox; re-create any variables and files you need"
	case errcode.CapacityExceeded:
		msg += ". Wait a little before retrying"
	}
	return textResult(true, fmt.Sprintf("%s (error code: %s)", msg, code))
}

// render turns an execution into content: stdout, stderr, the result,
// the error and a status line as text, figures as images.
func (s *Service) render(res *pool.Result, out *pool.Output, timeout time.Duration, dropped int) Result {
	r := Result{IsError: res.Status != pool.StatusOK}
	add := func(label string, b []byte, total int64) {
		if len(b) == 0 {
			return
		}
		r.Content = append(r.Content, Content{Kind: Text, Text: label + ":\n" + s.capText(b, total)})
	}
	add("stdout", out.Stdout, res.StdoutBytes)
	add("stderr", out.Stderr, res.StderrBytes)

	var images [][]byte
	var notes []string
	addImage := func(b64 string) {
		if len(images) >= s.limits.MaxImages {
			dropped++
			return
		}
		png, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			notes = append(notes, "a figure was not valid base64 and was dropped")
			return
		}
		fitted, note := fitPNG(png, s.limits.MaxImageBytes)
		if note != "" {
			notes = append(notes, note)
		}
		if fitted != nil {
			images = append(images, fitted)
		}
	}
	for _, d := range out.Displays {
		switch {
		case d.Data["image/png"] != "":
			addImage(d.Data["image/png"])
		case d.Data["text/plain"] != "":
			add("display", []byte(d.Data["text/plain"]), int64(len(d.Data["text/plain"])))
		}
	}
	if res := out.Result; res != nil {
		if png := res.Data["image/png"]; png != "" {
			addImage(png)
		} else if txt := res.Data["text/plain"]; txt != "" {
			add("result", []byte(txt), int64(len(txt)))
		}
	}
	if e := out.Error; e != nil {
		tb := strings.Join(e.Traceback, "\n")
		if tb == "" {
			tb = e.Name + ": " + e.Value
		}
		add("error", []byte(tb), int64(len(tb)))
	}
	if dropped > 0 {
		notes = append(notes, fmt.Sprintf("%d more figure(s) were not returned (at most %d per call): save figures to files and download them, or show fewer", dropped, s.limits.MaxImages))
	}
	if st := statusLine(res, timeout); st != "" {
		notes = append(notes, st)
	}
	if len(r.Content) == 0 && len(images) == 0 && len(notes) == 0 {
		notes = append(notes, "(no output; the code ran without printing anything or returning a value)")
	}
	if len(notes) > 0 {
		r.Content = append(r.Content, Content{Kind: Text, Text: strings.Join(notes, "\n")})
	}
	for _, png := range images {
		r.Content = append(r.Content, Content{Kind: Image, Data: png, MIMEType: "image/png"})
	}
	return r
}

// statusLine explains an execution that did not end normally.
func statusLine(res *pool.Result, timeout time.Duration) string {
	var st string
	switch res.Status {
	case pool.StatusTimeout:
		st = fmt.Sprintf("timeout: the execution ran past its %s limit and was stopped", timeout.Round(time.Second))
	case pool.StatusInterrupted:
		st = "interrupted: the execution was cancelled"
	case pool.StatusCrashed:
		st = "crashed: the Python process died during the execution (for example, out of memory)"
	}
	if res.KernelRestarted {
		if st != "" {
			st += "; "
		}
		st += "the Python kernel was restarted: variables and imports are gone, files in /mnt/data are kept"
	} else if st != "" {
		st += "; variables defined before it are kept"
	}
	if res.Killed > 0 {
		if st != "" {
			st += "\n"
		}
		st += fmt.Sprintf("%d background process(es) left by the code were stopped", res.Killed)
	}
	return st
}

// capText cuts b to the text limit at a character boundary and says so
// when it did; total is how many bytes there were in all.
func (s *Service) capText(b []byte, total int64) string {
	total = max(total, int64(len(b)))
	if len(b) <= s.limits.MaxTextBytes {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	cut := s.limits.MaxTextBytes
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return strings.ToValidUTF8(string(b[:cut]), "\uFFFD") +
		fmt.Sprintf("\n[truncated: showing the first %s of %s; print less, or write the output to a file and read parts of it]", byteCount(int64(cut)), byteCount(total))
}

func byteCount(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

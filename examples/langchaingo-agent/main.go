// Command langchaingo-agent is a Go agent that answers a question about a
// data file by writing and running Python in a sandpool session, with
// langchaingo's native tool calling.
//
// It talks to a sandpool server (SANDPOOL_URL, SANDPOOL_TOKEN, SANDPOOL_POOL)
// and to any OpenAI-compatible model (OPENAI_BASE_URL, OPENAI_API_KEY,
// OPENAI_MODEL). With -model scripted it runs offline with a scripted model
// that makes two dependent tool calls, which is how it is tested.
//
//	SANDPOOL_URL=http://127.0.0.1:8080 SANDPOOL_TOKEN=... OPENAI_API_KEY=... \
//	  go run ./examples/langchaingo-agent -question 'Which city sold the most?'
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/tmc/langchaingo/llms"
	"github.com/tmc/langchaingo/llms/openai"

	"github.com/sandpool/sandpool/agents"
	"github.com/sandpool/sandpool/api/client"
	"github.com/sandpool/sandpool/tools"
)

// sales is the data the question is about.
const sales = `city,month,sales
Lyon,2026-01,120
Paris,2026-01,95
Lyon,2026-02,80
Nantes,2026-02,150
Paris,2026-02,70
Nantes,2026-03,20
Lyon,2026-03,90
`

func main() {
	question := flag.String("question", "Which city had the highest total sales in sales.csv, and how much?", "the question")
	model := flag.String("model", "openai", `"openai" (OPENAI_* variables) or "scripted" (offline)`)
	conversation := flag.String("conversation", "", "the conversation id (default: a new one)")
	steps := flag.Int("max-steps", 8, "model calls at most")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *question, *model, *conversation, *steps); err != nil {
		fmt.Fprintln(os.Stderr, "langchaingo-agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, question, model, conversation string, steps int) error {
	url := os.Getenv("SANDPOOL_URL")
	if url == "" {
		url = "http://127.0.0.1:8080"
	}
	backend, err := client.New(url, os.Getenv("SANDPOOL_POOL"), os.Getenv("SANDPOOL_TOKEN"))
	if err != nil {
		return err
	}
	var llm llms.Model
	switch model {
	case "scripted":
		llm = &scripted{}
	case "openai":
		opts := []openai.Option{openai.WithToken(os.Getenv("OPENAI_API_KEY"))}
		if u := os.Getenv("OPENAI_BASE_URL"); u != "" {
			opts = append(opts, openai.WithBaseURL(u))
		}
		if m := os.Getenv("OPENAI_MODEL"); m != "" {
			opts = append(opts, openai.WithModel(m))
		}
		if llm, err = openai.New(opts...); err != nil {
			return err
		}
	default:
		return fmt.Errorf("-model: %q is neither openai nor scripted", model)
	}

	// The application binds the conversation; the model never sees or
	// chooses the session.
	secret := make([]byte, 32)
	if s := os.Getenv("SANDPOOL_BINDER_SECRET"); len(s) >= 32 {
		secret = []byte(s)
	} else {
		_, _ = rand.Read(secret)
	}
	binder, err := agents.NewBinder(secret)
	if err != nil {
		return err
	}
	if conversation == "" {
		conversation = fmt.Sprintf("example-%x", secret[:6])
	}
	key, err := binder.Key("", conversation)
	if err != nil {
		return err
	}
	svc := tools.NewService(backend, tools.Limits{})
	conv := agents.NewConversation(svc, key)
	defer conv.Reset(context.WithoutCancel(ctx))
	if r := svc.Upload(ctx, key, tools.UploadArgs{Name: "sales.csv", Content: sales}); r.IsError {
		return fmt.Errorf("upload: %s", r.JoinText())
	}

	history := []llms.MessageContent{
		llms.TextParts(llms.ChatMessageTypeSystem, "You answer questions about data by running Python with the execute_python tool. "+
			"The data is in /mnt/data. Run code to find the answer; do not guess."),
		llms.TextParts(llms.ChatMessageTypeHuman, question),
	}
	for i := 0; i < steps; i++ {
		resp, err := llm.GenerateContent(ctx, history, llms.WithTools(conv.Definitions()))
		if err != nil {
			return fmt.Errorf("model: %w", err)
		}
		choice := resp.Choices[0]
		if len(choice.ToolCalls) == 0 {
			fmt.Println("Answer:", choice.Content)
			return nil
		}
		ai := llms.MessageContent{Role: llms.ChatMessageTypeAI}
		for _, tc := range choice.ToolCalls {
			ai.Parts = append(ai.Parts, tc)
			fmt.Printf("-> %s %s\n", tc.FunctionCall.Name, tc.FunctionCall.Arguments)
		}
		history = append(history, ai)
		for _, m := range conv.ToolMessages(ctx, choice.ToolCalls) {
			fmt.Printf("<- %s\n", m.Parts[0].(llms.ToolCallResponse).Content)
			history = append(history, m)
		}
	}
	return fmt.Errorf("no answer after %d model calls", steps)
}

// scripted is an offline model: it loads the data in one call and uses the
// variable from that call in the next (so the answer needs the session's
// state), then answers from what the second call printed.
type scripted struct{}

func (s *scripted) GenerateContent(_ context.Context, msgs []llms.MessageContent, _ ...llms.CallOption) (*llms.ContentResponse, error) {
	var last string
	calls := 0
	for _, m := range msgs {
		if m.Role == llms.ChatMessageTypeTool {
			calls++
			last = m.Parts[0].(llms.ToolCallResponse).Content
		}
	}
	code := []string{
		"import pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(df.head())",
		"totals = df.groupby('city')['sales'].sum()\nprint(f'{totals.idxmax()} {totals.max()}')",
	}
	if calls < len(code) {
		args := fmt.Sprintf(`{"code": %q}`, code[calls])
		return &llms.ContentResponse{Choices: []*llms.ContentChoice{{ToolCalls: []llms.ToolCall{{
			ID: fmt.Sprintf("call-%d", calls+1), Type: "function",
			FunctionCall: &llms.FunctionCall{Name: tools.ExecutePython, Arguments: args},
		}}}}}, nil
	}
	// last is "stdout:\n<city> <total>\n".
	fields := strings.Fields(strings.TrimPrefix(last, "stdout:"))
	if len(fields) < 2 {
		return nil, fmt.Errorf("scripted model: unexpected tool output %q", last)
	}
	return &llms.ContentResponse{Choices: []*llms.ContentChoice{{
		Content: fmt.Sprintf("%s had the highest total sales: %s.", fields[0], fields[1]),
	}}}, nil
}

func (s *scripted) Call(ctx context.Context, prompt string, opts ...llms.CallOption) (string, error) {
	return llms.GenerateFromSinglePrompt(ctx, s, prompt, opts...)
}

// Renders an Ollama TEMPLATE as Ollama's server does for a chat request (template/template.go, collate: the
// system messages joined by a blank line into .System; consecutive messages of one role merged), with Go's own
// text/template. Input on stdin: [{"template": "...", "messages": [{"role", "content"}]}]; output: the renders.
package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type job struct {
	Template string    `json:"template"`
	Messages []message `json:"messages"`
}

func collate(messages []message) (string, []*message) {
	var system []string
	var collated []*message
	for i := range messages {
		if messages[i].Role == "system" {
			system = append(system, messages[i].Content)
		}
		if len(collated) > 0 && collated[len(collated)-1].Role == messages[i].Role {
			collated[len(collated)-1].Content += "\n\n" + messages[i].Content
		} else {
			m := messages[i]
			collated = append(collated, &m)
		}
	}
	return strings.Join(system, "\n\n"), collated
}

func main() {
	var jobs []job
	if err := json.NewDecoder(os.Stdin).Decode(&jobs); err != nil {
		panic(err)
	}
	var out []string
	for _, j := range jobs {
		t := template.Must(template.New("").Parse(j.Template))
		system, messages := collate(j.Messages)
		var b strings.Builder
		if err := t.Execute(&b, map[string]any{"System": system, "Messages": messages}); err != nil {
			panic(err)
		}
		out = append(out, b.String())
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
)

// printHelp prints where everything listens and how to call it; lead, if
// any, is a demo lead captured at captured.
func printHelp(out io.Writer, data, natsURL string, services []service, lead string, captured time.Time, token, operatorPassword string) {
	fmt.Fprintf(out, "\nLeadflow is running. Ctrl-C stops everything; data stays in %s/ for the next run.\n\n", data)
	fmt.Fprintf(out, "Every API call needs a bearer token granting its method's scope (docs/operations.md#auth).\n")
	fmt.Fprintf(out, "An operator's token, every scope, valid 30 days (leadctl reads it too), and NATS's operator user\n(reads the streams, re-drives dead letters; no key vault, no writes; docs/operations.md#nats-users):\n\n")
	fmt.Fprintf(out, "  export LEADFLOW_TOKEN=%s\n  export LEADFLOW_NATS_USER=operator LEADFLOW_NATS_PASSWORD=%s\n", token, operatorPassword)
	// leadctl's defaults are make run's addresses; elsewhere it reads these.
	addrs := map[string]string{}
	var moved []string
	if natsURL != "nats://127.0.0.1:4333" {
		moved = append(moved, "LEADFLOW_NATS_URL="+natsURL)
	}
	for _, s := range services {
		addrs[s.name] = s.addr
		if s.addr != defaultAddr[s.name] {
			moved = append(moved, "LEADFLOW_"+strings.ToUpper(s.name)+"_ADDR="+s.addr)
		}
	}
	if len(moved) > 0 {
		fmt.Fprintf(out, "  export %s\n", strings.Join(moved, " "))
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "  %-14s %-26s %s\n", "NATS JetStream", natsURL, "stream LEADFLOW (lead.>, campaign.>, model.>, claim.>)")
	_, projector := addrs["projector"]
	for _, s := range services {
		fmt.Fprintf(out, "  %-14s %-26s gRPC, reflection on\n", s.name, s.addr)
		fmt.Fprintf(out, "  %-14s %-26s HTTP/JSON (OpenAPI: pkg/gen/leadflow/%s/v1/%s_service.swagger.json)\n", "", "http://"+s.http, s.name, s.name)
		if s.web != "" {
			fmt.Fprintf(out, "  %-14s %-26s the dashboard: open it in a browser and sign in with $LEADFLOW_TOKEN (live, works offline)\n", "", s.web)
		}
	}
	if !projector {
		fmt.Fprintf(out, "  %-14s %-26s not running: it needs PostgreSQL on 127.0.0.1:5432 (see the log above); no dashboard, reports, leadctl queues or rebuild\n", "projector", "")
	}
	fmt.Fprintf(out, "\nCall it (grpcurl, pinned in tools/):\n")
	fmt.Fprintf(out, "  scripts/gotool grpcurl -plaintext %s list leadflow.intake.v1.IntakeService\n", addrs["intake"])
	fmt.Fprintf(out, "  scripts/gotool grpcurl -plaintext -H \"authorization: Bearer $LEADFLOW_TOKEN\" \\\n      -d '{\"contact\":{\"email\":\"you@example.com\"},\"attribution\":{\"source\":\"web-form\"}}' \\\n      %s leadflow.intake.v1.IntakeService/CaptureLead\n", addrs["intake"])
	if lead != "" {
		fmt.Fprintf(out, "  scripts/gotool grpcurl -plaintext -H \"authorization: Bearer $LEADFLOW_TOKEN\" -d '{\"lead_id\":\"%s\"}' \\\n      %s leadflow.intake.v1.IntakeService/GetLeadTimeline\n", lead, addrs["intake"])
	}
	httpAddr := map[string]string{}
	for _, s := range services {
		httpAddr[s.name] = s.http
	}
	fmt.Fprintf(out, "\nOr with curl and JSON (every method also answers POST /<package>.<Service>/<Method>):\n")
	fmt.Fprintf(out, "  curl -s -X POST http://%s/v1/leads -H \"Authorization: Bearer $LEADFLOW_TOKEN\" -H 'X-Correlation-Id: demo-1' \\\n      -d '{\"contact\":{\"email\":\"you@example.com\"},\"attribution\":{\"source\":\"web-form\"}}'\n", httpAddr["intake"])
	if lead != "" {
		fmt.Fprintf(out, "  curl -s -H \"Authorization: Bearer $LEADFLOW_TOKEN\" http://%s/v1/leads/%s\n", httpAddr["intake"], lead)
		if a, ok := httpAddr["handoff"]; ok {
			fmt.Fprintf(out, "  curl -s -H \"Authorization: Bearer $LEADFLOW_TOKEN\" http://%s/v1/leads/%s/brief\n", a, lead)
		}
	}
	if a, ok := httpAddr["projector"]; ok {
		// Data in a second currency (a deal or cost anyone adds) makes a
		// report without one INVALID_ARGUMENT.
		fmt.Fprintf(out, "  curl -s -H \"Authorization: Bearer $LEADFLOW_TOKEN\" 'http://%s/v1/reports/campaigns?attribution=ATTRIBUTION_MODEL_FIRST_TOUCH&currency=%s'\n", a, demoCurrency)
	}
	fmt.Fprintf(out, "\nWatch it (nats CLI, pinned in tools/; as the operator, whose replies come to its own inbox prefix):\n")
	natsURL += " --user operator --password $LEADFLOW_NATS_PASSWORD --inbox-prefix _INBOX.operator"
	fmt.Fprintf(out, "  scripts/gotool nats -s %s stream info LEADFLOW\n", natsURL)
	fmt.Fprintf(out, "  scripts/gotool nats -s %s sub 'lead.>' --headers-only\n", natsURL)
	subject := "lead.*.<lead id>"
	if lead != "" {
		subject = eventstore.LeadSubject(lead)
	}
	// Not `stream view`: its pager needs a terminal and acks, which the
	// operator may not. This consumer acks nothing, stops at the last event
	// and shows headers (type, id): the bodies are protobuf.
	fmt.Fprintf(out, "  scripts/gotool nats -s %s sub --stream LEADFLOW --all --terminate-at-end --headers-only '%s'   # the lead's events\n", natsURL, subject)
	fmt.Fprintf(out, "  scripts/gotool nats -s %s kv ls %s   # consumer group members\n", natsURL, consume.DefaultMembersBucket)
	fmt.Fprintf(out, "\nOperate it (leadctl, after the exports above; -o json for scripts; go run makes every failure exit 1,\nso a script that reads its exit codes, 3 for lost leads found, runs a build: go build -o bin/leadctl ./services/leadctl):\n")
	id := lead
	if id == "" {
		id = "<lead id>"
	}
	fmt.Fprintf(out, "  go run ./services/leadctl timeline %s\n", id)
	// A time the lead existed at: before its capture the state is an error.
	asOf := time.Now()
	if !captured.IsZero() {
		asOf = captured.Add(time.Second)
	}
	fmt.Fprintf(out, "  go run ./services/leadctl state %s --as-of %s\n", id, asOf.UTC().Truncate(time.Second).Format(time.RFC3339))
	fmt.Fprintf(out, "  go run ./services/leadctl explain %s\n", id)
	fmt.Fprintf(out, "  go run ./services/leadctl lost            # the no-lost-lead check, with the fix for each\n")
	if projector {
		fmt.Fprintf(out, "  go run ./services/leadctl queues          # what waits before a rep: routing, fallback, managers' queues\n")
	}
	fmt.Fprintf(out, "  go run ./services/leadctl disqualify <lead id> --reason spam   # a verdict no rule gave (--not-now: to nurture)\n")
	fmt.Fprintf(out, "  go run ./services/leadctl recycle <lead id> --note <why>       # to nurture by hand, enrolled at once\n")
	fmt.Fprintf(out, "  go run ./services/leadctl replay          # every lead event through the lifecycle rules\n")
	if projector {
		fmt.Fprintf(out, "  go run ./services/leadctl rebuild         # the projector's read models, from the stream\n")
	}
	fmt.Fprintf(out, "  go run ./services/leadctl dlq list\n")
	fmt.Fprintf(out, "  go run ./services/leadctl tail --type LeadQualified\n")
	fmt.Fprintf(out, "  export $(grep SIGNING %s)  # then tokens for your integrations:\n", filepath.Join(data, "keys.env"))
	fmt.Fprintf(out, "  go run ./services/leadctl token issue --sub web-forms --kind integration --team marketing --scope leads:capture --ttl 720h\n")
	fmt.Fprintf(out, "  go run ./services/leadctl token revoke --id <the id issue printed>   # or --sub web-forms: all of its tokens\n\n")
}

// defaultAddr are the addresses leadctl calls unless told otherwise.
var defaultAddr = map[string]string{"intake": "127.0.0.1:7101", "qualification": "127.0.0.1:7102", "handoff": "127.0.0.1:7103",
	"nurture": "127.0.0.1:7104", "projector": "127.0.0.1:7105"}

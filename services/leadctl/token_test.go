package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
)

func TestTokenRevoke(t *testing.T) { testTokenRevoke(t, newWorld) }

// An operator issues a token, a service accepts it, the operator revokes
// it by the id issue printed, and the service refuses it; then every
// token of the caller, by its subject.
func testTokenRevoke(t *testing.T, newWorld func(testing.TB) *world) {
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := auth.EnsureRevocations(ctx, w.nats.JS, 1); err != nil { // intake makes it
		t.Fatal(err)
	}
	out, err := runCtl(ctx, "token", "keygen")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, l := range strings.Fields(out) {
		k, v, _ := strings.Cut(l, "=")
		keys[k] = v
	}
	verifier, err := auth.FromKeys(keys["LEADFLOW_AUTH_KEYS"])
	if err != nil {
		t.Fatal(err)
	}
	go verifier.Follow(ctx, w.nats.JS, slog.New(slog.NewTextHandler(io.Discard, nil)))
	issue := func() (token, id string) {
		t.Helper()
		// Scopes space-separated, as a token's claim has them.
		out, err := runCtl(ctx, "token", "issue", "--sub", "crm-sync", "--kind", "integration", "--team", "sales",
			"--scope", "leads:read sales:write", "--signing-key", keys["LEADFLOW_AUTH_SIGNING_KEY"])
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^(\S+)\ntoken id (\S+) `).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("issue printed %q: no token and id", out)
		}
		if p, err := verifier.Verify(m[1]); err != nil || !p.Grants("leads:read") || !p.Grants("sales:write") {
			t.Fatalf("a fresh token: %+v %v, want leads:read and sales:write", p, err)
		}
		return m[1], m[2]
	}
	refused := func(tok string) {
		t.Helper()
		testenv.Eventually(t, 5*time.Second, func() bool {
			_, err := verifier.Verify(tok)
			return errors.Is(err, auth.ErrUnauthenticated)
		}, "a revoked token is still accepted")
	}
	first, id := issue()
	second, _ := issue()
	// Named in capitals, as some tools print a UUID: the same token.
	if out, err := runCtl(ctx, append(w.natsFlags(), "token", "revoke", "--id", strings.ToUpper(id))...); err != nil {
		t.Fatalf("revoke --id: %v\n%s", err, out)
	}
	refused(first)
	if _, err := verifier.Verify(second); err != nil {
		t.Fatalf("another token of the caller, not revoked: %v", err)
	}
	if out, err := runCtl(ctx, append(w.natsFlags(), "token", "revoke", "--sub", "crm-sync")...); err != nil {
		t.Fatalf("revoke --sub: %v\n%s", err, out)
	}
	refused(second)
	if _, err := runCtl(ctx, append(w.natsFlags(), "token", "revoke")...); !errors.Is(err, errUsage) {
		t.Fatalf("revoke naming nothing: %v, want a usage error", err)
	}
	if _, err := runCtl(ctx, append(w.natsFlags(), "token", "revoke", "--id", "not-a-real-id")...); !errors.Is(err, errUsage) {
		t.Fatalf("revoke of an id no token has: %v, want a usage error", err)
	}
	// -o json: one JSON object each, the token's id beside it.
	out, err = runCtl(ctx, "token", "keygen", "-o", "json")
	var kg map[string]string
	if err != nil || json.Unmarshal([]byte(out), &kg) != nil || len(kg["signing_key"]) != 64 || kg["public_key"] == "" {
		t.Fatalf("keygen -o json: %v\n%s", err, out)
	}
	out, err = runCtl(ctx, "token", "issue", "--sub", "crm-json", "--kind", "integration", "--team", "sales",
		"--scope", "leads:read", "--signing-key", keys["LEADFLOW_AUTH_SIGNING_KEY"], "-o", "json")
	var is map[string]string
	if err != nil || json.Unmarshal([]byte(out), &is) != nil || is["id"] == "" {
		t.Fatalf("issue -o json: %v\n%s", err, out)
	}
	if p, err := verifier.Verify(is["token"]); err != nil || p.ID != is["id"] {
		t.Fatalf("the token issue -o json printed: %v %v", p, err)
	}
	out, err = runCtl(ctx, append(w.natsFlags(), "token", "revoke", "--id", is["id"], "-o", "json")...)
	var rv map[string]string
	if err != nil || json.Unmarshal([]byte(out), &rv) != nil || rv["revoked_id"] != is["id"] {
		t.Fatalf("revoke -o json: %v\n%s", err, out)
	}
	// A token of no kind or team would act as neither a person nor an
	// integration: refused.
	for _, flag := range [][]string{{"--kind", "unspecified"}, {"--team", "unspecified"}} {
		args := append([]string{"token", "issue", "--sub", "ann", "--scope", "sales:write", "--signing-key", keys["LEADFLOW_AUTH_SIGNING_KEY"]}, flag...)
		if _, err := runCtl(ctx, args...); !errors.Is(err, errUsage) {
			t.Fatalf("issue %v: %v, want a usage error", flag, err)
		}
	}
	// * is an operator's: an integration gets the scopes it needs.
	args := []string{"token", "issue", "--sub", "crm", "--kind", "integration", "--team", "sales", "--scope", "*", "--signing-key", keys["LEADFLOW_AUTH_SIGNING_KEY"]}
	if _, err := runCtl(ctx, args...); !errors.Is(err, errUsage) {
		t.Fatalf("issue an integration *: %v, want a usage error", err)
	}
}

// With auth on, what leadctl writes names the caller its token names: an
// erasure records who erased the lead.
func TestWritesNameTheTokensCaller(t *testing.T) {
	w := newWorld(t)
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	token, err := auth.Issue(priv, auth.Principal{Subject: "olga", Kind: eventv1.ActorKind_ACTOR_KIND_USER,
		Team: eventv1.Team_TEAM_OPERATIONS, Scopes: []string{auth.AllScopes}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	addr := w.serve(t, "intake", "-master-key", masterKey, "-blind-key", blindKey, "-auth-keys", hex.EncodeToString(pub))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), auth.Bearer(token))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := intakev1.NewIntakeServiceClient(conn).CaptureLead(context.Background(), &intakev1.CaptureLeadRequest{
		Contact: &eventv1.Contact{Email: "ada@analytical.example"}, Attribution: &eventv1.Attribution{Source: "web-form"}})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := w.leadctl(t, "--intake", addr, "--token", token, "erase", c.GetLeadId(), "--reason", "ticket 7"); err != nil {
		t.Fatalf("erase: %v\n%s", err, out)
	}
	recs, err := w.store.Load(context.Background(), eventstore.LeadSubject(c.GetLeadId()))
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1].Event
	if last.GetEventType() != "LeadErased" || last.GetActor().GetId() != "olga" || last.GetActor().GetTeam() != eventv1.Team_TEAM_OPERATIONS {
		t.Fatalf("last event %s by %v, want LeadErased by olga of operations", last.GetEventType(), last.GetActor())
	}
}

// No command's --help prints a secret from the environment: operators
// paste help output into tickets and chats.
func TestHelpPrintsNoSecret(t *testing.T) {
	secrets := map[string]string{}
	for _, env := range []string{"LEADFLOW_AUTH_SIGNING_KEY", "LEADFLOW_NATS_PASSWORD", "LEADFLOW_TOKEN", "LEADFLOW_NATS_USER"} {
		secrets[env] = "s3cr3t-" + strings.ToLower(env)
		t.Setenv(env, secrets[env])
	}
	// A password in the NATS URL: neither help nor a failed connection
	// shows it.
	secrets["LEADFLOW_NATS_URL"] = "s3cr3t-in-url"
	t.Setenv("LEADFLOW_NATS_URL", "nats://operator:s3cr3t-in-url@127.0.0.1:1")
	if out, err := runCtl(context.Background(), "dlq", "list", "--timeout", "1s"); err == nil || strings.Contains(out+err.Error(), "s3cr3t-in-url") {
		t.Errorf("dlq list with nothing listening: %v %q, want an error without the URL's password", err, out)
	}
	var walk func(c *cobra.Command) []string
	walk = func(c *cobra.Command) []string {
		paths := []string{c.CommandPath()}
		for _, sub := range c.Commands() {
			paths = append(paths, walk(sub)...)
		}
		return paths
	}
	paths := walk(newRoot(io.Discard))
	if len(paths) < 20 {
		t.Fatalf("only %d commands: %v", len(paths), paths)
	}
	for _, p := range paths {
		args := append(strings.Fields(p)[1:], "--help")
		out, err := runCtl(context.Background(), args...)
		if err != nil || !strings.Contains(out, "Usage:") {
			t.Fatalf("%v: %v %q", args, err, out)
		}
		for env, v := range secrets {
			if strings.Contains(out, v) {
				t.Errorf("%s --help prints $%s", p, env)
			}
		}
	}
}

// The timeline names the API caller beside an actor the request named.
func TestByNamesTheCaller(t *testing.T) {
	rep := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "ann"}
	crm := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_INTEGRATION, Id: "crm-sync"}
	for _, tc := range []struct {
		ev   *eventv1.Event
		want string
	}{
		{&eventv1.Event{Actor: rep}, "user:ann"},
		{&eventv1.Event{Actor: rep, Caller: crm}, "user:ann via integration:crm-sync"},
		{&eventv1.Event{}, "-"},
	} {
		if got := by(tc.ev); got != tc.want {
			t.Errorf("by(%v) = %q, want %q", tc.ev, got, tc.want)
		}
	}
}

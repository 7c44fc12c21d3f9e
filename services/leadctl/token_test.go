package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/auth"
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
		out, err := runCtl(ctx, "token", "issue", "--sub", "crm-sync", "--kind", "integration", "--team", "sales",
			"--scope", "leads:read", "--signing-key", keys["LEADFLOW_AUTH_SIGNING_KEY"])
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^(\S+)\ntoken id (\S+) `).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("issue printed %q: no token and id", out)
		}
		if _, err := verifier.Verify(m[1]); err != nil {
			t.Fatalf("a fresh token: %v", err)
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
	if out, err := runCtl(ctx, append(w.natsFlags(), "token", "revoke", "--id", id)...); err != nil {
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
}

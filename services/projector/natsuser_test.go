package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/auth"

	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/services/projector/ports"
)

// TestAsItsNATSUser projects live, rebuilds while events arrive, replays
// a what-if and serves the dashboard on the projector's permissions only,
// its APIs and dashboard over TLS.
func TestAsItsNATSUser(t *testing.T) {
	if ports.LeadGroup != natsauth.ProjectorGroup || ports.ReferenceGroup != natsauth.ProjectorRefGroup {
		t.Fatalf("groups %q and %q, the NATS permissions name %q and %q", ports.LeadGroup, ports.ReferenceGroup,
			natsauth.ProjectorGroup, natsauth.ProjectorRefGroup)
	}
	t.Run("OneSetOfNumbers", func(t *testing.T) { testOneSetOfNumbers(t, newWorldWithUsers) })
	t.Run("WhatIf", func(t *testing.T) { testWhatIfOfAProposedModel(t, newWorldWithUsers) })
	t.Run("DashboardOverTLS", testDashboardOverTLS)
}

// The dashboard answers over TLS only, and its session cookie is Secure.
func testDashboardOverTLS(t *testing.T) {
	pub, signer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorldWithUsers(t)
	_, base := w.startDashboard(t, func(c *Config) { c.AuthKeys = hex.EncodeToString(pub) })
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("dashboard at %s", base)
	}
	tok, err := auth.Issue(signer, auth.Principal{Subject: "leader", Scopes: []string{"reports:read"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: w.nats.TLS.Client()}}
	res, err := client.Post(base+"api/session", "application/json", strings.NewReader(`{"token":"`+tok+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	cookies := res.Cookies()
	if res.StatusCode != http.StatusOK || len(cookies) != 1 || !cookies[0].Secure || !cookies[0].HttpOnly {
		t.Fatalf("sign-in over TLS: %d, cookies %v", res.StatusCode, cookies)
	}
	if res, err := http.Get("http://" + strings.TrimPrefix(base, "https://")); err == nil && res.StatusCode == http.StatusOK {
		t.Fatal("the dashboard answered plaintext HTTP")
	}
}

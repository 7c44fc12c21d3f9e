package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/leadflow/leadflow/pkg/auth"
)

// With auth on, the dashboard's data needs a token too: the JSON answers
// 401 without one and 403 for a scope the token lacks, and the page asks
// for a token, refuses one that does not grant the reports, and shows
// the figures once signed in (the token kept in an HttpOnly cookie).
func TestDashboardSignIn(t *testing.T) {
	chromium := findChromium(t)
	pub, signer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	token := func(scopes ...string) string {
		tok, err := auth.Issue(signer, auth.Principal{Subject: "leader", Scopes: scopes}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	w := newWorld(t)
	_, base := w.startDashboard(t, func(c *Config) { c.AuthKeys = hex.EncodeToString(pub) })
	w.fixture(t)
	w.projected(t, w.dsn)

	get := func(path, tok string) int {
		req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	reports := token("reports:read")
	for _, c := range []struct {
		path, tok string
		want      int
	}{
		{"api/funnel", "", http.StatusUnauthorized},
		{"api/funnel", "forged", http.StatusUnauthorized},
		{"api/funnel", token("leads:capture"), http.StatusForbidden},
		{"api/funnel", reports, http.StatusOK},
		{"api/lead/x", reports, http.StatusForbidden},
		{"api/model", reports, http.StatusForbidden},
		{"api/status", reports, http.StatusForbidden}, // as GetProjectionStatus: ops
		{"api/status", token("ops"), http.StatusOK},
		{"", "", http.StatusOK}, // the page itself holds no data
	} {
		if got := get(c.path, c.tok); got != c.want {
			t.Errorf("GET /%s with %.10q: %d, want %d", c.path, c.tok, got, c.want)
		}
	}

	// A cross-site form posts text/plain: it signs no browser in.
	res, err := http.Post(base+"api/session", "text/plain", strings.NewReader(`{"token":"`+reports+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnsupportedMediaType || len(res.Cookies()) != 0 {
		t.Fatalf("sign-in posted as text/plain: %d, cookies %v; want 415 and none", res.StatusCode, res.Cookies())
	}
	// A misspelt or mistyped token is named in the API's words, and signs
	// nothing in.
	for in, want := range map[string]string{
		`{"tokn":"` + reports + `"}`: `unknown field \"tokn\"`,
		`{"token":5}`:                `"field":"token","description":"must be a JSON string, not number"`,
	} {
		res, err := http.Post(base+"api/session", "application/json", strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || len(res.Cookies()) != 0 || !strings.Contains(string(body), want) || strings.Contains(string(body), "Go ") {
			t.Fatalf("sign-in with %.20s: %d %s, cookies %v; want 400 with %s and none", in, res.StatusCode, body, res.Cookies(), want)
		}
	}

	b := newBrowser(t, chromium, base)
	b.run(t, chromedp.Navigate(base))
	b.waitFor(t, `document.body.dataset.signin === "true"`, 20*time.Second)
	if got := b.eval(t, `[...document.querySelectorAll('[data-k="funnel.captured"]')].map(e => e.textContent)`); len(got) != 0 {
		t.Fatalf("figures shown before signing in: %v", got)
	}
	signIn := func(tok string) {
		b.eval(t, fmt.Sprintf(`document.getElementById("signin-token").value = %q; document.getElementById("signin").requestSubmit(); []`, tok))
	}
	signIn(token("leads:capture"))
	b.waitFor(t, `document.getElementById("signin-error").textContent.includes("reports:read")`, 10*time.Second)
	signIn(token("reports:read", "leads:read"))
	b.waitFor(t, `document.body.dataset.loaded === "true" && !document.body.dataset.signin`, 20*time.Second)
	if got := b.text(t, "funnel.captured"); strings.TrimSpace(got) == "" || got == "0" {
		t.Fatalf("funnel.captured shows %q after signing in", got)
	}
	// The cookie is not the page's to read.
	if got := b.eval(t, `[document.cookie]`); strings.Contains(got[0], "leadflow_session") {
		t.Fatalf("the session cookie is readable by script: %q", got[0])
	}
	// A period the page cannot read (a year mistyped into the date field,
	// a shared link's RFC 3339 time) is named, not a blank page.
	for _, u := range []string{"#/?from=20261-03-01", "#/?to=2026-04-01T00:00:00Z", "#/leads?from=2026-13-01"} {
		b.open(t, base+u)
		field := "from:"
		if strings.Contains(u, "to=") {
			field = "to:"
		}
		if got := b.eval(t, `[document.getElementById("view").textContent]`); !strings.Contains(got[0], field+" must be a date") {
			t.Errorf("%s shows %q, want the period named", u, got[0])
		}
	}
	// Signing out ends the session: the page asks for a token again, also
	// after a reload.
	b.open(t, base+"#/")
	b.click(t, "#signout")
	b.waitFor(t, `document.body.dataset.signin === "true"`, 10*time.Second)
	b.run(t, chromedp.Navigate("about:blank"), chromedp.Navigate(base))
	b.waitFor(t, `document.body.dataset.signin === "true"`, 20*time.Second)
	b.close(t)
}

// A live view outlasts no revocation: its stream ends within seconds of
// the token being revoked, and the browser's reconnect is refused.
func TestLiveStreamEndsWhenItsTokenIsRevoked(t *testing.T) {
	w, base, signer := revocableDashboard(t)
	tok, err := auth.Issue(signer, auth.Principal{Subject: "wallboard", Scopes: []string{"reports:read"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := auth.Claimed(tok)
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, base+"api/live", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("live: %v %v", res, err)
	}
	defer res.Body.Close()
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, res.Body); ended <- err }()
	select {
	case err := <-ended:
		t.Fatalf("the live stream ended before any revocation: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	if err := auth.Revoke(ctxT(t), w.nats.JS, p.ID, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the live stream still runs 10 s after its token was revoked")
	}
	req, _ = http.NewRequestWithContext(ctxT(t), http.MethodGet, base+"api/live", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("reconnecting with the revoked token: %v %v, want 401", res, err)
	}
}

// A page whose session ends (its token revoked) asks to sign in again,
// keeps the form while the user clicks on, and once signed in with
// another token is live again, without a reload.
func TestADashboardWhoseSessionEndsAsksToSignInAgain(t *testing.T) {
	chromium := findChromium(t)
	w, base, signer := revocableDashboard(t)
	token := func(subject string) string {
		tok, err := auth.Issue(signer, auth.Principal{Subject: subject, Scopes: []string{"reports:read", "leads:read"}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	first := token("wallboard")
	b := newBrowser(t, chromium, base)
	b.run(t, chromedp.Navigate(base))
	b.waitFor(t, `document.body.dataset.signin === "true"`, 20*time.Second)
	signIn := func(tok string) {
		b.eval(t, fmt.Sprintf(`document.getElementById("signin-token").value = %q; document.getElementById("signin").requestSubmit(); []`, tok))
	}
	signIn(first)
	b.waitFor(t, `document.body.dataset.loaded === "true" && !document.body.dataset.signin && document.getElementById("live").classList.contains("on")`, 20*time.Second)

	p, _ := auth.Claimed(first)
	if err := auth.Revoke(ctxT(t), w.nats.JS, p.ID, ""); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, `document.body.dataset.signin === "true" && !!document.getElementById("signin")`, 20*time.Second)
	b.eval(t, `location.hash = "#/leads"; []`)
	time.Sleep(time.Second)
	if got := b.eval(t, `[String(!!document.getElementById("signin"))]`); got[0] != "true" {
		t.Fatal("the sign-in form went when the user clicked on")
	}
	signIn(token("wallboard-2"))
	b.waitFor(t, `!document.body.dataset.signin && document.getElementById("live").classList.contains("on")`, 20*time.Second)
	b.close(t)
}

// revocableDashboard starts a dashboard with auth on and revocations
// kept; signer issues its tokens.
func revocableDashboard(t *testing.T) (*world, string, ed25519.PrivateKey) {
	t.Helper()
	pub, signer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	if err := auth.EnsureRevocations(ctxT(t), w.nats.JS, 1); err != nil {
		t.Fatal(err)
	}
	_, base := w.startDashboard(t, func(c *Config) { c.AuthKeys = hex.EncodeToString(pub) })
	return w, base, signer
}

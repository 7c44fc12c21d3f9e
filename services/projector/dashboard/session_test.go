package dashboard_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/services/projector/dashboard"
)

// A token not taken is 401 naming the scheme (RFC 9110), but while the
// revocations are unread no token is taken, and the answer is 503 to
// retry: a 401 would have the page ask to sign in again, and refuse the
// good token pasted there too.
func TestDashboardRefusalsSayWhetherToSignInOrRetry(t *testing.T) {
	pub, signer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Issue(signer, auth.Principal{Subject: "leader", Scopes: []string{"reports:read"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	h := dashboard.New(dashboard.Config{Auth: v})
	call := func(method, path, body string, header ...string) *http.Response {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Result()
	}
	if res := call("GET", "/api/funnel", ""); res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("no token: %d WWW-Authenticate %q, want 401 Bearer", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
	v.RequireRevocations() // and none read
	for name, res := range map[string]*http.Response{
		"a report":  call("GET", "/api/funnel", "", "Authorization", "Bearer "+tok),
		"a sign-in": call("POST", "/api/session", `{"token":"`+tok+`"}`, "Content-Type", "application/json"),
		// The page asks whether it is signed in when its live view drops.
		"a session's check": call("GET", "/api/session", "", "Authorization", "Bearer "+tok),
	} {
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || len(res.Cookies()) != 0 {
			t.Errorf("%s, revocations unread: %d Retry-After %q, want 503", name, res.StatusCode, res.Header.Get("Retry-After"))
		}
	}
}

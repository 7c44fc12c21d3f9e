package dashboard

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/leadflow/leadflow/pkg/auth"
)

// sessionCookie carries the token a person pasted into the sign-in form:
// a browser cannot put a bearer token on EventSource, and an HttpOnly,
// same-site cookie keeps it from the page's script and from other sites.
const sessionCookie = "leadflow_session"

// scopeOf is the scope an /api/ path reads: a lead is personal data, the
// what-if and the model are the scoring model's, the projection's status
// is an operator's (as GetProjectionStatus), the rest are reports.
func scopeOf(path string) string {
	switch {
	case path == "/api/status":
		return "ops"
	case strings.HasPrefix(path, "/api/lead"):
		return "leads:read"
	case strings.HasPrefix(path, "/api/whatif"), path == "/api/model":
		return "models:read"
	}
	return "reports:read"
}

// guard checks the token of every /api/ call but the session's own when
// auth is on: 401 without a valid one, 403 naming the scope it lacks.
func (h *Handler) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.cfg.Auth == nil || !strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/api/session" {
			next.ServeHTTP(w, r)
			return
		}
		p, err := h.caller(r)
		if err != nil {
			h.refuse(w, err, "sign in: ")
			return
		}
		if scope := scopeOf(r.URL.Path); !p.Grants(scope) {
			h.deny(w, http.StatusForbidden, "the token of "+p.Subject+" does not grant "+scope)
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

// caller is who the request's token (header, else cookie) names.
func (h *Handler) caller(r *http.Request) (auth.Principal, error) {
	token := auth.BearerToken(r.Header.Get("Authorization"))
	if c, err := r.Cookie(sessionCookie); token == "" && err == nil {
		token = c.Value
	}
	if token == "" {
		return auth.Principal{}, errors.New("no token")
	}
	return h.cfg.Auth.Verify(token)
}

// session answers whether the page must sign in (GET), signs in with a
// token that grants the reports (POST, {"token": ...}), or signs out
// (DELETE).
func (h *Handler) session(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		out := map[string]any{"auth": h.cfg.Auth != nil}
		if h.cfg.Auth != nil {
			p, err := h.caller(r)
			if errors.Is(err, auth.ErrNotReady) {
				// Not "signed out": the page would ask for the good token.
				h.refuse(w, err, "")
				return
			}
			if err == nil {
				out["subject"] = p.Subject
			}
		}
		h.json(w, out)
	case http.MethodPost:
		if h.cfg.Auth == nil {
			h.json(w, map[string]any{"auth": false})
			return
		}
		// A cross-site form can post text/plain, not JSON (that needs
		// CORS): it cannot sign a browser in with another's token.
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			h.deny(w, http.StatusUnsupportedMediaType, "want Content-Type application/json")
			return
		}
		var in struct {
			Token string `json:"token"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<10))
		dec.DisallowUnknownFields() // {"tokn": ...} is a typo, not an empty token
		if err := dec.Decode(&in); err != nil {
			h.fail(w, r, bodyError(err, `want {"token": "<bearer token>"}`))
			return
		}
		p, err := h.cfg.Auth.Verify(strings.TrimSpace(in.Token))
		if err != nil {
			h.refuse(w, err, "")
			return
		}
		if !p.Grants("reports:read") {
			h.deny(w, http.StatusForbidden, "the token of "+p.Subject+" does not grant reports:read")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: strings.TrimSpace(in.Token), Path: "/api/",
			Expires: p.Expires, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
		h.json(w, map[string]any{"auth": true, "subject": p.Subject})
	case http.MethodDelete:
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: "/api/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		h.deny(w, http.StatusMethodNotAllowed, "GET, POST or DELETE")
	}
}

// refuse answers a token not taken: 401, naming the scheme (RFC 9110),
// or 503 while the revocations are unread, so that the page retries
// rather than ask to sign in again with a token that is good.
func (h *Handler) refuse(w http.ResponseWriter, err error, prefix string) {
	if errors.Is(err, auth.ErrNotReady) {
		w.Header().Set("Retry-After", "5")
		h.deny(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	w.Header().Set("WWW-Authenticate", "Bearer")
	h.deny(w, http.StatusUnauthorized, prefix+err.Error())
}

func (h *Handler) deny(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

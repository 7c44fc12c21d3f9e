// Package auth checks who calls a Leadflow API and what they may do.
//
// A caller sends a bearer token: a JWT signed with Ed25519 (EdDSA) by a key
// the services trust, naming the caller (sub), its kind and team, when it
// expires (exp), and the scopes it grants. Each API method declares the
// scope it needs in its proto definition (leadflow.auth.v1.scope), so the
// contract says what a token must grant and one interceptor enforces it
// for every service, over gRPC and over HTTP (which goes through gRPC).
//
// Services hold public keys only; whoever issues tokens (leadctl token, or
// an identity provider that signs EdDSA) holds the private key. Several
// public keys may be trusted at once, so a key can be rotated. A token can
// be revoked before it expires, alone or with every token of its caller
// (revoke.go).
package auth

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Issuer is the iss claim of every Leadflow token.
const Issuer = "leadflow"

// AllScopes, granted by a token, is every scope: an operator's or a
// demo's token, never an integration's.
const AllScopes = "*"

// Principal is the caller a verified token names.
type Principal struct {
	// Subject is a user id or an integration's name.
	Subject string
	Kind    eventv1.ActorKind
	Team    eventv1.Team
	Scopes  []string
	// Expires is when the token stops being valid.
	Expires time.Time
	// ID (jti) names the token, for revoking it alone; IssuedAt, for
	// revoking every token of its subject issued up to a moment.
	ID       string
	IssuedAt time.Time
}

// Grants reports whether the principal may use scope. AllScopes grants
// nothing to an integration or a service: each is given its own scopes.
func (p Principal) Grants(scope string) bool {
	return scope != "" && (slices.Contains(p.Scopes, scope) || slices.Contains(p.Scopes, AllScopes) && !p.machine())
}

func (p Principal) machine() bool {
	return p.Kind == eventv1.ActorKind_ACTOR_KIND_INTEGRATION || p.Kind == eventv1.ActorKind_ACTOR_KIND_SERVICE
}

// Actor is the principal as events record who acted.
func (p Principal) Actor() *eventv1.Actor {
	return &eventv1.Actor{Kind: p.Kind, Id: p.Subject, Team: p.Team}
}

type claims struct {
	jwt.RegisteredClaims
	Scope string `json:"scope"` // space-separated, as OAuth 2.0 has it
	Kind  string `json:"kind,omitempty"`
	Team  string `json:"team,omitempty"`
}

// MaxLifetime is the longest a token is valid: Issue refuses more and
// Verify refuses a token that claims more, so every token issued before a
// revocation has expired MaxLifetime after it, and the revocation can go
// (revoke.go).
const MaxLifetime = 366 * 24 * time.Hour

// Issue signs a token for p that expires after ttl (at most MaxLifetime).
func Issue(key ed25519.PrivateKey, p Principal, ttl time.Duration) (string, error) {
	if p.Subject == "" || len(p.Scopes) == 0 || ttl <= 0 {
		return "", errors.New("auth: a token needs a subject, a scope and a lifetime")
	}
	if ttl > MaxLifetime {
		return "", fmt.Errorf("auth: a token is valid for at most %v", MaxLifetime)
	}
	if p.machine() && slices.Contains(p.Scopes, AllScopes) {
		return "", fmt.Errorf("auth: %s is an operator's scope: an integration or a service gets the scopes it needs", AllScopes)
	}
	now := time.Now()
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: Issuer, Subject: p.Subject, ID: uuid.Must(uuid.NewV7()).String(),
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Scope: strings.Join(p.Scopes, " "),
		Kind:  strings.TrimPrefix(p.Kind.String(), "ACTOR_KIND_"),
		Team:  strings.TrimPrefix(p.Team.String(), "TEAM_"),
	}
	return jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(key)
}

// ErrUnauthenticated is matched by every refused token.
var ErrUnauthenticated = errors.New("auth: token refused")

// Verifier checks tokens against the trusted public keys. A verified token
// is remembered until it expires: an Ed25519 check costs more than a
// capture's own work, and callers send the same token on every call.
type Verifier struct {
	keys   jwt.VerificationKeySet
	parser *jwt.Parser
	now    func() time.Time

	mu   sync.Mutex
	seen map[string]Principal
	exp  map[string]time.Time
	// Revocations (see Follow): token ids, and subjects with the time up
	// to which their tokens are revoked.
	revokedIDs      map[string]struct{}
	revokedSubjects map[string]time.Time
	// required: refuse every token until read (RequireRevocations); read:
	// Follow has read the bucket, and ready is closed.
	required, read atomic.Bool
	ready          chan struct{}
	readOnce       sync.Once
}

// leeway is how far the clocks of issuer and service may differ.
const leeway = 30 * time.Second

// maxRemembered bounds the verified-token cache; past it, it starts over.
const maxRemembered = 10_000

// NewVerifier trusts keys.
func NewVerifier(keys ...ed25519.PublicKey) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("auth: no public key to trust")
	}
	v := &Verifier{now: time.Now, seen: map[string]Principal{}, exp: map[string]time.Time{},
		revokedIDs: map[string]struct{}{}, revokedSubjects: map[string]time.Time{}, ready: make(chan struct{})}
	for _, k := range keys {
		v.keys.Keys = append(v.keys.Keys, k)
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(Issuer),
		jwt.WithExpirationRequired(),
		// An issue time in the future (past the leeway) is refused: it
		// would stretch MaxLifetime, and escape a revocation of its subject.
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	)
	return v, nil
}

// Verify returns the principal of a valid token, or an error matching
// ErrUnauthenticated that says why not; it also matches ErrNotReady while
// a verifier that RequireRevocations has not read them.
func (v *Verifier) Verify(token string) (Principal, error) {
	if v.required.Load() && !v.read.Load() {
		return Principal{}, fmt.Errorf("%w: %w", ErrUnauthenticated, ErrNotReady)
	}
	now := v.now()
	v.mu.Lock()
	p, ok := v.seen[token]
	exp := v.exp[token]
	v.mu.Unlock()
	if ok && now.Before(exp) {
		if v.revoked(p) {
			return Principal{}, fmt.Errorf("%w: revoked", ErrUnauthenticated)
		}
		return p, nil
	}
	var c claims
	if _, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.keys, nil }); err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	if c.Subject == "" {
		return Principal{}, fmt.Errorf("%w: no subject", ErrUnauthenticated)
	}
	if c.IssuedAt == nil || c.ExpiresAt.Sub(c.IssuedAt.Time) > MaxLifetime {
		return Principal{}, fmt.Errorf("%w: valid for longer than %v", ErrUnauthenticated, MaxLifetime)
	}
	// A kind or team the token names but this build does not know (a
	// typo, another issuer's word) would make it a person's of no team:
	// "*" would grant it everything.
	if _, ok := eventv1.ActorKind_value["ACTOR_KIND_"+strings.ToUpper(c.Kind)]; c.Kind != "" && !ok {
		return Principal{}, fmt.Errorf("%w: kind %q is none of USER, INTEGRATION, SERVICE", ErrUnauthenticated, c.Kind)
	}
	if _, ok := eventv1.Team_value["TEAM_"+strings.ToUpper(c.Team)]; c.Team != "" && !ok {
		return Principal{}, fmt.Errorf("%w: team %q is not a team Leadflow knows", ErrUnauthenticated, c.Team)
	}
	p = c.principal()
	if v.revoked(p) {
		return Principal{}, fmt.Errorf("%w: revoked", ErrUnauthenticated)
	}
	v.mu.Lock()
	if len(v.seen) >= maxRemembered {
		clear(v.seen)
		clear(v.exp)
	}
	v.seen[token], v.exp[token] = p, c.ExpiresAt.Time
	v.mu.Unlock()
	return p, nil
}

// StillValid reports, for a principal Verify returned, whether its token
// has since expired (past the leeway) or been revoked: for a stream that
// outlives the moment it was checked.
func (v *Verifier) StillValid(p Principal) error {
	if !p.Expires.IsZero() && !v.now().Before(p.Expires.Add(leeway)) {
		return fmt.Errorf("%w: the token expired", ErrUnauthenticated)
	}
	if v.revoked(p) {
		return fmt.Errorf("%w: the token was revoked", ErrUnauthenticated)
	}
	return nil
}

func (c claims) principal() Principal {
	p := Principal{
		Subject: c.Subject,
		Kind:    eventv1.ActorKind(eventv1.ActorKind_value["ACTOR_KIND_"+strings.ToUpper(c.Kind)]),
		Team:    eventv1.Team(eventv1.Team_value["TEAM_"+strings.ToUpper(c.Team)]),
		Scopes:  strings.Fields(c.Scope),
		ID:      c.ID,
	}
	if p.Kind == eventv1.ActorKind_ACTOR_KIND_UNSPECIFIED {
		p.Kind = eventv1.ActorKind_ACTOR_KIND_USER // a token of no kind is a person's, and events say so
	}
	if c.ExpiresAt != nil {
		p.Expires = c.ExpiresAt.Time
	}
	if c.IssuedAt != nil {
		p.IssuedAt = c.IssuedAt.Time
	}
	return p
}

// Claimed is the principal a token names, unchecked: for a client that
// records itself as the actor of what it asks for (leadctl). Only a
// service's Verify says whether the token is valid.
func Claimed(token string) (Principal, error) {
	var c claims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		return Principal{}, err
	}
	if c.Subject == "" {
		return Principal{}, errors.New("auth: the token names no subject")
	}
	return c.principal(), nil
}

// ParsePublicKeys reads comma-separated public keys, each 64 hex chars.
func ParsePublicKeys(s string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, f := range strings.Split(s, ",") {
		b, err := hex.DecodeString(strings.TrimSpace(f))
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("auth: public key %q: want %d hex chars", f, 2*ed25519.PublicKeySize)
		}
		keys = append(keys, ed25519.PublicKey(b))
	}
	return keys, nil
}

// ParsePrivateKey reads a signing key: its 32-byte seed, 64 hex chars.
func ParsePrivateKey(s string) (ed25519.PrivateKey, error) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.SeedSize {
		return nil, fmt.Errorf("auth: signing key: want %d hex chars", 2*ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(b), nil
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext is the caller of the request ctx belongs to, if auth is on.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// FromKeys is the verifier of a service's setting: comma-separated public
// keys, or nil (auth off) when it is empty.
func FromKeys(keys string) (*Verifier, error) {
	if strings.TrimSpace(keys) == "" {
		return nil, nil
	}
	pubs, err := ParsePublicKeys(keys)
	if err != nil {
		return nil, err
	}
	return NewVerifier(pubs...)
}

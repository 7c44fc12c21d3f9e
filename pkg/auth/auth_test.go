package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/leadflow/leadflow/pkg/auth"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	_ "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	_ "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	_ "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	_ "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
)

func key(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var reader = auth.Principal{Subject: "crm-sync", Kind: eventv1.ActorKind_ACTOR_KIND_INTEGRATION, Team: eventv1.Team_TEAM_SALES, Scopes: []string{"leads:read", "sales:write"}}

func TestIssuedTokenVerifies(t *testing.T) {
	k := key(t)
	v, err := auth.NewVerifier(k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Issue(k, reader, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second answer comes from the cache
		p, err := v.Verify(tok)
		if err != nil {
			t.Fatal(err)
		}
		if p.Subject != reader.Subject || p.Kind != reader.Kind || p.Team != reader.Team || strings.Join(p.Scopes, " ") != "leads:read sales:write" {
			t.Fatalf("principal %+v, want %+v", p, reader)
		}
	}
	if !reader.Grants("sales:write") || reader.Grants("ops") || reader.Grants("") {
		t.Fatal("Grants")
	}
	if !(auth.Principal{Scopes: []string{auth.AllScopes}}).Grants("ops") {
		t.Fatal("* grants every scope")
	}
}

// "*" is an operator's: an integration's or a service's token is not
// issued with it, and one signed elsewhere with it grants nothing.
func TestAllScopesIsNeverAMachinesScope(t *testing.T) {
	k := key(t)
	for _, kind := range []eventv1.ActorKind{eventv1.ActorKind_ACTOR_KIND_INTEGRATION, eventv1.ActorKind_ACTOR_KIND_SERVICE} {
		p := auth.Principal{Subject: "crm", Kind: kind, Team: eventv1.Team_TEAM_SALES, Scopes: []string{auth.AllScopes}}
		if _, err := auth.Issue(k, p, time.Hour); err == nil {
			t.Errorf("issued %v a token with *", kind)
		}
		if p.Grants("ops") {
			t.Errorf("* grants %v the ops scope", kind)
		}
	}
	op := auth.Principal{Subject: "ops", Kind: eventv1.ActorKind_ACTOR_KIND_USER, Team: eventv1.Team_TEAM_OPERATIONS, Scopes: []string{auth.AllScopes}}
	if _, err := auth.Issue(k, op, time.Hour); err != nil || !op.Grants("ops") {
		t.Fatalf("an operator's *: %v, grants ops %v", err, op.Grants("ops"))
	}
}

func TestRefusedTokens(t *testing.T) {
	k, other := key(t), key(t)
	v, err := auth.NewVerifier(k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	good, err := auth.Issue(k, reader, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Every token is signed with its error checked: a failed signing gives
	// "", which is refused anyway, so its case would test nothing.
	must := func(tok string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	foreign := must(auth.Issue(other, reader, time.Hour))
	expired := must(auth.Issue(k, reader, time.Nanosecond))
	time.Sleep(time.Millisecond)
	// A payload granting more, under the good token's signature.
	parts := strings.Split(good, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), "leads:read", "*", 1))) + "." + parts[2]
	// Algorithm confusion: HMAC keyed with the public key, and none.
	hmac := must(jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": auth.Issuer, "sub": "x", "scope": "*", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(k.Public().(ed25519.PublicKey))))
	none := must(jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": auth.Issuer, "sub": "x", "scope": "*", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType))
	wrongIssuer := must(jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": "someone", "sub": "x", "scope": "*", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(k))
	noExpiry := must(jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": auth.Issuer, "sub": "x", "scope": "*"}).SignedString(k))
	// Revocations expire after MaxLifetime: a token may not outlive them.
	now := time.Now()
	tooLong := must(jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": auth.Issuer, "sub": "x", "scope": "*",
		"iat": now.Unix(), "exp": now.Add(auth.MaxLifetime + time.Hour).Unix()}).SignedString(k))
	noIssueTime := must(jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": auth.Issuer, "sub": "x", "scope": "*",
		"exp": now.Add(time.Hour).Unix()}).SignedString(k))
	// Issued in the future: past MaxLifetime from now, or after a
	// revocation of its subject.
	future := must(jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": auth.Issuer, "sub": "x", "scope": "*",
		"iat": now.Add(400 * 24 * time.Hour).Unix(), "exp": now.Add(401 * 24 * time.Hour).Unix()}).SignedString(k))
	fastClock := must(jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": auth.Issuer, "sub": "x", "scope": "*",
		"iat": now.Add(2 * time.Minute).Unix(), "exp": now.Add(time.Hour).Unix()}).SignedString(k))
	// A kind or team this build does not know: as a person's of no team,
	// "*" would grant it everything.
	claimed := func(kind, team string) string {
		return must(jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": auth.Issuer, "sub": "x", "scope": "*",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "kind": kind, "team": team}).SignedString(k))
	}
	if _, err := auth.Issue(k, reader, auth.MaxLifetime+time.Second); err == nil {
		t.Error("issued a token valid for longer than MaxLifetime")
	}
	for name, tok := range map[string]string{
		"another key": foreign, "forged payload": forged, "hmac": hmac, "none": none,
		"wrong issuer": wrongIssuer, "no expiry": noExpiry, "garbage": "abc", "empty": "",
		"valid too long": tooLong, "no issue time": noIssueTime, "issued in a year": future, "issued in 2 minutes": fastClock,
		"unknown kind": claimed("robot", "OPERATIONS"), "unknown team": claimed("USER", "finance"),
	} {
		if _, err := v.Verify(tok); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s: verified (err %v)", name, err)
		}
	}
	// Expired beyond the 30 s leeway for clock skew.
	old := must(jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": auth.Issuer, "sub": "x", "scope": "*", "exp": time.Now().Add(-time.Minute).Unix()}).SignedString(k))
	if _, err := v.Verify(old); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("expired a minute ago: verified (err %v)", err)
	}
	if _, err := v.Verify(expired); err != nil {
		t.Errorf("expired within the leeway: %v", err)
	}
	// A known kind in another case is that kind: "*" grants an
	// integration nothing.
	if p, err := v.Verify(claimed("integration", "marketing")); err != nil || p.Kind != eventv1.ActorKind_ACTOR_KIND_INTEGRATION ||
		p.Team != eventv1.Team_TEAM_MARKETING || p.Grants("reports:read") {
		t.Errorf("a lower-case integration token: %+v, %v; want an integration of marketing whom * grants nothing", p, err)
	}
}

func TestRotationTrustsEveryListedKey(t *testing.T) {
	oldKey, newKey := key(t), key(t)
	v, err := auth.NewVerifier(oldKey.Public().(ed25519.PublicKey), newKey.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []ed25519.PrivateKey{oldKey, newKey} {
		tok, _ := auth.Issue(k, reader, time.Hour)
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
}

// leads answers GetLead with the caller the interceptor found.
type leads struct {
	intakev1.UnimplementedIntakeServiceServer
}

func (leads) GetLead(ctx context.Context, _ *intakev1.GetLeadRequest) (*intakev1.GetLeadResponse, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "no principal")
	}
	return &intakev1.GetLeadResponse{Lead: &intakev1.Lead{LeadId: p.Subject}}, nil
}

func TestInterceptorChecksTheMethodsScope(t *testing.T) {
	k := key(t)
	v, err := auth.NewVerifier(k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(v.UnaryInterceptor()), grpc.ChainStreamInterceptor(v.StreamInterceptor()))
	intakev1.RegisterIntakeServiceServer(srv, leads{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := intakev1.NewIntakeServiceClient(conn)
	call := func(token string) (*intakev1.GetLeadResponse, error) {
		ctx := context.Background()
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		return c.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: "x"})
	}
	if _, err := call(""); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	if _, err := call("not-a-jwt"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("bad token: %v", err)
	}
	capturer, _ := auth.Issue(k, auth.Principal{Subject: "web-forms", Scopes: []string{"leads:capture"}}, time.Hour)
	if _, err := call(capturer); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `"leads:read"`) {
		t.Fatalf("token without the scope: %v", err)
	}
	ok, _ := auth.Issue(k, reader, time.Hour)
	res, err := call(ok)
	if err != nil || res.GetLead().GetLeadId() != "crm-sync" {
		t.Fatalf("granted call: %v, %v", res, err)
	}
	// Streams are checked too, before the handler reads a row.
	stream, err := c.ImportLeads(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+ok))
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("import without leads:capture: %v", err)
	}
	// Health is open: probes carry no token.
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health: %v", err)
	}
}

// Every method of every Leadflow API declares its scope: one that did not
// would be refused to everybody (fail closed), which a test catches here
// rather than a caller in production.
func TestEveryMethodDeclaresAScope(t *testing.T) {
	n := 0
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "leadflow.") {
			return true
		}
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				n++
				full := "/" + string(sd.FullName()) + "/" + string(md.Name())
				if s := auth.Scope(full); s == "" || strings.ContainsAny(s, " *") {
					t.Errorf("%s declares scope %q", full, s)
				}
			}
		}
		return true
	})
	if n < 50 {
		t.Fatalf("only %d methods found: are the services' packages linked in?", n)
	}
}

// A sign-off acts as its caller: with auth on nobody approves for another
// person or team, and a request naming nobody acts as the caller.
func TestActingIsTheCaller(t *testing.T) {
	maria := auth.Principal{Subject: "maria", Kind: eventv1.ActorKind_ACTOR_KIND_USER, Team: eventv1.Team_TEAM_MARKETING, Scopes: []string{"models:approve"}}
	sam := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "sam", Team: eventv1.Team_TEAM_SALES}
	if a, err := auth.Acting(context.Background(), sam, "approver"); err != nil || a != sam {
		t.Fatalf("auth off: %v, %v", a, err)
	}
	ctx := auth.WithPrincipal(context.Background(), maria)
	if _, err := auth.Acting(ctx, sam, "approver"); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "approver") {
		t.Fatalf("maria signing as sam: %v", err)
	}
	asSales := &eventv1.Actor{Id: "maria", Team: eventv1.Team_TEAM_SALES}
	if _, err := auth.Acting(ctx, asSales, "approver"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("maria signing for sales: %v", err)
	}
	for _, claimed := range []*eventv1.Actor{nil, {Id: "maria", Team: eventv1.Team_TEAM_MARKETING}, {Id: "maria"}, {Team: eventv1.Team_TEAM_MARKETING}} {
		a, err := auth.Acting(ctx, claimed, "approver")
		if err != nil || a.GetId() != "maria" || a.GetTeam() != eventv1.Team_TEAM_MARKETING || a.GetKind() != eventv1.ActorKind_ACTOR_KIND_USER {
			t.Fatalf("claimed %v: %v, %v", claimed, a, err)
		}
	}
}

// A token naming no kind is a person's: it verifies as a user, so what it
// signs (a model's approval) is a person's sign-off and its events say so.
func TestAKindlessTokenIsAPersons(t *testing.T) {
	k := key(t)
	v, err := auth.NewVerifier(k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Issue(k, auth.Principal{Subject: "maria", Team: eventv1.Team_TEAM_MARKETING, Scopes: []string{"models:approve"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.Acting(auth.WithPrincipal(context.Background(), p), nil, "approver")
	if err != nil || a.GetKind() != eventv1.ActorKind_ACTOR_KIND_USER || a.GetId() != "maria" || a.GetTeam() != eventv1.Team_TEAM_MARKETING {
		t.Fatalf("a kindless token acts as %v, %v; want the user maria of MARKETING", a, err)
	}
}

// A person acts as themselves when a request names whom it acts for (a
// rep accepting); an integration acts for anyone it names.
func TestActingAsIsThePersonCalling(t *testing.T) {
	if id, err := auth.ActingAs(context.Background(), "bob", "rep_id"); err != nil || id != "bob" {
		t.Fatalf("auth off: %q, %v", id, err)
	}
	ann := auth.WithPrincipal(context.Background(), auth.Principal{Subject: "ann", Kind: eventv1.ActorKind_ACTOR_KIND_USER, Scopes: []string{"sales:write"}})
	if _, err := auth.ActingAs(ann, "bob", "rep_id"); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "rep_id") {
		t.Fatalf("ann acting as bob: %v", err)
	}
	for _, named := range []string{"", "ann"} {
		if id, err := auth.ActingAs(ann, named, "rep_id"); err != nil || id != "ann" {
			t.Fatalf("ann naming %q: %q, %v", named, id, err)
		}
	}
	// A token of no kind is not an integration's.
	kindless := auth.WithPrincipal(context.Background(), auth.Principal{Subject: "ann", Scopes: []string{"sales:write"}})
	if _, err := auth.ActingAs(kindless, "bob", "rep_id"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a kindless token acting as bob: %v", err)
	}
	crm := auth.WithPrincipal(context.Background(), auth.Principal{Subject: "crm-sync", Kind: eventv1.ActorKind_ACTOR_KIND_INTEGRATION, Scopes: []string{"sales:write"}})
	if id, err := auth.ActingAs(crm, "bob", "rep_id"); err != nil || id != "bob" {
		t.Fatalf("the CRM acting for bob: %q, %v", id, err)
	}
}

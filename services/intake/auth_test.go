package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// With -auth-keys, a call needs a token granting its method's scope, over
// gRPC and over HTTP alike, is refused before anything is written
// otherwise, and the events it writes name the caller.
func TestAuthScopesOverGRPCAndHTTP(t *testing.T) {
	pub, signer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n := testenv.StartNATS(t)
	web := make(chan net.Addr, 1)
	e := startWith(t, n, Config{Addr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NATSURL: n.Server.URL(), Stream: "LEADFLOW", Replicas: 1,
		MasterKey: hexKey(t), BlindKey: hexKey(t), Grace: time.Second, AuthKeys: hex.EncodeToString(pub), httpReady: func(a net.Addr) { web <- a }})
	base := "http://" + (<-web).String()
	token := func(scopes ...string) string {
		tok, err := auth.Issue(signer, auth.Principal{Subject: "web-forms", Kind: eventv1.ActorKind_ACTOR_KIND_INTEGRATION, Team: eventv1.Team_TEAM_MARKETING, Scopes: scopes}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	as := func(tok string) metadata.MD { return metadata.Pairs("authorization", "Bearer "+tok) }
	before := e.counts(t)

	if _, err := e.client.CaptureLead(ctxT(t), lead("a@example.com")); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	_, err = e.client.CaptureLead(metadata.NewOutgoingContext(ctxT(t), as(token("leads:read"))), lead("a@example.com"))
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `"leads:capture"`) {
		t.Fatalf("token without leads:capture: %v", err)
	}
	if code, _ := testenv.HTTPJSON(t, "POST", base+"/v1/leads", captureJSON); code != http.StatusUnauthorized {
		t.Fatalf("HTTP without a token: %d", code)
	}
	// Refused before the body is read, however long it is.
	huge := `{"contact":{"email":"` + strings.Repeat("a", 20<<20) + `@example.com"}}`
	if code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", huge, "Authorization", "Bearer forged"); code != http.StatusUnauthorized {
		t.Fatalf("HTTP with a forged token and a long body: %d %v", code, out["message"])
	}
	if code, _ := testenv.HTTPJSON(t, "POST", base+"/v1/leads", captureJSON, "Authorization", "Bearer "+token("leads:read")); code != http.StatusForbidden {
		t.Fatalf("HTTP without the scope: %d", code)
	}
	e.assertCounts(t, before)

	res, err := e.client.CaptureLead(metadata.NewOutgoingContext(ctxT(t), as(token("leads:capture"))), lead("a@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", captureJSON, "Authorization", "Bearer "+token("leads:capture", "leads:read"))
	if code != http.StatusOK {
		t.Fatalf("HTTP capture: %d %v", code, out)
	}
	for _, id := range []string{res.GetLeadId(), out["leadId"].(string)} {
		recs, err := eventstore.New(n.JS, "LEADFLOW").Load(ctxT(t), eventstore.LeadSubject(id))
		if err != nil || len(recs) != 1 {
			t.Fatalf("lead %s: %v %v", id, recs, err)
		}
		if a := recs[0].Event.GetActor(); a.GetId() != "web-forms" || a.GetKind() != eventv1.ActorKind_ACTOR_KIND_INTEGRATION || a.GetTeam() != eventv1.Team_TEAM_MARKETING {
			t.Fatalf("LeadCaptured by %v, want the caller", a)
		}
		if c := recs[0].Event.GetCaller(); c != nil {
			t.Fatalf("LeadCaptured names caller %v beside the same actor", c)
		}
	}
	// A request that names another actor keeps it, and the caller beside
	// it: a token cannot write someone else into the history unseen.
	named := lead("b@example.com")
	named.Actor = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "qualification"}
	res, err = e.client.CaptureLead(metadata.NewOutgoingContext(ctxT(t), as(token("leads:capture"))), named)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := eventstore.New(n.JS, "LEADFLOW").Load(ctxT(t), eventstore.LeadSubject(res.GetLeadId()))
	if err != nil || len(recs) != 1 {
		t.Fatalf("lead %s: %v %v", res.GetLeadId(), recs, err)
	}
	if a, c := recs[0].Event.GetActor(), recs[0].Event.GetCaller(); a.GetId() != "qualification" || c.GetId() != "web-forms" ||
		c.GetKind() != eventv1.ActorKind_ACTOR_KIND_INTEGRATION {
		t.Fatalf("LeadCaptured by %v, caller %v; want the named actor and the token's caller", a, c)
	}
}

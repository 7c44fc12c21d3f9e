package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
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
	// The gateway passes on Authorization alone: a good token in another
	// header is refused before the body is read, not by the gRPC side.
	if code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", huge, "Grpc-Metadata-Authorization", "Bearer "+token("leads:capture")); code != http.StatusUnauthorized ||
		!strings.Contains(fmt.Sprint(out["message"]), "authorization: a bearer token is required") {
		t.Fatalf("HTTP with the token in Grpc-Metadata-Authorization and a long body: %d %v", code, out["message"])
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

// An import whose token is revoked mid-stream answers every row it took
// before (its rows written), then ends refusing the first row after.
func TestImportAnswersTheRowsTakenBeforeARevocation(t *testing.T) {
	pub, signer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n := testenv.StartNATS(t)
	// Rows wait for the stream's end or its failure: no linger flush.
	e := startWith(t, n, Config{Addr: "127.0.0.1:0", NATSURL: n.Server.URL(), Stream: "LEADFLOW", Replicas: 1,
		MasterKey: hexKey(t), BlindKey: hexKey(t), Grace: time.Second, AuthKeys: hex.EncodeToString(pub), importLinger: time.Hour})
	tok, err := auth.Issue(signer, auth.Principal{Subject: "slow-import", Kind: eventv1.ActorKind_ACTOR_KIND_INTEGRATION,
		Team: eventv1.Team_TEAM_MARKETING, Scopes: []string{"leads:capture"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	before := e.streamMsgs(t)
	ctx := metadata.NewOutgoingContext(ctxT(t), metadata.Pairs("authorization", "Bearer "+tok))
	stream, err := e.client.ImportLeads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := stream.Send(&intakev1.ImportLeadsRequest{Row: int64(i + 1), Lead: lead(fmt.Sprintf("row%d@slow.example", i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := auth.Revoke(ctxT(t), n.JS, "", "slow-import"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // past the stream's next check of its token
	// io.EOF: the server ended the stream already, on a row among the
	// first three that reached it only after the revocation (a loaded
	// machine); Recv tells how.
	if err := stream.Send(&intakev1.ImportLeadsRequest{Row: 4, Lead: lead("row3@slow.example")}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	var rows []int64
	for {
		res, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.Unauthenticated {
				t.Fatalf("the stream ended with %v, want Unauthenticated", err)
			}
			break
		}
		if res.GetLeadId() == "" {
			t.Fatalf("row %d: %v", res.GetRow(), res)
		}
		rows = append(rows, res.GetRow())
	}
	// Normally all three; on a loaded machine the rows that reached the
	// server before the revocation did: a prefix, and only those stored.
	if len(rows) > 3 || !slices.Equal(rows, []int64{1, 2, 3}[:len(rows)]) {
		t.Fatalf("answered rows %v, want those taken before the revocation, in order", rows)
	}
	if got := e.streamMsgs(t) - before; got != uint64(len(rows)) {
		t.Fatalf("%d leads stored for the %d rows answered", got, len(rows))
	}
}

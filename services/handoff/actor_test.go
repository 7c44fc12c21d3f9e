package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
)

// With auth on, a request that names no actor acts as its caller: an
// assignment by hand, a reassignment, a routing change and a marketing
// target each record the token's subject, where they used to be refused
// for the missing field; one that names a more precise actor keeps it.
func TestAnUnnamedActorIsTheCaller(t *testing.T) {
	w, dialAs := withAuth(t)
	mia := &eventv1.Actor{Id: "mia", Kind: eventv1.ActorKind_ACTOR_KIND_USER, Team: eventv1.Team_TEAM_SALES}
	c := dialAs(auth.Principal{Subject: mia.GetId(), Kind: mia.GetKind(), Team: mia.GetTeam(), Scopes: []string{auth.AllScopes}})
	routingSetup(t, c, 10) // names ops as the actor of every change
	ctx := ctxT(t)

	id := w.mql(t, &eventv1.Profile{Country: "JP", Employees: 50, EmailDomain: "tokyo.example"}) // no rule: the fallback queue
	w.waitFor(t, id, "LeadQueued", 1)
	if _, err := c.AssignLead(ctx, &handoffv1.AssignLeadRequest{LeadId: id, RepId: "ann", RequestId: "as-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReassignLead(ctx, &handoffv1.ReassignLeadRequest{LeadId: id, ToRepId: "bob", RequestId: "re-1", Reason: "language"}); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"LeadAssigned", "LeadReassigned"} {
		if ev := ofType(w.events(t, id), typ); len(ev) != 1 || !sameActor(ev[0].GetActor(), mia) {
			t.Errorf("%s by %v, want the caller %v", typ, ev, mia)
		}
	}
	if _, err := c.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: "eve", TeamId: "emea", Capacity: 5, Active: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetMarketingTarget(ctx, &handoffv1.SetMarketingTargetRequest{Target: &eventv1.MarketingTarget{Period: "2026-Q4", MinMqls: 10}}); err != nil {
		t.Fatal(err)
	}
	for subject, want := range map[string]*eventv1.Actor{"routing": mia, "sla-targets": mia} {
		recs, err := w.store.Load(ctx, eventstore.ModelSubject(subject))
		if err != nil || len(recs) == 0 {
			t.Fatalf("%s: %v %v", subject, recs, err)
		}
		if got := recs[len(recs)-1].Event.GetActor(); !sameActor(got, want) {
			t.Errorf("the last change of %s by %v, want %v", subject, got, want)
		}
		if subject == "routing" && !sameActor(recs[0].Event.GetActor(), ops) {
			t.Errorf("a change that named its actor recorded %v, want %v", recs[0].Event.GetActor(), ops)
		}
	}
}

// withAuth starts handoff with auth on; dialAs is a client whose calls
// carry a token for p.
func withAuth(t *testing.T) (w *world, dialAs func(p auth.Principal) handoffv1.HandoffServiceClient) {
	t.Helper()
	pub, signer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w = newWorld(t)
	s := w.startWith(t, func(c *Config) { c.AuthKeys = hex.EncodeToString(pub) })
	return w, func(p auth.Principal) handoffv1.HandoffServiceClient {
		tok, err := auth.Issue(signer, p, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return dial(t, s.addr, w.nats.TLS.Dial(), auth.Bearer(tok))
	}
}

func sameActor(a, b *eventv1.Actor) bool {
	return a.GetId() == b.GetId() && a.GetKind() == b.GetKind() && a.GetTeam() == b.GetTeam()
}

// With auth on, a rep's own token acts as that rep: naming another rep's
// id to work their lead is PERMISSION_DENIED and writes nothing, and
// naming nobody is the caller. An integration's token (a CRM sync) acts
// for the rep it names.
func TestARepActsAsThemselves(t *testing.T) {
	w, dialAs := withAuth(t)
	routingSetup(t, dialAs(auth.Principal{Subject: "ops", Kind: eventv1.ActorKind_ACTOR_KIND_USER, Scopes: []string{auth.AllScopes}}), 10)
	id := w.mql(t, dach(50))
	owner := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
	other := "ann"
	if owner == other {
		other = "bob"
	}
	ctx := ctxT(t)
	impostor := dialAs(auth.Principal{Subject: other, Kind: eventv1.ActorKind_ACTOR_KIND_USER, Team: eventv1.Team_TEAM_SALES, Scopes: []string{"sales:write"}})
	version := len(w.events(t, id))
	_, err := impostor.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: owner, RequestId: "a-1"})
	wantCode(t, err, codes.PermissionDenied, "")
	if n := len(w.events(t, id)); n != version {
		t.Fatalf("a refused accept wrote %d events", n-version)
	}
	rep := dialAs(auth.Principal{Subject: owner, Kind: eventv1.ActorKind_ACTOR_KIND_USER, Team: eventv1.Team_TEAM_SALES, Scopes: []string{"sales:write"}})
	if _, err := rep.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RequestId: "a-2"}); err != nil {
		t.Fatalf("the owner accepting, naming nobody: %v", err)
	}
	crm := dialAs(auth.Principal{Subject: "crm-sync", Kind: eventv1.ActorKind_ACTOR_KIND_INTEGRATION, Scopes: []string{"sales:write"}})
	if _, err := crm.LogContactAttempt(ctx, &handoffv1.LogContactAttemptRequest{LeadId: id, RepId: owner, RequestId: "c-1",
		Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE, Outcome: eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER}); err != nil {
		t.Fatalf("the CRM logging the owner's call: %v", err)
	}
	for typ, want := range map[string]string{"LeadAccepted": owner, "ContactAttempted": owner} {
		if ev := ofType(w.events(t, id), typ); len(ev) != 1 || ev[0].GetActor().GetId() != want {
			t.Errorf("%s: %v, want one by %s", typ, ev, want)
		}
	}
}

package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

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
	pub, signer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	s := w.startWith(t, func(c *Config) { c.AuthKeys = hex.EncodeToString(pub) })
	mia := &eventv1.Actor{Id: "mia", Kind: eventv1.ActorKind_ACTOR_KIND_USER, Team: eventv1.Team_TEAM_SALES}
	tok, err := auth.Issue(signer, auth.Principal{Subject: mia.GetId(), Kind: mia.GetKind(), Team: mia.GetTeam(), Scopes: []string{auth.AllScopes}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s.addr, w.nats.TLS.Dial(), auth.Bearer(tok))
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

func sameActor(a, b *eventv1.Actor) bool {
	return a.GetId() == b.GetId() && a.GetKind() == b.GetKind() && a.GetTeam() == b.GetTeam()
}

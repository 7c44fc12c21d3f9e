package main

import (
	"context"
	"strings"
	"testing"

	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/provision"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// TestProvision: on a server with users and no stream, only the
// provisioner's user makes the streams; a second run puts back a setting
// changed meanwhile, and the services' users then find what they want.
func TestProvision(t *testing.T) {
	n := testenv.StartNATSWithUsersOnly(t)
	ctx := context.Background()
	as := func(user string) []string {
		return []string{"--nats", n.Server.URL(), "--nats-user", user, "--nats-password", n.Passwords[user], "--nats-ca", n.TLS.CAFile, "provision"}
	}

	// The operator's user is refused at its first request, and told so.
	_, err := runCtl(ctx, as(natsauth.Operator)...)
	if err == nil || !strings.Contains(err.Error(), `connect as "provisioner"`) {
		t.Fatalf("provision as the operator: %v", err)
	}
	if _, err := n.JS.Stream(ctx, eventstore.DefaultStream); err == nil {
		t.Fatal("the operator made the lead stream")
	}
	refusals := len(n.Violations(t))

	out, err := runCtl(ctx, as(natsauth.Provisioner)...)
	if err != nil {
		t.Fatalf("provision: %v\n%s", err, out)
	}
	for _, s := range provision.Streams() {
		if _, err := n.JS.Stream(ctx, s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
		if !strings.Contains(out, s) {
			t.Errorf("output does not name %s:\n%s", s, out)
		}
	}

	// A setting changed by hand is put back.
	lead, err := n.JS.Stream(ctx, eventstore.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := lead.CachedInfo().Config
	want := cfg.Description
	cfg.Description = "changed by hand"
	if _, err := n.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if out, err := runCtl(ctx, as(natsauth.Provisioner)...); err != nil {
		t.Fatalf("provision again: %v\n%s", err, out)
	}
	if lead, err = n.JS.Stream(ctx, eventstore.DefaultStream); err != nil || lead.CachedInfo().Config.Description != want {
		t.Fatalf("lead stream after provisioning again: %v, %q", err, lead.CachedInfo().Config.Description)
	}

	// Each service's user opens its streams with look-ups only.
	for _, role := range []string{natsauth.Intake, natsauth.Qualification, natsauth.Handoff, natsauth.Nurture, natsauth.Projector} {
		_, js := n.ConnectAs(t, role)
		if _, err := eventstore.EnsureStream(ctx, js, eventstore.StreamConfig{}); err != nil {
			t.Errorf("%s: %v", role, err)
		}
	}
	_, js := n.ConnectAs(t, natsauth.Handoff)
	if _, err := eventstore.EnsureKeyValue(ctx, js, provision.Loads("", 1)); err != nil {
		t.Errorf("handoff's loads bucket: %v", err)
	}
	if v := n.Violations(t); len(v) != refusals {
		t.Errorf("permissions violations after the operator's: %q", v[refusals:])
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
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

	// Settings changed behind Leadflow's back (here by the test's admin):
	// a republish past every permission and an age limit that would drop
	// events. A service refuses the stream (it may not put it right), and
	// provisioning again puts it right.
	lead, err := n.JS.Stream(ctx, eventstore.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := lead.CachedInfo().Config
	cfg.MaxAge = time.Hour
	cfg.RePublish = &jetstream.RePublish{Source: ">", Destination: "tampered.>"}
	if _, err := n.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	buckets := []string{"KV_" + provision.LoadsBucket, "KV_" + consume.DefaultMembersBucket, consume.DefaultDeadLetterStream}
	for i, name := range buckets {
		st, err := n.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		c := st.CachedInfo().Config
		c.RePublish = &jetstream.RePublish{Source: ">", Destination: fmt.Sprintf("tampered%d.>", i)}
		if _, err := n.JS.UpdateStream(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	_, intake := n.ConnectAs(t, natsauth.Intake)
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := eventstore.EnsureStream(short, intake, eventstore.StreamConfig{}); err == nil {
		t.Fatal("intake took a lead stream that republishes")
	}
	refusals = len(n.Violations(t)) // intake's refused update
	if out, err := runCtl(ctx, as(natsauth.Provisioner)...); err != nil {
		t.Fatalf("provision again: %v\n%s", err, out)
	}
	if lead, err = n.JS.Stream(ctx, eventstore.DefaultStream); err != nil {
		t.Fatal(err)
	}
	if got := lead.CachedInfo().Config; got.MaxAge != 0 || got.RePublish != nil {
		t.Fatalf("lead stream after provisioning again: max age %v, republish %v", got.MaxAge, got.RePublish)
	}
	for _, name := range buckets {
		if st, err := n.JS.Stream(ctx, name); err != nil || st.CachedInfo().Config.RePublish != nil {
			t.Fatalf("%s after provisioning again: %v", name, err)
		}
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

// On a cluster, provisioning again without --replicas (after an upgrade)
// does not bring the streams down to the default single copy: it is
// refused, naming the count to pass.
func TestProvisionKeepsAClustersReplicas(t *testing.T) {
	c := testenv.StartCluster(t, 3)
	ctx := context.Background()
	url := c.URL(0)
	if out, err := runCtl(ctx, "--nats", url, "provision", "--replicas", "3"); err != nil {
		t.Fatalf("provision --replicas 3: %v\n%s", err, out)
	}
	if _, err := runCtl(ctx, "--nats", url, "provision"); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--replicas 3") {
		t.Fatalf("provision without --replicas: %v, want a usage error naming --replicas 3", err)
	}
	st, err := c.JS.Stream(ctx, eventstore.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if r := st.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("the lead stream has %d replicas, want 3", r)
	}
}

// More replicas than a single server has is a usage error that says why,
// not the server's raw 500.
func TestProvisionReplicasOnASingleServer(t *testing.T) {
	n := testenv.StartNATS(t)
	_, err := runCtl(context.Background(), "--nats", n.Server.URL(), "provision", "--replicas", "3")
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "single server") {
		t.Fatalf("provision --replicas 3 on one server: %v, want a usage error saying it is a single server", err)
	}
}

package eventstore

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/natsserver"
)

// A stream as wanted is recognised as such, so a second Ensure sends no
// update (the update path races consumer creation inside the server).
func TestEnsureRecognisesAStreamAsWanted(t *testing.T) {
	js := startJS(t)
	ctx := context.Background()
	if _, err := EnsureStream(ctx, js, StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	want := jetstream.StreamConfig{
		Name: DefaultStream, Description: "Leadflow lead, campaign and model events; append-only",
		Subjects: []string{LeadSubjects, CampaignSubjects, ModelSubjects, ClaimSubjects}, Storage: jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy, Replicas: 1, Duplicates: 2 * time.Minute, DenyDelete: true, DenyPurge: true,
		AllowDirect: true, AllowAtomicPublish: true,
	}
	if !sameSettings(s.CachedInfo().Config, want) {
		t.Fatalf("the stream as created is not recognised:\n%+v", s.CachedInfo().Config)
	}
	want.Replicas = 3
	if sameSettings(s.CachedInfo().Config, want) {
		t.Fatal("a change of replicas went unnoticed")
	}
	want.Replicas = 1
	want.Retention = jetstream.InterestPolicy // as a stream edited by hand
	if sameSettings(s.CachedInfo().Config, want) {
		t.Fatal("a change of retention went unnoticed: acked events would be removed")
	}
}

// startJS starts a server for the test (an internal test cannot use
// testenv, which imports this package) and dials it.
func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, js, err := Dial(srv.URL(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return js
}

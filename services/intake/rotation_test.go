package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/eventstore"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/pkg/vault"
)

// A master key rotation through intake's settings: with the new key and
// the old one to read with, intake opens what the old key wrapped at once
// and rewraps every stored key in the background; then the new key alone
// opens it.
func TestMasterKeyRotation(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	res, err := e.client.CaptureLead(ctx, lead("rotate.me@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetLeadId()
	exported := func(e *env) {
		t.Helper()
		x, err := e.client.ExportLead(ctx, &intakev1.ExportLeadRequest{LeadId: id})
		if err != nil || !strings.Contains(protojson.Format(x), "rotate.me@example.com") {
			t.Fatalf("export: %v %v", x, err)
		}
	}
	exported(e)

	cfg := e.cfg
	cfg.MasterKey, cfg.ReadMasterKeys = hexKey(t), e.cfg.MasterKey
	cfg.rewrapEvery = 200 * time.Millisecond
	exported(startWith(t, e.nats, cfg))

	// The new key alone, in a vault of the test's own: it opens the lead's
	// sealed fields once intake has rewrapped the key that sealed them.
	newOnly := testVault(t, e.nats, cfg.MasterKey, cfg.BlindKey)
	recs, err := eventstore.New(e.nats.JS, "LEADFLOW").Load(ctx, eventstore.LeadSubject(id))
	if err != nil || len(recs) == 0 {
		t.Fatalf("load: %v", err)
	}
	sealed := recs[0].Event.GetLeadCaptured().GetSealedPersonal()
	testenv.Eventually(t, 20*time.Second, func() bool {
		_, err := newOnly.Open(context.Background(), id, sealed)
		return err == nil
	}, "the stored key was not rewrapped with the new master key")

	// A replica still on the old key during the rollout (-master-key OLD
	// -read-master-keys NEW) wraps what it rewrites with the old one; the
	// new replicas' later passes wrap it again with the new.
	lingering := vaultWithReadKey(t, e.nats, e.cfg.MasterKey, cfg.MasterKey, cfg.BlindKey)
	if n, err := lingering.Rewrap(ctx); err != nil || n == 0 {
		t.Fatalf("the old replica's rewrap: %d, %v; want it to wrap the key back with the old key", n, err)
	}
	fresh := testVault(t, e.nats, cfg.MasterKey, cfg.BlindKey) // no cached key
	if _, err := fresh.Open(ctx, id, sealed); err == nil {
		t.Fatal("the new key alone opens a key the old replica wrapped: the test shows nothing")
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		_, err := fresh.Open(context.Background(), id, sealed)
		return err == nil
	}, "the key the old replica wrapped was not rewrapped with the new master key again")

	cfg.ReadMasterKeys = ""
	exported(startWith(t, e.nats, cfg))
	old := testVault(t, e.nats, e.cfg.MasterKey, cfg.BlindKey)
	if _, err := old.Open(ctx, id, sealed); err == nil {
		t.Fatal("the old master key still opens the lead's data")
	}
}

func testVault(t *testing.T, n *testenv.NATS, masterHex, blindHex string) *vault.Vault {
	t.Helper()
	return vaultWithReadKey(t, n, masterHex, "", blindHex)
}

// vaultWithReadKey is a vault of the test's own wrapping with masterHex,
// and reading with readHex too ("" none).
func vaultWithReadKey(t *testing.T, n *testenv.NATS, masterHex, readHex, blindHex string) *vault.Vault {
	t.Helper()
	master, err := config.Key("master", masterHex)
	if err != nil {
		t.Fatal(err)
	}
	blind, err := config.Key("blind", blindHex)
	if err != nil {
		t.Fatal(err)
	}
	cfg := vault.Config{MasterKey: master, BlindKey: blind}
	if readHex != "" {
		read, err := config.Key("read", readHex)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ReadMasterKeys = [][]byte{read}
	}
	v, err := vault.New(t.Context(), n.JS, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

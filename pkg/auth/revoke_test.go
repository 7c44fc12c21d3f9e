package auth_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// A revocation stored in the bucket reaches a verifier that follows it
// within a moment, though the token was verified (and cached) before: one
// token by its id, then every token of a subject issued up to then. A
// token issued after the subject's revocation works, and so do other
// callers' tokens.
func TestRevokedTokensAreRefused(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k := key(t)
	v, err := auth.NewVerifier(k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	// Following starts before the bucket exists, as a service may.
	go v.Follow(ctx, n.JS, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := auth.EnsureRevocations(ctx, n.JS, 1); err != nil {
		t.Fatal(err)
	}
	// A key Revoke would not write is skipped, not a reason to stop.
	kv, err := n.JS.KeyValue(ctx, auth.RevokedBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "junk", []byte("not a time")); err != nil {
		t.Fatal(err)
	}
	issue := func(sub string) (string, auth.Principal) {
		t.Helper()
		p := reader
		p.Subject = sub
		tok, err := auth.Issue(k, p, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(tok)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID == "" || got.IssuedAt.IsZero() {
			t.Fatalf("principal %+v names no token id or issue time", got)
		}
		return tok, got
	}
	refused := func(tok string) {
		t.Helper()
		testenv.Eventually(t, 5*time.Second, func() bool {
			_, err := v.Verify(tok)
			return errors.Is(err, auth.ErrUnauthenticated)
		}, "a revoked token is still accepted")
	}
	accepted := func(tok string) {
		t.Helper()
		if _, err := v.Verify(tok); err != nil {
			t.Fatalf("a token that is not revoked: %v", err)
		}
	}
	one, p := issue("crm-sync")
	other, _ := issue("crm-sync")
	stranger, _ := issue("web-forms")
	if err := auth.Revoke(ctx, n.JS, p.ID, ""); err != nil {
		t.Fatal(err)
	}
	refused(one)
	accepted(other)

	if err := auth.Revoke(ctx, n.JS, "", "crm-sync"); err != nil {
		t.Fatal(err)
	}
	refused(other)
	accepted(stranger)
	time.Sleep(1100 * time.Millisecond) // issue times are in whole seconds
	fresh, _ := issue("crm-sync")
	accepted(fresh)

	// A second verifier that starts later reads every revocation stored.
	late, err := auth.NewVerifier(k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	go late.Follow(ctx, n.JS, slog.New(slog.NewTextHandler(io.Discard, nil)))
	testenv.Eventually(t, 5*time.Second, func() bool {
		_, e1 := late.Verify(one)
		_, e2 := late.Verify(other)
		return e1 != nil && e2 != nil
	}, "a verifier started later accepts revoked tokens")
	if _, err := late.Verify(fresh); err != nil {
		t.Fatalf("the token issued after the revocation: %v", err)
	}
	if err := auth.Revoke(ctx, n.JS, "", ""); err == nil {
		t.Fatal("a revocation naming nothing was stored")
	}
}

// A revocation lives as long as the longest token it can refuse, and the
// bucket of an older release, made without per-key TTLs, takes them once
// EnsureRevocations has run.
func TestRevocationsExpireAfterEveryTokenTheyRefuse(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := n.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: auth.RevokedBucket, History: 1}); err != nil {
		t.Fatal(err)
	}
	if err := auth.EnsureRevocations(ctx, n.JS, 1); err != nil {
		t.Fatal(err)
	}
	if err := auth.Revoke(ctx, n.JS, "0192a1b2-0000-7000-8000-000000000001", ""); err != nil {
		t.Fatal(err)
	}
	if err := auth.Revoke(ctx, n.JS, "", "crm-sync"); err != nil {
		t.Fatal(err)
	}
	st, err := n.JS.Stream(ctx, "KV_"+auth.RevokedBucket)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 2; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		ttl, err := time.ParseDuration(m.Header.Get("Nats-TTL"))
		if err != nil || ttl <= auth.MaxLifetime || ttl > auth.MaxLifetime+2*time.Hour {
			t.Errorf("revocation %s lives %v (%v), want a little over %v", m.Subject, ttl, err, auth.MaxLifetime)
		}
	}
}

package auth_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// ready waits until v has read the revocations.
func ready(t *testing.T, v *auth.Verifier) {
	t.Helper()
	select {
	case <-v.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the verifier never read the revocations")
	}
}

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

	// A second verifier that starts later has read every revocation stored
	// once it is ready.
	late, err := auth.NewVerifier(k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	go late.Follow(ctx, n.JS, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ready(t, late)
	for _, tok := range []string{one, other} {
		if _, err := late.Verify(tok); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("a verifier started later, once ready: %v, want the token refused", err)
		}
	}
	if _, err := late.Verify(stranger); err != nil {
		t.Fatalf("another caller's token: %v", err)
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

// A verifier that must read the revocations refuses every token until it
// has, and when the bucket cannot be reached that lasts: a replica that
// starts during the fault does not take the tokens revoked before it.
func TestNoTokenIsTakenBeforeTheRevocationsAreRead(t *testing.T) {
	n, ctx := withRevocations(t)
	k := key(t)
	revoked, err := auth.Issue(k, reader, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := auth.Claimed(revoked)
	if err := auth.Revoke(ctx, n.JS, p.ID, ""); err != nil {
		t.Fatal(err)
	}
	valid, err := auth.Issue(k, reader, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	follow := func(js jetstream.JetStream) *auth.Verifier {
		v, err := auth.NewVerifier(k.Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		v.RequireRevocations()
		fctx, stop := context.WithCancel(ctx)
		t.Cleanup(stop)
		go v.Follow(fctx, js, log)
		return v
	}

	// No JetStream answers in this domain: the bucket is out of reach.
	away, err := jetstream.NewWithDomain(n.Conn, "away")
	if err != nil {
		t.Fatal(err)
	}
	v := follow(away)
	for range 3 {
		for _, tok := range []string{revoked, valid} {
			if _, err := v.Verify(tok); !errors.Is(err, auth.ErrNotReady) || !errors.Is(err, auth.ErrUnauthenticated) {
				t.Fatalf("the bucket out of reach: %v, want the token refused as not ready", err)
			}
		}
		time.Sleep(time.Second)
	}

	v = follow(n.JS)
	if _, err := v.Verify(revoked); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("just started: %v, want the revoked token refused", err)
	}
	ready(t, v)
	if _, err := v.Verify(revoked); !errors.Is(err, auth.ErrUnauthenticated) || errors.Is(err, auth.ErrNotReady) {
		t.Fatalf("ready: %v, want the token refused as revoked", err)
	}
	if _, err := v.Verify(valid); err != nil {
		t.Fatalf("ready, a token not revoked: %v", err)
	}
}

// Whoever may store a revocation could erase every one with a roll-up in
// a bucket with the KV defaults, as releases before made it, or replace
// one with a delete marker or an earlier time. Once EnsureRevocations has
// run the bucket refuses roll-ups, purges and a second message on a key,
// and a verifier that starts afterwards still refuses the revoked tokens.
func TestRevocationsCannotBeErased(t *testing.T) {
	n := testenv.StartNATSWithUsersOnly(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := n.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: auth.RevokedBucket, Description: "revoked API tokens", History: 1, LimitMarkerTTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	k := key(t)
	one, err := auth.Issue(k, reader, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := auth.Claimed(one)
	stranger := reader
	stranger.Subject = "web-forms"
	every, err := auth.Issue(k, stranger, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, operator := n.ConnectAs(t, natsauth.Operator)
	if err := auth.Revoke(ctx, operator, p.ID, ""); err != nil {
		t.Fatal(err)
	}
	if err := auth.Revoke(ctx, operator, "", "web-forms"); err != nil {
		t.Fatal(err)
	}
	_, provisioner := n.ConnectAs(t, natsauth.Provisioner)
	if err := auth.EnsureRevocations(ctx, provisioner, 1); err != nil {
		t.Fatal(err)
	}
	if err := auth.Revoke(ctx, operator, "", "web-forms"); err != nil { // again, under the new settings
		t.Fatal(err)
	}
	if err := auth.Revoke(ctx, operator, p.ID, ""); err != nil {
		t.Fatalf("revoking a revoked token again: %v", err)
	}

	keys, err := n.JS.KeyValue(ctx, auth.RevokedBucket)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := keys.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for key := range stored.Keys() {
		del := nats.NewMsg("$KV." + auth.RevokedBucket + "." + key)
		del.Header.Set("KV-Operation", "DEL")
		if _, err := operator.PublishMsg(ctx, del); err == nil {
			t.Errorf("a delete marker over %s was stored", key)
		}
		if _, err := operator.Publish(ctx, "$KV."+auth.RevokedBucket+"."+key, []byte("2000-01-01T00:00:00Z")); err == nil {
			t.Errorf("an earlier time over %s was stored", key)
		}
	}
	for _, rollup := range []string{"all", "sub"} {
		m := nats.NewMsg("$KV." + auth.RevokedBucket + ".id." + p.ID)
		m.Header.Set("KV-Operation", "PURGE")
		m.Header.Set("Nats-Rollup", rollup)
		if _, err := operator.PublishMsg(ctx, m); err == nil {
			t.Errorf("a roll-up of %s was stored", rollup)
		}
	}
	st, err := n.JS.Stream(ctx, "KV_"+auth.RevokedBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx); err == nil {
		t.Error("the bucket was purged")
	}

	_, projector := n.ConnectAs(t, natsauth.Projector)
	v, err := auth.NewVerifier(k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	go v.Follow(ctx, projector, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ready(t, v)
	for _, tok := range []string{one, every} {
		if _, err := v.Verify(tok); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("a verifier started after the roll-up: %v, want the token refused", err)
		}
	}
}

// An issue time is the issuer's clock: a revocation of a subject refuses
// its tokens issued up to 30 s (the clocks' leeway) after it, so a token
// issued just before it by a clock running fast is refused too; one
// issued later than that works.
func TestRevokingASubjectRefusesTokensOfAFastIssuer(t *testing.T) {
	n, ctx := withRevocations(t)
	k := key(t)
	v, err := auth.NewVerifier(k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	go v.Follow(ctx, n.JS, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ready(t, v)
	issuedAt := func(sub string, iat time.Time) string {
		t.Helper()
		tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": auth.Issuer, "sub": sub, "scope": "leads:read",
			"iat": iat.Unix(), "exp": iat.Add(time.Hour).Unix()}).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	refused := func(tok string) {
		t.Helper()
		testenv.Eventually(t, 5*time.Second, func() bool {
			_, err := v.Verify(tok)
			return errors.Is(err, auth.ErrUnauthenticated)
		}, "a revoked token is still accepted")
	}

	// Issued a moment ago by a clock 20 s fast.
	fast := issuedAt("crm-sync", time.Now().Add(20*time.Second))
	if _, err := v.Verify(fast); err != nil {
		t.Fatalf("before the revocation: %v", err)
	}
	if err := auth.Revoke(ctx, n.JS, "", "crm-sync"); err != nil {
		t.Fatal(err)
	}
	refused(fast)

	// A revocation a minute old refuses tokens issued 15 s after it, not 45 s.
	minuteAgo := time.Now().Add(-time.Minute)
	subject := "$KV." + auth.RevokedBucket + ".sub." + base64.RawURLEncoding.EncodeToString([]byte("web-forms"))
	if _, err := n.JS.Publish(ctx, subject, []byte(minuteAgo.UTC().Format(time.RFC3339Nano))); err != nil {
		t.Fatal(err)
	}
	refused(issuedAt("web-forms", minuteAgo.Add(15*time.Second)))
	if _, err := v.Verify(issuedAt("web-forms", minuteAgo.Add(45*time.Second))); err != nil {
		t.Fatalf("a token issued past the leeway after the revocation: %v", err)
	}
}

// withRevocations is a server with the revocations bucket, and a context
// for the test.
func withRevocations(t *testing.T) (*testenv.NATS, context.Context) {
	t.Helper()
	n := testenv.StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	if err := auth.EnsureRevocations(ctx, n.JS, 1); err != nil {
		t.Fatal(err)
	}
	return n, ctx
}

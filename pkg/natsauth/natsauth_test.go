package natsauth_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/provision"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/pkg/vault"
)

// refusals records the permissions violations the server sends a client.
type refusals chan error

func (r refusals) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrPermissionViolation) {
		select {
		case r <- err:
		default:
		}
	}
}

// expect waits for a violation naming subject.
func (r refusals) expect(t *testing.T, subject string) {
	t.Helper()
	select {
	case err := <-r:
		if !strings.Contains(err.Error(), subject) {
			t.Fatalf("violation %v, want one for %q", err, subject)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no permissions violation for %s", subject)
	}
}

func connectAs(t *testing.T, n *testenv.NATS, role string) (jetstream.JetStream, *nats.Conn, refusals) {
	t.Helper()
	r := make(refusals, 16)
	nc, js := n.ConnectAs(t, role, nats.ErrorHandler(r.handler))
	return js, nc, r
}

// try sends a JetStream API request without waiting for its answer: a
// refused one is answered by a violation only.
func try(t *testing.T, nc *nats.Conn, subject, body string) {
	t.Helper()
	if err := nc.PublishRequest(subject, nc.NewRespInbox(), []byte(body)); err != nil {
		t.Fatal(err)
	}
}

func short(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

func TestKeyVaultIsIntakesAndHandoffsOnly(t *testing.T) {
	n := testenv.StartNATSWithUsers(t)
	for _, role := range []string{natsauth.Qualification, natsauth.Projector, natsauth.Nurture, natsauth.Operator} {
		t.Run(role, func(t *testing.T) {
			js, _, r := connectAs(t, n, role)
			_, err := js.KeyValue(short(t), vault.DefaultBucket)
			if err == nil {
				t.Fatal("opened the key vault")
			}
			r.expect(t, "$JS.API.STREAM.INFO.KV_"+vault.DefaultBucket)
			if _, err := js.Publish(short(t), "$KV."+vault.DefaultBucket+".L1", []byte("k")); err == nil {
				t.Fatal("wrote a key")
			}
			r.expect(t, "$KV."+vault.DefaultBucket+".L1")
			try(t, js.Conn(), "$JS.API.DIRECT.GET.KV_"+vault.DefaultBucket+".$KV."+vault.DefaultBucket+".L1", "")
			r.expect(t, "$JS.API.DIRECT.GET.KV_"+vault.DefaultBucket)
		})
	}
	// Handoff reads keys (the brief) but neither writes nor shreds them.
	js, _, r := connectAs(t, n, natsauth.Handoff)
	if _, err := js.Publish(short(t), "$KV."+vault.DefaultBucket+".L1", []byte("k")); err == nil {
		t.Fatal("handoff wrote a key")
	}
	r.expect(t, "$KV."+vault.DefaultBucket+".L1")
	try(t, js.Conn(), "$JS.API.STREAM.MSG.DELETE.KV_"+vault.DefaultBucket, `{"seq":1}`)
	r.expect(t, "$JS.API.STREAM.MSG.DELETE.KV_"+vault.DefaultBucket)
}

func TestOnlyWritersAppendLeadEvents(t *testing.T) {
	n := testenv.StartNATSWithUsers(t)
	for _, role := range []string{natsauth.Projector, natsauth.Operator} {
		t.Run(role, func(t *testing.T) {
			js, _, r := connectAs(t, n, role)
			subj := eventstore.LeadSubject("L1")
			if _, err := js.Publish(short(t), subj, []byte("x")); err == nil {
				t.Fatal("appended a lead event")
			}
			r.expect(t, subj)
		})
	}
	js, _, _ := connectAs(t, n, natsauth.Intake)
	if _, err := js.Publish(context.Background(), eventstore.LeadSubject("L1"), []byte("x")); err != nil {
		t.Fatalf("intake cannot append: %v", err)
	}
	// What make chaos and the users tests look for in the server's log.
	if v := n.Violations(t); len(v) != 2 || !strings.Contains(v[0], eventstore.LeadSubject("L1")) {
		t.Errorf("server log violations: %q", v)
	}
}

// Each service writes its own model subject and its request records,
// not another's model (nurture or handoff could activate a scoring
// version nobody signed off) nor intake's identity claims.
func TestModelsAndClaimsAreTheirWritersOwn(t *testing.T) {
	n := testenv.StartNATSWithUsers(t)
	for role, subjects := range map[string]struct{ may, mayNot []string }{
		natsauth.Qualification: {[]string{"model.scoring", "claim.command.x"}, []string{"model.nurture-programs", "model.routing", "claim.email.x", "claim.idem.x"}},
		natsauth.Nurture:       {[]string{"model.nurture-programs", "claim.command.x"}, []string{"model.scoring", "claim.email.x"}},
		natsauth.Handoff:       {[]string{"model.routing", "model.routing-pool-p1", "claim.command.x"}, []string{"claim.email.x", "claim.idem.x"}},
	} {
		t.Run(role, func(t *testing.T) {
			js, _, r := connectAs(t, n, role)
			for _, subj := range subjects.may {
				if _, err := js.Publish(context.Background(), subj, []byte("x")); err != nil {
					t.Errorf("cannot write %s: %v", subj, err)
				}
			}
			for _, subj := range subjects.mayNot {
				if _, err := js.Publish(short(t), subj, []byte("x")); err == nil {
					t.Errorf("wrote %s", subj)
				}
				r.expect(t, subj)
			}
		})
	}
}

func TestNoRoleDeletesOrPurgesAStream(t *testing.T) {
	n := testenv.StartNATSWithUsers(t)
	streams := provision.Streams()
	for _, r := range natsauth.Roles() {
		t.Run(r.Name, func(t *testing.T) {
			_, nc, refused := connectAs(t, n, r.Name)
			for _, s := range streams {
				try(t, nc, "$JS.API.STREAM.DELETE."+s, "")
				refused.expect(t, "$JS.API.STREAM.DELETE."+s)
				if s == consume.DefaultDeadLetterStream && r.Name != natsauth.Operator && r.Name != natsauth.Provisioner {
					continue // consumer groups purge their released dead letters by subject
				}
				try(t, nc, "$JS.API.STREAM.PURGE."+s, "")
				refused.expect(t, "$JS.API.STREAM.PURGE."+s)
			}
		})
	}
	for _, s := range streams {
		if _, err := n.JS.Stream(context.Background(), s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
}

func TestNoRoleReadsAnothersReplies(t *testing.T) {
	n := testenv.StartNATSWithUsers(t)
	for _, r := range natsauth.Roles() {
		t.Run(r.Name, func(t *testing.T) {
			_, nc, refused := connectAs(t, n, r.Name)
			for _, other := range natsauth.Roles() {
				if other.Name == r.Name {
					continue
				}
				inbox := eventstore.InboxPrefix(other.Name) + ".>"
				if _, err := nc.SubscribeSync(inbox); err != nil {
					t.Fatal(err)
				}
				refused.expect(t, inbox)
			}
			if _, err := nc.SubscribeSync("_INBOX.>"); err != nil {
				t.Fatal(err)
			}
			refused.expect(t, "_INBOX.>")
		})
	}
}

// TestEveryRoleConnects: each role's own requests get answered on its
// own inbox.
func TestEveryRoleConnects(t *testing.T) {
	n := testenv.StartNATSWithUsers(t)
	for _, r := range natsauth.Roles() {
		js, _, _ := connectAs(t, n, r.Name)
		if _, err := js.Stream(context.Background(), eventstore.DefaultStream); err != nil {
			t.Errorf("%s: %v", r.Name, err)
		}
	}
}

// TestOnlyTheProvisionerMakesOrChangesStreams: a stream's settings can
// republish its messages to the JetStream API, or source another stream,
// and the server checks neither against the permissions of whoever set
// them; so no service may create a stream or change one, whatever it is
// named. Each try below would otherwise delete the lead stream, append a
// lead event, or copy the key vault beyond the shredder's reach.
func TestOnlyTheProvisionerMakesOrChangesStreams(t *testing.T) {
	n := testenv.StartNATSWithUsers(t)
	ctx := context.Background()
	for _, r := range natsauth.Roles() {
		if r.Name == natsauth.Provisioner {
			continue
		}
		t.Run(r.Name, func(t *testing.T) {
			_, nc, refused := connectAs(t, n, r.Name)
			for _, s := range provision.Streams() {
				info, err := n.JS.Stream(ctx, s)
				if err != nil {
					t.Fatal(err)
				}
				cfg := info.CachedInfo().Config
				cfg.RePublish = &jetstream.RePublish{Source: ">", Destination: "$JS.API.STREAM.DELETE." + eventstore.DefaultStream}
				body, err := json.Marshal(cfg)
				if err != nil {
					t.Fatal(err)
				}
				try(t, nc, "$JS.API.STREAM.UPDATE."+s, string(body))
				refused.expect(t, "$JS.API.STREAM.UPDATE."+s)
			}
			copyVault, err := json.Marshal(jetstream.StreamConfig{Name: "COPY", Storage: jetstream.FileStorage,
				Sources: []*jetstream.StreamSource{{Name: "KV_" + vault.DefaultBucket}}})
			if err != nil {
				t.Fatal(err)
			}
			try(t, nc, "$JS.API.STREAM.CREATE.COPY", string(copyVault))
			refused.expect(t, "$JS.API.STREAM.CREATE.COPY")
		})
	}
	for _, s := range provision.Streams() {
		info, err := n.JS.Stream(ctx, s)
		if err != nil || info.CachedInfo().Config.RePublish != nil {
			t.Fatalf("%s changed: %v", s, err)
		}
	}
	if _, err := n.JS.Stream(ctx, "COPY"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("a copy of the key vault: %v", err)
	}
}

// TestTheProvisionerReadsAndWritesNothing: its user makes streams only.
func TestTheProvisionerReadsAndWritesNothing(t *testing.T) {
	n := testenv.StartNATSWithUsers(t)
	js, nc, r := connectAs(t, n, natsauth.Provisioner)
	if _, err := js.Publish(short(t), eventstore.LeadSubject("L1"), []byte("x")); err == nil {
		t.Fatal("appended a lead event")
	}
	r.expect(t, eventstore.LeadSubject("L1"))
	for _, s := range []string{eventstore.DefaultStream, "KV_" + vault.DefaultBucket} {
		try(t, nc, "$JS.API.DIRECT.GET."+s, `{"seq":1}`)
		r.expect(t, "$JS.API.DIRECT.GET."+s)
		try(t, nc, "$JS.API.CONSUMER.CREATE."+s, `{}`)
		r.expect(t, "$JS.API.CONSUMER.CREATE."+s)
	}
}

// The provisioner makes the revocations bucket, the operator revokes, every
// service follows it as its own user, and nobody else writes it: a
// service that could would let any caller's token be revoked, or none.
func TestRevocationsAreTheOperatorsToWrite(t *testing.T) {
	n := testenv.StartNATSWithUsers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, signer, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Issue(signer, auth.Principal{Subject: "crm-sync", Scopes: []string{"leads:read"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	js, _, _ := connectAs(t, n, natsauth.Operator)
	if err := auth.Revoke(ctx, js, "", "crm-sync"); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{natsauth.Intake, natsauth.Qualification, natsauth.Handoff, natsauth.Nurture, natsauth.Projector} {
		t.Run(role, func(t *testing.T) {
			js, _, r := connectAs(t, n, role)
			v, err := auth.NewVerifier(signer.Public().(ed25519.PublicKey))
			if err != nil {
				t.Fatal(err)
			}
			fctx, stop := context.WithCancel(ctx)
			defer stop()
			go v.Follow(fctx, js, slog.New(slog.NewTextHandler(io.Discard, nil)))
			testenv.Eventually(t, 5*time.Second, func() bool {
				_, err := v.Verify(tok)
				return err != nil
			}, "%s never read the revocation", role)
			stop() // an ordered consumer deletes itself
			select {
			case err := <-r:
				t.Fatalf("following: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			if _, err := js.Publish(short(t), "$KV."+auth.RevokedBucket+".sub.eA", []byte("2026-12-03T00:00:00Z")); err == nil {
				t.Fatal("wrote a revocation")
			}
			r.expect(t, "$KV."+auth.RevokedBucket)
		})
	}
}

// A service schedules its timers; only the server writes their fired
// copies, which the service acts on: it cannot forge one.
func TestServicesCannotForgeAFiredTimer(t *testing.T) {
	n := testenv.StartNATSWithUsers(t)
	for _, c := range []struct{ role, prefix string }{{natsauth.Handoff, "handoff.timer"}, {natsauth.Nurture, "nurture.timer"}} {
		t.Run(c.role, func(t *testing.T) {
			_, nc, r := connectAs(t, n, c.role)
			if err := nc.Publish(c.prefix+".fired.0.L1", []byte("x")); err != nil {
				t.Fatal(err)
			}
			r.expect(t, c.prefix+".fired.0.L1")
		})
	}
}

// A consumer's deliver subject is not checked against its creator's
// permissions, and every role that reads a stream by consumers may make
// one with any settings. What keeps a push consumer from doing what its
// creator may not is that it delivers only where a client listens: aimed
// at the JetStream API (to delete a stream) or at another stream's
// subjects (a revocation, a fired timer), it delivers nothing. This holds
// the server to that.
func TestPushConsumersDeliverOnlyWhereAClientListens(t *testing.T) {
	n := testenv.StartNATSWithUsers(t)
	ctx := context.Background()
	if _, err := n.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "VICTIM", Subjects: []string{"victim.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.JS.Publish(ctx, "lead.0.L1", []byte(`{"type":"io.nats.jetstream.api.v1.stream_delete_request"}`)); err != nil {
		t.Fatal(err)
	}
	_, nc, _ := connectAs(t, n, natsauth.Projector)
	targets := []string{"$JS.API.STREAM.DELETE.VICTIM", "$KV." + auth.RevokedBucket + ".forged", provision.HandoffTimers.Prefix + ".fired.0.L1"}
	for i, to := range targets {
		try(t, nc, fmt.Sprintf("$JS.API.CONSUMER.CREATE.%s.push%d", eventstore.DefaultStream, i),
			fmt.Sprintf(`{"stream_name":%q,"config":{"name":"push%d","deliver_subject":%q,"ack_policy":"none","deliver_policy":"all"}}`, eventstore.DefaultStream, i, to))
	}
	time.Sleep(time.Second)
	for i, to := range targets {
		// The client library opens pull consumers only: ask the API.
		m, err := n.Conn.Request(fmt.Sprintf("$JS.API.CONSUMER.INFO.%s.push%d", eventstore.DefaultStream, i), nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var info jetstream.ConsumerInfo
		if err := json.Unmarshal(m.Data, &info); err != nil || info.Config.DeliverSubject != to {
			t.Fatalf("the push consumer to %s was not made, so this proves nothing: %v %s", to, err, m.Data)
		}
		if d := info.Delivered.Consumer; d != 0 || info.NumPending == 0 {
			t.Errorf("the push consumer to %s delivered %d messages, %d pending", to, d, info.NumPending)
		}
	}
	if _, err := n.JS.Stream(ctx, "VICTIM"); err != nil {
		t.Fatalf("VICTIM: %v", err)
	}
	for _, s := range []string{"KV_" + auth.RevokedBucket, provision.HandoffTimers.Name} {
		st, err := n.JS.Stream(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if m := st.CachedInfo().State.Msgs; m != 0 {
			t.Errorf("%s holds %d messages", s, m)
		}
	}
}

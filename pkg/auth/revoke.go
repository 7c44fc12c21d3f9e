package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

// RevokedBucket is the KV bucket of revocations. pkg/provision makes it,
// an operator writes it (leadctl token revoke), and every service follows
// it. A key is "id.<token id>", one token, or "sub.<subject,
// base64url>.<unix nanoseconds>", every token of the subject issued up to
// the time the value holds and the leeway after it (RFC 3339); keys
// "sub.<subject>" without the time were written before 2026-12-05.
// Revocations are never taken back: a revoked caller gets a new token.
// Each key is written once and lives revocationTTL, after which every
// token it can refuse has expired (MaxLifetime).
const RevokedBucket = "AUTH_REVOKED"

// revocationTTL is MaxLifetime and an hour for the clocks of issuers.
const revocationTTL = MaxLifetime + time.Hour

// EnsureRevocations makes the revocations bucket, or brings one made
// before to these settings (the caller needs the stream update
// permission, as the provisioner has).
//
// The bucket's stream is made here rather than by CreateOrUpdateKeyValue,
// whose buckets allow roll-ups: whoever may store a revocation could then
// erase them all with one message (Nats-Rollup: all). Purges are denied
// too, for good (the server never takes DenyPurge back), and a key that
// holds a revocation takes no second message (DiscardNewPerSubject), so
// neither a delete marker nor an earlier time can replace one. The rest
// is what nats.go sets for a bucket of history 1, so KeyValue and `nats
// kv` read it. Expired revocations leave no marker: markers need roll-ups.
func EnsureRevocations(ctx context.Context, js jetstream.JetStream, replicas int) error {
	cfg := eventstore.KVStream(RevokedBucket, "revoked API tokens", 1, replicas)
	cfg.DiscardNewPerSubject = true
	cfg.DenyDelete = true
	cfg.AllowMsgTTL = true // per-key TTLs (Revoke)
	_, err := eventstore.Ensure(ctx, js, cfg)
	return err
}

// Revoke stores one revocation, for revocationTTL: of the token with id,
// or, with id empty, of every token of subject issued up to now (and the
// leeway after, see revoked).
func Revoke(ctx context.Context, js jetstream.JetStream, id, subject string) error {
	if _, err := js.KeyValue(ctx, RevokedBucket); err != nil {
		return fmt.Errorf("auth: revocations bucket: %w", err)
	}
	now := time.Now().UTC()
	key := "id." + id
	switch {
	case id != "" && subject != "", id == "" && subject == "":
		return errors.New("auth: revoke a token id or a subject")
	case id == "":
		// A subject may be revoked again later (its new tokens): each time
		// under a key of its own, as no key is written twice.
		key = "sub." + base64.RawURLEncoding.EncodeToString([]byte(subject)) + "." + strconv.FormatInt(now.UnixNano(), 10)
	case strings.ContainsAny(id, ". *>"):
		return fmt.Errorf("auth: %q is not a token id", id)
	}
	// A publish to the key's subject is a put that carries its own TTL; it
	// expects the key empty, which the bucket enforces anyway.
	_, err := js.Publish(ctx, "$KV."+RevokedBucket+"."+key, []byte(now.Format(time.RFC3339Nano)),
		jetstream.WithMsgTTL(revocationTTL), jetstream.WithExpectLastSequencePerSubject(0))
	if eventstore.IsWrongLastSequence(err) {
		return nil // revoked before
	}
	return err
}

// revoked reports whether p's token is revoked.
func (v *Verifier) revoked(p Principal) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.revokedIDs[p.ID]; ok && p.ID != "" {
		return true
	}
	until, ok := v.revokedSubjects[p.Subject]
	// An issue time is the issuer's clock, which may run up to leeway ahead
	// of the revoker's: tokens issued within leeway after the revocation
	// are refused too.
	return ok && !p.IssuedAt.After(until.Add(leeway))
}

// apply records one revocation read from the bucket.
func (v *Verifier) apply(key string, value []byte) error {
	at, err := time.Parse(time.RFC3339Nano, string(value))
	if err != nil {
		return fmt.Errorf("revocation %s: %w", key, err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	switch kind, name, _ := strings.Cut(key, "."); kind {
	case "id":
		v.revokedIDs[name] = struct{}{}
	case "sub":
		name, _, _ = strings.Cut(name, ".") // the time that makes the key unique
		sub, err := base64.RawURLEncoding.DecodeString(name)
		if err != nil {
			return fmt.Errorf("revocation %s: %w", key, err)
		}
		if at.After(v.revokedSubjects[string(sub)]) {
			v.revokedSubjects[string(sub)] = at
		}
	default:
		return fmt.Errorf("revocation %s: unknown kind", key)
	}
	return nil
}

// ErrNotReady is matched by every token a verifier that RequireRevocations
// refuses because it has not read the revocations yet.
var ErrNotReady = errors.New("auth: revocations not read yet")

// RequireRevocations makes v refuse every token (ErrNotReady) until Follow
// has read the revocations bucket (Ready): a service that has just
// started, or cannot reach the bucket, must not take a revoked token.
// Call it before the first Verify.
func (v *Verifier) RequireRevocations() { v.required.Store(true) }

// Ready is closed once Follow has read every revocation stored when it
// subscribed.
func (v *Verifier) Ready() <-chan struct{} { return v.ready }

func (v *Verifier) markRead() {
	v.readOnce.Do(func() {
		v.read.Store(true)
		close(v.ready)
	})
}

// catchUpWait bounds the wait for the next revocation before Follow is
// ready: one that expired after it subscribed is never delivered, so it
// subscribes again rather than wait for it.
const catchUpWait = 5 * time.Second

// Follow reads the revocations bucket into the verifier until ctx ends:
// every revocation stored so far, then each new one as it is stored, so a
// revoked token is refused by every service within a moment. While the
// bucket does not exist yet, or the server is away, it tries again.
//
// It is ready (Ready) once it has read up to the bucket's last message as
// of subscribing, or found no bucket (nothing was revoked), and stays so:
// a watch lost later keeps what it has read, and revocations stored
// meanwhile arrive when it is back. Refusing every token then instead
// would stop the APIs whenever the bucket is away.
func (v *Verifier) Follow(ctx context.Context, js jetstream.JetStream, log *slog.Logger) {
	for ctx.Err() == nil {
		err := v.follow(ctx, js, log)
		if ctx.Err() != nil {
			return
		}
		log.Warn("auth: following revocations", "err", err, "ready", v.read.Load())
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

func (v *Verifier) follow(ctx context.Context, js jetstream.JetStream, log *slog.Logger) error {
	st, err := js.Stream(ctx, "KV_"+RevokedBucket)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		v.markRead() // the server answered: no bucket, nothing revoked yet
		return err
	}
	if err != nil {
		return err
	}
	state := st.CachedInfo().State
	if state.Msgs == 0 {
		v.markRead()
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	prefix := "$KV." + RevokedBucket + "."
	for {
		var m jetstream.Msg
		if v.read.Load() {
			m, err = it.Next()
		} else {
			m, err = it.Next(jetstream.NextMaxWait(catchUpWait))
		}
		if err != nil {
			return err
		}
		// A delete, or the marker of a revocation that expired (buckets made
		// before markers were turned off): the tokens it refused have
		// expired too.
		if m.Headers().Get("KV-Operation") == "" && m.Headers().Get(jetstream.MarkerReasonHeader) == "" {
			if err := v.apply(strings.TrimPrefix(m.Subject(), prefix), m.Data()); err != nil {
				log.Error("auth: a revocation that is not one, skipped", "err", err) // not written by Revoke
			}
		}
		if meta, err := m.Metadata(); err == nil && (meta.Sequence.Stream >= state.LastSeq || meta.NumPending == 0) {
			v.markRead()
		}
	}
}

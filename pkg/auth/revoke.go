package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// RevokedBucket is the KV bucket of revocations. Intake makes it (as it
// makes the lead stream), an operator writes it (leadctl token revoke),
// and every service follows it. A key is "id.<token id>", one token, or
// "sub.<subject, base64url>", every token of the subject issued up to
// the time the value holds (RFC 3339). Revocations are never taken back:
// a revoked caller gets a new token. Each lives revocationTTL, after
// which every token it can refuse has expired (MaxLifetime).
const RevokedBucket = "AUTH_REVOKED"

// revocationTTL is MaxLifetime and an hour for the clocks of issuers.
const revocationTTL = MaxLifetime + time.Hour

// EnsureRevocations makes the revocations bucket, or updates it to allow
// revocations that expire.
func EnsureRevocations(ctx context.Context, js jetstream.JetStream, replicas int) error {
	_, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: RevokedBucket, Description: "revoked API tokens", History: 1, Replicas: max(replicas, 1),
		// Per-key TTLs; an expired key leaves a marker this long.
		LimitMarkerTTL: time.Minute})
	return err
}

// Revoke stores one revocation, for revocationTTL: of the token with id,
// or, with id empty, of every token of subject issued up to now.
func Revoke(ctx context.Context, js jetstream.JetStream, id, subject string) error {
	if _, err := js.KeyValue(ctx, RevokedBucket); err != nil {
		return fmt.Errorf("auth: revocations bucket: %w", err)
	}
	key := "id." + id
	switch {
	case id != "" && subject != "", id == "" && subject == "":
		return errors.New("auth: revoke a token id or a subject")
	case id == "":
		key = "sub." + base64.RawURLEncoding.EncodeToString([]byte(subject))
	case strings.ContainsAny(id, ". *>"):
		return fmt.Errorf("auth: %q is not a token id", id)
	}
	// A publish to the key's subject is a put that carries its own TTL.
	_, err := js.Publish(ctx, "$KV."+RevokedBucket+"."+key, []byte(time.Now().UTC().Format(time.RFC3339Nano)),
		jetstream.WithMsgTTL(revocationTTL))
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
	return ok && !p.IssuedAt.After(until)
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

// Follow reads the revocations bucket into the verifier until ctx ends:
// every revocation stored so far, then each new one as it is stored, so a
// revoked token is refused by every service within a moment. While the
// bucket does not exist yet, or the server is away, it tries again.
func (v *Verifier) Follow(ctx context.Context, js jetstream.JetStream, log *slog.Logger) {
	for ctx.Err() == nil {
		err := v.follow(ctx, js, log)
		if ctx.Err() != nil {
			return
		}
		log.Warn("auth: following revocations", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

func (v *Verifier) follow(ctx context.Context, js jetstream.JetStream, log *slog.Logger) error {
	st, err := js.Stream(ctx, "KV_"+RevokedBucket)
	if err != nil {
		return err
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
		m, err := it.Next()
		if err != nil {
			return err
		}
		if m.Headers().Get("KV-Operation") != "" || m.Headers().Get(jetstream.MarkerReasonHeader) != "" {
			// A delete, or the marker of a revocation that expired: the
			// tokens it refused have expired too.
			continue
		}
		if err := v.apply(strings.TrimPrefix(m.Subject(), prefix), m.Data()); err != nil {
			log.Error("auth: a revocation that is not one, skipped", "err", err) // not written by Revoke
		}
	}
}

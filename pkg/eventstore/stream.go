// Package eventstore is the one way Leadflow appends and reads events.
//
// Everything lives in one JetStream stream. Each aggregate has one literal
// subject (lead.<partition>.<id>, campaign.<uuid of id>), so the server's subject
// index gives a per-lead order, a per-lead version (the stream sequence of
// the lead's last message) and loads that never scan the stream. The
// partition token lets a consumer group split the leads between its
// replicas (pkg/consume); docs/events.md gives the numbers behind the
// layout. Uniqueness records
// (identity, idempotency keys) are claims on claim.<kind>.<hash> subjects
// in the same stream, so a claim and the event it guards commit in one
// atomic batch: there is no window in which one exists without the other.
package eventstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/deadline"
)

// DefaultStream is the name of the event stream.
const DefaultStream = "LEADFLOW"

// Subject prefixes. Consumers filter on them (e.g. "lead.>").
const (
	LeadSubjects     = "lead.>"
	CampaignSubjects = "campaign.>"
	ModelSubjects    = "model.>"
	ClaimSubjects    = "claim.>"
)

// StreamConfig holds the settings of the event stream.
type StreamConfig struct {
	// Name defaults to DefaultStream.
	Name string
	// Replicas is 1 on one machine and 3 in a cluster.
	Replicas int
	// Duplicates is the window in which a repeated Nats-Msg-Id is dropped
	// by the server; default two minutes. Idempotency beyond it comes from
	// claims, which never expire.
	Duplicates time.Duration
}

// EnsureStream creates the event stream or updates it to cfg. The stream
// denies delete and purge: history is never rewritten, and personal data
// is erased by destroying per-lead keys instead (see pkg/vault).
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultStream
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Duplicates == 0 {
		cfg.Duplicates = 2 * time.Minute
	}
	s, err := Ensure(ctx, js, jetstream.StreamConfig{
		Name:               cfg.Name,
		Description:        "Leadflow lead, campaign and model events; append-only",
		Subjects:           []string{LeadSubjects, CampaignSubjects, ModelSubjects, ClaimSubjects},
		Storage:            jetstream.FileStorage,
		Retention:          jetstream.LimitsPolicy,
		Replicas:           cfg.Replicas,
		Duplicates:         cfg.Duplicates,
		DenyDelete:         true,
		DenyPurge:          true,
		AllowDirect:        true,
		AllowAtomicPublish: true,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

// Partitions is how many partitions the lead subjects are spread over. It
// is part of every stored lead subject, so it can never change: it bounds
// how many replicas of one consuming service share the work.
const Partitions = 16

// Partition is the partition of a lead: FNV-1a of its id.
func Partition(leadID string) int {
	h := uint32(2166136261)
	for i := 0; i < len(leadID); i++ {
		h ^= uint32(leadID[i])
		h *= 16777619
	}
	return int(h % Partitions)
}

// LeadSubject is the subject of one lead's events.
func LeadSubject(leadID string) string {
	return "lead." + strconv.Itoa(Partition(leadID)) + "." + leadID
}

// PartitionSubjects is the filter of one partition's lead subjects.
func PartitionSubjects(p int) []string { return []string{"lead." + strconv.Itoa(p) + ".>"} }

// LeadID is the lead id of a lead subject, "" for any other subject.
func LeadID(subject string) string {
	rest, ok := strings.CutPrefix(subject, "lead.")
	if !ok {
		return ""
	}
	_, id, ok := strings.Cut(rest, ".")
	if !ok {
		return ""
	}
	return id
}

// CampaignSubject is the subject of one campaign's events.
func CampaignSubject(campaignID string) string { return "campaign." + NameToken(campaignID) }

// NameToken is the subject token for a caller's name (a campaign or pool
// id): a name-based UUID of it, so no caller's text becomes a subject
// token (a '.' would split it, a wildcard would widen a filter). The name
// itself is in the events.
func NameToken(name string) string { return uuid.NewSHA1(nameNamespace, []byte(name)).String() }

// nameNamespace is fixed forever: subjects derive from it.
var nameNamespace = uuid.MustParse("6c65616e-6466-4c6f-a763-616d7061696e")

// ModelSubject is the subject of one scoring model's events.
func ModelSubject(modelID string) string { return "model." + modelID }

// ClaimSubject is the subject of one uniqueness claim. kind is a short
// word ("email", "ext", "idem"); key must be a valid subject token, such
// as a keyed hash from pkg/vault.
func ClaimSubject(kind, key string) string { return "claim." + kind + "." + key }

const defaultTimeout = 5 * time.Second

// withDefaultTimeout gives ctx a deadline when the caller set none.
func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return deadline.Default(ctx, defaultTimeout)
}

// Ensure creates the stream cfg names, or updates it when it differs in a
// setting Leadflow chooses; a stream already as wanted is left alone. Every
// replica of every service calls it on start, and an update racing a
// consumer's creation on the same stream trips a data race inside
// nats-server 2.15 (seen under -race), so the common case sends none.
//
// It retries as Setup does, so a process starting while a cluster elects
// leaders waits instead of exiting.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	ctx, cancel := WithSetupTimeout(ctx)
	defer cancel()
	var s jetstream.Stream
	err := Setup(ctx, nil, func(ctx context.Context) (err error) {
		if s, err = js.Stream(ctx, cfg.Name); err == nil && sameSettings(s.CachedInfo().Config, cfg) {
			return nil
		}
		s, err = js.CreateOrUpdateStream(ctx, cfg)
		return err
	})
	return s, err
}

// KVStream is the stream of a KV bucket as nats.go makes one of history
// history, without roll-ups and with purges denied: for buckets whose
// stream Leadflow makes itself, so that KeyValue and `nats kv` read them
// while nobody can erase them with a roll-up or a purge. Callers set what
// else their bucket needs.
func KVStream(bucket, description string, history int64, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              "KV_" + bucket,
		Description:       description,
		Subjects:          []string{"$KV." + bucket + ".>"},
		MaxMsgsPerSubject: history,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		MaxConsumers:      -1,
		Storage:           jetstream.FileStorage,
		Replicas:          max(replicas, 1),
		Discard:           jetstream.DiscardNew,
		Duplicates:        2 * time.Minute,
		DenyPurge:         true,
		AllowDirect:       true,
	}
}

// EnsureKeyValue opens the bucket cfg names, or creates it when it is
// missing. An existing bucket is left as it is: looking it up is all a
// service's NATS user may do. It retries as Ensure does.
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	ctx, cancel := WithSetupTimeout(ctx)
	defer cancel()
	var kv jetstream.KeyValue
	err := Setup(ctx, nil, func(ctx context.Context) (err error) {
		if kv, err = js.KeyValue(ctx, cfg.Bucket); !errors.Is(err, jetstream.ErrBucketNotFound) {
			return err
		}
		if kv, err = js.CreateKeyValue(ctx, cfg); errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, cfg.Bucket) // made by another process meanwhile
		}
		return err
	})
	return kv, err
}

// sameSettings compares what Leadflow sets on its streams; the server fills
// in the rest. Settings Leadflow never sets must be absent: a republish, a
// source, a mirror or a subject transform would copy or move what a stream
// stores past every user's permissions, so a stream that has one was
// changed behind Leadflow's back and is put right (provisioning), or
// refused (a service, which may not update it).
func sameSettings(have, want jetstream.StreamConfig) bool {
	noLimit := func(n int64) int64 { return max(n, 0) } // 0 and -1 both mean none
	return have.RePublish == nil && have.Mirror == nil && len(have.Sources) == 0 && have.SubjectTransform == nil &&
		// Interest or work-queue retention removes what consumers acked,
		// DenyDelete or not.
		have.Retention == want.Retention && have.Sealed == want.Sealed && have.NoAck == want.NoAck &&
		have.MaxAge == want.MaxAge &&
		noLimit(have.MaxMsgs) == noLimit(want.MaxMsgs) &&
		noLimit(have.MaxBytes) == noLimit(want.MaxBytes) &&
		have.AllowRollup == want.AllowRollup &&
		slices.Equal(have.Subjects, want.Subjects) &&
		have.Description == want.Description &&
		have.Storage == want.Storage &&
		have.Replicas == max(want.Replicas, 1) &&
		(want.Duplicates == 0 || have.Duplicates == want.Duplicates) &&
		(have.MaxMsgsPerSubject == want.MaxMsgsPerSubject || want.MaxMsgsPerSubject == 0 && have.MaxMsgsPerSubject == -1) &&
		have.Discard == want.Discard &&
		have.DiscardNewPerSubject == want.DiscardNewPerSubject &&
		have.DenyDelete == want.DenyDelete &&
		have.DenyPurge == want.DenyPurge &&
		have.AllowDirect == want.AllowDirect &&
		have.AllowAtomicPublish == want.AllowAtomicPublish &&
		have.AllowMsgSchedules == want.AllowMsgSchedules &&
		have.AllowMsgTTL == want.AllowMsgTTL
}

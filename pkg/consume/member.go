package consume

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

// ensureMembers opens the bucket of live members or creates it. A member's
// key lives memberTTL after its last renewal, so a killed replica drops out
// of every group within that time.
func ensureMembers(ctx context.Context, js jetstream.JetStream, name string, replicas int) (jetstream.KeyValue, error) {
	kv, err := eventstore.EnsureKeyValue(ctx, js, membersConfig(name, replicas))
	if err != nil {
		return nil, fmt.Errorf("consume: members bucket %s: %w", name, err)
	}
	return kv, nil
}

func membersConfig(name string, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      name,
		Description: "live members of Leadflow consumer groups (pkg/consume)",
		TTL:         memberTTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	}
}

func newMemberID() string { return strings.ReplaceAll(uuid.NewString(), "-", "") }

func memberKey(group, id string) string { return group + "." + id }

// Members counts group's live members in the bucket (Config.Members): a
// member renews its key every second, a clean stop removes it, and a
// killed member's expires after memberTTL. No bucket: none ever ran.
func Members(ctx context.Context, js jetstream.JetStream, bucket, group string) (int, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("consume: members bucket %s: %w", bucket, err)
	}
	l, err := kv.ListKeysFiltered(ctx, memberKey(group, "*"))
	if err != nil {
		return 0, fmt.Errorf("consume: members of %s: %w", group, err)
	}
	n := 0
	for range l.Keys() {
		n++
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("consume: members of %s: %w", group, err)
	}
	return n, nil
}

// renew announces this member and returns the group's live members, itself
// included, sorted.
func (r *runner) renew(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	if _, err := r.members.Put(ctx, memberKey(r.cfg.Group, r.id), nil); err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) {
			// The bucket is gone (deleted by hand): make it again.
			if kv, kerr := ensureMembers(ctx, r.js, r.cfg.Members, 1); kerr == nil {
				r.members = kv
			}
		}
		return nil, fmt.Errorf("consume: renew member: %w", err)
	}
	lister, err := r.members.ListKeysFiltered(ctx, memberKey(r.cfg.Group, "*"))
	if err != nil {
		return nil, fmt.Errorf("consume: list members: %w", err)
	}
	live := []string{r.id}
	for k := range lister.Keys() {
		if id, ok := strings.CutPrefix(k, r.cfg.Group+"."); ok && id != r.id {
			live = append(live, id)
		}
	}
	if err := ctx.Err(); err != nil {
		// The list ends without an error when ctx does: it may be cut short.
		return nil, fmt.Errorf("consume: list members: %w", err)
	}
	slices.Sort(live)
	return live, nil
}

// leave removes this member's key so the others take its partitions at once.
func (r *runner) leave() {
	ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	_ = r.members.Purge(ctx, memberKey(r.cfg.Group, r.id))
}

// owner is the member that rendezvous hashing gives partition p: every
// member computes the same answer from the same list, and when a member
// joins or leaves only the partitions it wins or held move.
func owner(members []string, p int) string {
	var best string
	var top uint64
	for _, m := range members {
		h := fnv.New64a()
		h.Write([]byte(m))
		h.Write([]byte{'/'})
		h.Write(strconv.AppendInt(nil, int64(p), 10))
		if s := mix(h.Sum64()); best == "" || s > top {
			best, top = m, s
		}
	}
	return best
}

// mix is splitmix64's finalizer: FNV of near-identical strings differs in
// few bits, and rendezvous hashing needs every bit to count.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// Package vault encrypts a lead's personal data with a per-lead data key
// (DEK) kept outside the event stream, in a JetStream key-value bucket, so
// that erasing a lead is destroying its key ("crypto-shredding"): the
// append-only history stays replayable while the personal fields in it become
// unreadable. It also computes blind indexes, keyed hashes that let services
// look a lead up by email or external id without any plaintext identity
// reaching a stream or a subject.
//
// A DEK is stored wrapped (AES-256-GCM under the master key, its name as
// additional data) under "<lead id>.<key id>" as KV key; a lead may have
// several, and sealed data names the one it was sealed with. Shred writes a
// purge marker under the bare lead id and then overwrites every stored key
// of the lead on disk: the KV stream then holds only the marker, which is
// how Open tells a destroyed key (ErrShredded) from one that never existed
// (ErrNoKey), and which every Vault watches to evict the lead's keys from
// its cache.
package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/leadflow/leadflow/pkg/deadline"
	"github.com/leadflow/leadflow/pkg/eventstore"
)

// Errors callers branch on. They are returned wrapped, with the lead id in the
// message; test with errors.Is.
var (
	// ErrShredded means the lead's key was destroyed by Shred: its sealed data
	// can never be opened again.
	ErrShredded = errors.New("vault: key shredded")
	// ErrNoKey means no key was ever saved for the lead.
	ErrNoKey = errors.New("vault: no key")
	// ErrKeyExists means Save found the lead's only key, stored before key
	// ids, so it takes no other.
	ErrKeyExists = errors.New("vault: key exists")
	// ErrCorrupt means sealed data (or a stored key) failed authentication or
	// is malformed: it was tampered with, truncated, or belongs to another
	// lead.
	ErrCorrupt = errors.New("vault: corrupt data")
)

const (
	defaultCacheSize = 100_000
	// defaultTimeout matches nats.go's own default for API calls made with a
	// context that has no deadline.
	defaultTimeout = 5 * time.Second
	keySize        = 32

	// KV marks deleted and purged keys with this header; nats.go keeps the
	// constant unexported.
	kvOperationHeader = "KV-Operation"
	kvPurge           = "PURGE"
)

// Config sets up a Vault. MasterKey is required; BlindKey only where
// identities are blinded (intake): a vault without it seals and opens.
type Config struct {
	// Bucket is the KV bucket holding the wrapped keys, default "LEADFLOW_KEYS".
	Bucket string
	// Replicas of the bucket's stream, default 1.
	Replicas int
	// MasterKey is the 32-byte key-encryption key. DEKs are stored wrapped
	// with it (AES-256-GCM, additional data = lead id).
	MasterKey []byte
	// ReadMasterKeys are more 32-byte master keys that stored keys may be
	// wrapped with: they unwrap, never wrap. They carry a rotation (see
	// Rewrap and the package README).
	ReadMasterKeys [][]byte
	// BlindKey is the 32-byte HMAC-SHA256 key for Blind. It must differ from
	// MasterKey. Empty, Blind and BlindID panic: a service that only reads
	// and seals is not given a key it cannot rotate.
	BlindKey []byte
	// CacheSize is how many unwrapped DEKs are kept in memory (least recently
	// used first out), default 100_000.
	CacheSize int
}

// Vault stores, caches and destroys per-lead data keys. It is safe for
// concurrent use.
type Vault struct {
	js         jetstream.JetStream
	stream     jetstream.Stream // the bucket's stream, read directly (see load)
	name       string           // the stream's name
	prefix     string           // "$KV.<bucket>."
	master     cipher.AEAD
	readOnly   []cipher.AEAD // ReadMasterKeys
	blindKey   []byte
	cache      *cache
	watch      jetstream.ConsumeContext
	blocks     blocks     // keys stored ahead, for Take
	blockCache blockCache // blocks Open read
	// unseen, set by tests, hides subjects from direct reads, as a replica
	// behind the leader would.
	unseen func(subject string) bool
}

// New creates the KV bucket, or updates it to this configuration when it
// exists (file storage, history 2, message deletes allowed), and returns a
// Vault using it. It returns an error naming the field when a key has the
// wrong length.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Vault, error) {
	if len(cfg.MasterKey) != keySize {
		return nil, fmt.Errorf("vault: MasterKey must be %d bytes, got %d", keySize, len(cfg.MasterKey))
	}
	if len(cfg.BlindKey) != keySize && len(cfg.BlindKey) != 0 {
		return nil, fmt.Errorf("vault: BlindKey must be %d bytes, got %d", keySize, len(cfg.BlindKey))
	}
	// One key for two jobs would let a blind index leak through the other.
	if subtle.ConstantTimeCompare(cfg.MasterKey, cfg.BlindKey) == 1 {
		return nil, errors.New("vault: BlindKey must differ from MasterKey")
	}
	var readOnly []cipher.AEAD
	for i, k := range cfg.ReadMasterKeys {
		if len(k) != keySize {
			return nil, fmt.Errorf("vault: ReadMasterKeys[%d] must be %d bytes, got %d", i, keySize, len(k))
		}
		if subtle.ConstantTimeCompare(k, cfg.BlindKey) == 1 {
			return nil, fmt.Errorf("vault: ReadMasterKeys[%d] must differ from BlindKey", i)
		}
		aead, err := newAEAD(k)
		if err != nil {
			return nil, fmt.Errorf("vault: ReadMasterKeys[%d]: %w", i, err)
		}
		readOnly = append(readOnly, aead)
	}
	if cfg.Replicas < 0 {
		return nil, fmt.Errorf("vault: Replicas must not be negative, got %d", cfg.Replicas)
	}
	if cfg.CacheSize < 0 {
		return nil, fmt.Errorf("vault: CacheSize must not be negative, got %d", cfg.CacheSize)
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if !validBucket(cfg.Bucket) {
		return nil, fmt.Errorf("vault: Bucket %q may hold only letters, digits, '-' and '_'", cfg.Bucket)
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = defaultCacheSize
	}

	master, err := newAEAD(cfg.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("vault: MasterKey: %w", err)
	}

	stream, err := EnsureBucket(ctx, js, cfg.Bucket, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	v := &Vault{
		js:       js,
		stream:   stream,
		name:     "KV_" + cfg.Bucket,
		prefix:   "$KV." + cfg.Bucket + ".",
		master:   master,
		readOnly: readOnly,
		blindKey: append([]byte(nil), cfg.BlindKey...),
		cache:    newCache(cfg.CacheSize),
	}
	if err := eventstore.Setup(ctx, nil, v.watchShreds); err != nil {
		return nil, fmt.Errorf("vault: watch bucket %s: %w", cfg.Bucket, err)
	}
	return v, nil
}

// watchShreds evicts a key from the cache as soon as any process shreds
// it: an ordered consumer of the bucket's new messages under bare lead ids
// (purge markers; keys have a key id after the lead id), headers only,
// sees every purge marker within a round trip. It starts after the
// bucket's last message by sequence, not "new": the client recreates an
// ordered consumer that has delivered nothing yet with its first policy,
// so after a reconnect "new" would skip the markers written meanwhile.
// The cache's epoch keeps a key loaded just before an eviction from being
// cached just after it.
func (v *Vault) watchShreds(ctx context.Context) error {
	info, err := v.stream.Info(ctx)
	if err != nil {
		return err
	}
	cons, err := v.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{v.prefix + "*"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    info.State.LastSeq + 1,
		HeadersOnly:    true,
	})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if isMarker(m.Headers()) {
			v.cache.remove(strings.TrimPrefix(m.Subject(), v.prefix))
		}
	})
	if err != nil {
		return err
	}
	v.watch = cc
	return nil
}

// Close stops watching the bucket for shredded keys. Open, Key and Shred
// keep working, but a key shredded by another process may then stay in
// this one's cache.
func (v *Vault) Close() {
	v.watch.Stop()
}

// Save stores the keys, wrapped, and waits until the server has
// acknowledged every one; the stored keys are then cached, each as its
// lead's key to seal with next. Keys are published asynchronously, so
// saving many at once costs about one round trip.
//
// A key made by NewKey is stored under its own name (Key.ID) on condition
// that the lead was never shredded, so a shredded lead never gets a new
// key however Save and Shred race; a lead may have any number of them.
// Saving a key that is already stored succeeds, so a Save that timed out
// can be retried. Otherwise each key that could not be stored gives an
// error naming its lead and wrapping ErrShredded (the lead was shredded;
// its id cannot get a new key) or ErrKeyExists (the lead has a key of the
// first format, stored under its id, which is its only one). The errors
// are joined; keys without an error were stored.
func (v *Vault) Save(ctx context.Context, keys ...*Key) error {
	if len(keys) == 0 {
		return nil
	}
	for i, k := range keys {
		if k == nil {
			return fmt.Errorf("vault: save: key %d is nil", i)
		}
	}
	// Publishing does not watch ctx; only the wait for acks does.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("vault: save: %w", err)
	}
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	due, _ := ctx.Deadline()
	epoch := v.cache.currentEpoch()

	var errs []error
	futures := make([]jetstream.PubAckFuture, 0, len(keys))
	published := make([]*Key, 0, len(keys))
	var inBlocks []*Key
	for _, k := range keys {
		if isBlockKid(k.kid) {
			inBlocks = append(inBlocks, k) // stored with its block
			continue
		}
		msg := &nats.Msg{Subject: v.prefix + k.ID(), Data: v.wrap(k)}
		// When the connection's window of unacknowledged publishes is full,
		// wait for room until the deadline rather than 200 ms.
		opts := []jetstream.PublishOpt{jetstream.WithStallWait(time.Until(due))}
		if k.kid == "" {
			// Last sequence 0 for the subject: create-only. Unlike
			// KeyValue.Create, it also refuses a key whose last message is a
			// purge marker, so a shredded lead never gets a new key.
			opts = append(opts, jetstream.WithExpectLastSequencePerSubject(0))
		} else {
			// Nothing under the lead's own id: no purge marker (and no key
			// of the first format). The message id makes a retry within the
			// duplicates window a no-op.
			opts = append(opts, jetstream.WithExpectLastSequenceForSubject(0, v.prefix+k.leadID), jetstream.WithMsgID(k.ID()))
		}
		f, err := v.js.PublishMsgAsync(msg, opts...)
		if err != nil {
			errs = append(errs, fmt.Errorf("vault: save key for lead %s (and the keys after it): %w", k.leadID, err))
			break
		}
		futures, published = append(futures, f), append(published, k)
	}

	saved := make([]*Key, 0, len(futures)+len(inBlocks))
	saved = append(saved, inBlocks...)
wait:
	for i, f := range futures {
		k := published[i]
		select {
		case <-f.Ok():
			saved = append(saved, k)
		case err := <-f.Err():
			if err = v.saveFailed(ctx, k, err); err != nil {
				errs = append(errs, err)
			} else {
				saved = append(saved, k)
			}
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("vault: save: %d of %d keys unacknowledged: %w",
				len(futures)-i, len(keys), ctx.Err()))
			break wait
		}
	}
	v.cache.addKeys(epoch, saved)
	return errors.Join(errs...)
}

// saveFailed turns the error of one key's publish into the error Save
// reports, or nil when the very same key is already stored.
func (v *Vault) saveFailed(ctx context.Context, k *Key, err error) error {
	if !eventstore.IsWrongLastSequence(err) {
		return fmt.Errorf("vault: save key for lead %s: %w", k.leadID, err)
	}
	// The checked subject has a message: for a key of the first format
	// this key (a retried or repeated Save), another key, or a purge
	// marker; for a key made by NewKey a purge marker or a key of the
	// first format.
	dek, lerr := v.load(ctx, k.leadID, k.leadID)
	switch {
	case errors.Is(lerr, ErrShredded):
		return fmt.Errorf("vault: save key for lead %s: %w", k.leadID, ErrShredded)
	case lerr != nil:
		return fmt.Errorf("vault: save key for lead %s: %w (and checking the stored key: %w)", k.leadID, ErrKeyExists, lerr)
	}
	same := k.kid == "" && subtle.ConstantTimeCompare(dek[:], k.dek[:]) == 1
	clear(dek[:])
	if same {
		return nil
	}
	return fmt.Errorf("vault: save key for lead %s: %w", k.leadID, ErrKeyExists)
}

// Open decrypts data sealed by one of the lead's keys, from the cache or
// else loaded from the bucket. It returns an error wrapping ErrShredded when
// the lead's keys were destroyed, ErrNoKey when the key that sealed it is not
// one of the lead's (never saved, or the data was sealed for another lead),
// and ErrCorrupt when the data was tampered with or is truncated.
func (v *Vault) Open(ctx context.Context, leadID string, sealed []byte) ([]byte, error) {
	_, dek, err := v.sealedDEK(ctx, leadID, sealed)
	if err != nil {
		return nil, err
	}
	plain, err := openSealed(&dek, leadID, sealed)
	clear(dek[:])
	if err != nil {
		return nil, fmt.Errorf("vault: open for lead %s: %w", leadID, err)
	}
	return plain, nil
}

// OpenVia opens data stored on leadID's events that came through via, a
// lead merged into it (an event's merged_from; "" for its own): sealed
// with via's key and under its id since 2026-12-05, so via's erasure
// reaches it, and with leadID's before, which is tried when via's does not
// open it (once via is erased, such older data reads as shredded).
func (v *Vault) OpenVia(ctx context.Context, leadID, via string, sealed []byte) ([]byte, error) {
	if via == "" || via == leadID {
		return v.Open(ctx, leadID, sealed)
	}
	plain, err := v.Open(ctx, via, sealed)
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNoKey) {
		return v.Open(ctx, leadID, sealed)
	}
	return plain, err
}

// sealedDEK returns the id and the unwrapped key that sealed data of the
// lead names. The caller clears the key when done.
func (v *Vault) sealedDEK(ctx context.Context, leadID string, sealed []byte) (string, [keySize]byte, error) {
	var dek [keySize]byte
	if err := checkLeadID(leadID); err != nil {
		return "", dek, err
	}
	kid, err := sealedKeyID(sealed)
	if err != nil {
		return "", dek, fmt.Errorf("vault: open for lead %s: %w", leadID, err)
	}
	dek, err = v.dek(ctx, leadID, keyID(leadID, kid))
	return kid, dek, err
}

// dek returns one of the lead's unwrapped keys, by key id, from the cache,
// or loads and caches it. The caller clears its copy when done.
func (v *Vault) dek(ctx context.Context, leadID, id string) ([keySize]byte, error) {
	if dek, ok := v.cache.get(id); ok {
		return dek, nil
	}
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	epoch := v.cache.currentEpoch()
	dek, err := v.load(ctx, leadID, id)
	if err != nil {
		return dek, err
	}
	v.cache.add(epoch, leadID, id, &dek, false)
	return dek, nil
}

// load reads and unwraps one of the lead's stored keys, in one request with
// the lead's own subject. It reads the subjects' last messages from the
// stream, because KeyValue.Get reports a purged key as ErrKeyNotFound,
// exactly like one that never existed.
func (v *Vault) load(ctx context.Context, leadID, id string) ([keySize]byte, error) {
	if kid := kidOf(leadID, id); isBlockKid(kid) {
		return v.loadBlockKey(ctx, leadID, kid)
	}
	var dek [keySize]byte
	subjects := []string{v.prefix + leadID}
	if id != leadID {
		subjects = append(subjects, v.prefix+id)
	}
	last, err := v.lastMsgsSure(ctx, v.prefix+id, subjects...)
	if err != nil {
		return dek, fmt.Errorf("vault: load key for lead %s: %w", leadID, err)
	}
	if m, ok := last[v.prefix+leadID]; ok && isMarker(m.Header) {
		return dek, fmt.Errorf("vault: lead %s: %w", leadID, ErrShredded)
	}
	m, ok := last[v.prefix+id]
	if !ok {
		return dek, fmt.Errorf("vault: lead %s: %w", leadID, ErrNoKey)
	}
	if err := v.unwrap(&dek, id, m.Data); err != nil {
		return dek, fmt.Errorf("vault: stored key for lead %s (wrong MasterKey?): %w", leadID, err)
	}
	return dek, nil
}

// sealingKey is the key the lead's data is sealed with next: its key of
// the first format if it has one, else the one saved last.
func (v *Vault) sealingKey(ctx context.Context, leadID string) (string, [keySize]byte, error) {
	var dek [keySize]byte
	if id, dek, ok := v.cache.sealingKey(leadID); ok {
		return kidOf(leadID, id), dek, nil
	}
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	epoch := v.cache.currentEpoch()
	own := v.prefix + leadID
	last, err := v.lastMsgs(ctx, own, own+".>")
	if err != nil {
		return "", dek, fmt.Errorf("vault: load key for lead %s: %w", leadID, err)
	}
	var pick *jetstream.RawStreamMsg
	for subj, m := range last {
		switch {
		case subj == own && isMarker(m.Header):
			return "", dek, fmt.Errorf("vault: lead %s: %w", leadID, ErrShredded)
		case subj == own:
			pick = m
		case pick == nil || (pick.Subject != own && m.Sequence > pick.Sequence):
			pick = m
		}
	}
	if pick == nil {
		return "", dek, fmt.Errorf("vault: lead %s: %w", leadID, ErrNoKey)
	}
	id := strings.TrimPrefix(pick.Subject, v.prefix)
	if err := v.unwrap(&dek, id, pick.Data); err != nil {
		return "", dek, fmt.Errorf("vault: stored key for lead %s (wrong MasterKey?): %w", leadID, err)
	}
	v.cache.add(epoch, leadID, id, &dek, true)
	return kidOf(leadID, id), dek, nil
}

func kidOf(leadID, id string) string {
	return strings.TrimPrefix(strings.TrimPrefix(id, leadID), ".")
}

// lastMsgs returns the last message of each subject (filters allowed)
// that has one, in one request.
func (v *Vault) lastMsgs(ctx context.Context, subjects ...string) (map[string]*jetstream.RawStreamMsg, error) {
	it, err := jetstreamext.GetLastMsgsFor(ctx, v.js, v.name, subjects)
	if err != nil {
		return nil, err
	}
	out := map[string]*jetstream.RawStreamMsg{}
	for m, err := range it {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			break
		}
		if err != nil {
			return nil, err
		}
		if v.unseen == nil || !v.unseen(m.Subject) {
			out[m.Subject] = m
		}
	}
	return out, nil
}

// lastMsgsSure is lastMsgs, with the subjects asked again of the stream's
// leader when key, one of them, is missing: any replica answers a direct
// get, and one behind the leader misses a key stored a moment ago, which
// would read as never stored (an erasure would skip what it sealed, an
// export leave it out). A key is stored before anything it seals, so a
// miss is rare and worth the leader's gets.
func (v *Vault) lastMsgsSure(ctx context.Context, key string, subjects ...string) (map[string]*jetstream.RawStreamMsg, error) {
	last, err := v.lastMsgs(ctx, subjects...)
	if _, ok := last[key]; ok || err != nil {
		return last, err
	}
	for _, s := range subjects {
		m, err := eventstore.LeaderLast(ctx, v.js, v.name, s)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return nil, err
		default:
			last[s] = m
		}
	}
	return last, nil
}

// Shred destroys the lead's keys and evicts them from the cache, zeroed:
// the keys stored under its id, and the keys from blocks named by keyIDs
// (SealedKeyID of everything stored for the lead; other ids are ignored).
// Data sealed for the lead can no longer be opened, here or by any other
// Vault on the bucket once its own cache no longer holds the key (see
// README). Shredding a lead twice, or a lead that never had a key,
// succeeds; either way the lead id can never get a key of its own
// afterwards.
//
// The stored key is overwritten on disk, not only marked deleted (see
// README). After an error, call Shred again: the lead may already read as
// shredded while its wrapped key is still on disk.
func (v *Vault) Shred(ctx context.Context, leadID string, keyIDs ...string) error {
	if err := checkLeadID(leadID); err != nil {
		return err
	}
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	err := v.shred(ctx, leadID)
	for _, kid := range keyIDs {
		if err == nil && isBlockKid(kid) {
			err = v.shredSlot(ctx, kid)
		}
	}
	// Evict after the purge, whatever its outcome: an Open that loaded the
	// key before the purge landed must not cache it afterwards, which the
	// cache's epoch prevents.
	v.cache.remove(leadID)
	if err != nil {
		return fmt.Errorf("vault: shred lead %s: %w", leadID, err)
	}
	return nil
}

// shred writes the purge marker first and erases the values second, so that
// Open never sees a lead between "has a key" and "shredded", and a Shred cut
// short leaves a shredded lead whose values the next Shred erases.
func (v *Vault) shred(ctx context.Context, leadID string) error {
	subject := v.prefix + leadID
	valueSeq, found, err := v.markPurged(ctx, subject)
	if err != nil {
		return err
	}
	if !found {
		// The marker was there already: this Shred retries one cut short,
		// or races another. Look for a value left before the marker (at
		// most one: history 2 holds the value and the marker).
		m, err := v.stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject))
		if err != nil {
			return fmt.Errorf("read key: %w", err)
		}
		if !isMarker(m.Header) {
			valueSeq = m.Sequence
		}
	}
	seqs, err := v.keySeqs(ctx, subject+".>")
	if err != nil {
		return err
	}
	if valueSeq != 0 {
		seqs = append(seqs, valueSeq)
	}
	for _, seq := range seqs {
		if err := v.erase(ctx, seq); err != nil {
			return err
		}
	}
	return nil
}

// keySeqs lists the sequences of every message on the filter: the keys
// made by NewKey of one lead. A Save racing the marker either failed its
// check or was stored before it, so it is in this list.
func (v *Vault) keySeqs(ctx context.Context, filter string) ([]uint64, error) {
	var seqs []uint64
	for from := uint64(1); ; {
		it, err := jetstreamext.GetBatch(ctx, v.js, v.name, 256, jetstreamext.GetBatchSubject(filter), jetstreamext.GetBatchSeq(from))
		if err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		more := false
		for m, err := range it {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("list keys: %w", err)
			}
			seqs = append(seqs, m.Sequence)
			from = m.Sequence + 1
			more = m.Header.Get("Nats-Num-Pending") != "0"
		}
		if !more {
			return seqs, nil
		}
	}
}

// markPurged makes a purge marker the subject's last message. When it writes
// the marker, found is true and valueSeq is the sequence of the value the
// marker follows, 0 if none; when a marker was there already, found is false.
func (v *Vault) markPurged(ctx context.Context, subject string) (valueSeq uint64, found bool, err error) {
	for {
		var expect uint64 // 0: the subject has no message yet
		last, err := v.stream.GetLastMsgForSubject(ctx, subject)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return 0, false, fmt.Errorf("read key: %w", err)
		case isMarker(last.Header):
			return 0, false, nil
		default:
			expect = last.Sequence
			// An older version (a rewrap cut short leaves the key under
			// the old master key beside the new one) is erased first: the
			// marker makes three, and the history limit would drop the
			// oldest the ordinary way, leaving its bytes on disk.
			if err := v.eraseBefore(ctx, subject, last.Sequence); err != nil {
				return 0, false, err
			}
		}
		// A purge marker as KeyValue.Purge writes it, but without its
		// Nats-Rollup header: a roll-up would drop the value the ordinary
		// way, which leaves its bytes in the block file until the block is
		// compacted, possibly never, for anyone holding that file and the
		// master key. The expected sequence orders the marker against a
		// racing Save or Shred: whichever comes second sees the other.
		marker := &nats.Msg{Subject: subject, Header: nats.Header{kvOperationHeader: []string{kvPurge}}}
		_, err = v.js.PublishMsg(ctx, marker, jetstream.WithExpectLastSequencePerSubject(expect))
		if err == nil {
			return expect, true, nil
		}
		if !eventstore.IsWrongLastSequence(err) {
			return 0, false, fmt.Errorf("mark key purged: %w", err)
		}
	}
}

// isMarker reports whether a bucket message marks its key deleted rather than
// holding a value: KV-Operation PURGE (Shred, KeyValue.Purge) or DEL
// (KeyValue.Delete), or Nats-Marker-Reason on a marker the server wrote.
func isMarker(h nats.Header) bool {
	return h.Get(kvOperationHeader) != "" || h.Get(jetstream.MarkerReasonHeader) != ""
}

// wrap encrypts the key's DEK with the master key:
// version | nonce | ciphertext+tag, additional data = the key's name (its
// lead id, and its key id when it has one), so that a wrapped key does not
// unwrap under another name.
func (v *Vault) wrap(k *Key) []byte {
	return seal(v.master, k.ID(), k.dek[:])
}

// unwrap decrypts a wrapped DEK stored under the name id into dek.
func (v *Vault) unwrap(dek *[keySize]byte, id string, wrapped []byte) error {
	plain, _, err := v.unwrapAny(id, wrapped)
	if err != nil {
		return err
	}
	if len(plain) != keySize {
		clear(plain)
		return fmt.Errorf("%w: unwrapped key is %d bytes", ErrCorrupt, len(plain))
	}
	copy(dek[:], plain)
	clear(plain)
	return nil
}

// unwrapAny opens a value the vault stored under name, wrapped with the
// master key or one of the read master keys; current says which.
func (v *Vault) unwrapAny(name string, wrapped []byte) (plain []byte, current bool, err error) {
	if err := checkSealed(wrapped); err != nil {
		return nil, false, err
	}
	plain, err = open(v.master, name, wrapped)
	if err == nil {
		return plain, true, nil
	}
	for _, k := range v.readOnly {
		if p, rerr := open(k, name, wrapped); rerr == nil {
			return p, false, nil
		}
	}
	return nil, false, err
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func validBucket(b string) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return b != ""
}

// checkLeadID accepts what JetStream accepts as one token of a KV key, so
// that a lead id never becomes a wildcard, an empty token or more than one
// token in a subject (a key's name is the lead id, a dot and its key id).
func checkLeadID(id string) error {
	bad := id == "" || id == blockToken
	for i := 0; !bad && i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '/', c == '_', c == '=':
		default:
			bad = true
		}
	}
	if bad {
		return fmt.Errorf("vault: lead id %q is not a valid KV key", id)
	}
	return nil
}

// DefaultBucket is the key bucket New uses when Config.Bucket is empty.
const DefaultBucket = "LEADFLOW_KEYS"

// EnsureBucket makes the key bucket's stream, or brings one made before
// to these settings; a bucket already as wanted is only looked up, which
// is all a service's NATS user may do (pkg/provision makes it in
// production).
func EnsureBucket(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (jetstream.Stream, error) {
	// Setup waits out a cluster electing leaders (eventstore.Setup).
	ctx, cancel := eventstore.WithSetupTimeout(ctx)
	defer cancel()
	// The bucket's stream is created here rather than by
	// CreateOrUpdateKeyValue, which always sets DenyDelete: Shred needs the
	// message-delete API to overwrite a wrapped key on disk (see shred). The
	// rest is what nats.go sets for a KV bucket, so KeyValue and `nats kv`
	// can read it, except that purges are denied (for good: the server never
	// lets a stream take DenyPurge back): a stream purge or a KV
	// PurgeDeletes would erase every lead's data, or turn shredded leads
	// into unknown ones. Hence no roll-ups either, which need the purge
	// permission; KeyValue.Purge fails on this bucket, Shred is the way.
	// History 2: a key is written once, then Shred writes its purge
	// marker beside it before erasing it (see shred).
	stream, err := eventstore.Ensure(ctx, js,
		eventstore.KVStream(bucket, "Leadflow per-lead data keys, wrapped; a purged key is a shredded lead", 2, replicas))
	if err != nil {
		return nil, fmt.Errorf("vault: create bucket %s: %w", bucket, err)
	}
	return stream, nil
}

package vault_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/pkg/vault"
)

const bucket = "LEADFLOW_KEYS"

var (
	masterKey = bytes.Repeat([]byte{0x11}, 32)
	blindKey  = bytes.Repeat([]byte{0x22}, 32)
)

func newVault(t testing.TB, js jetstream.JetStream) *vault.Vault {
	t.Helper()
	v, err := vault.New(t.Context(), js, vault.Config{MasterKey: masterKey, BlindKey: blindKey})
	if err != nil {
		t.Fatalf("new vault: %v", err)
	}
	return v
}

// newLeadID returns a random UUID string, the shape of real lead ids.
func newLeadID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func newKey(t testing.TB, v *vault.Vault) *vault.Key {
	t.Helper()
	k, err := v.NewKey(newLeadID())
	if err != nil {
		t.Fatalf("new key: %v", err)
	}
	return k
}

func seal(t testing.TB, k *vault.Key, plaintext string) []byte {
	t.Helper()
	sealed, err := k.Seal([]byte(plaintext))
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	return sealed
}

func save(t testing.TB, v *vault.Vault, keys ...*vault.Key) {
	t.Helper()
	if err := v.Save(t.Context(), keys...); err != nil {
		t.Fatalf("save: %v", err)
	}
}

func mustOpen(t testing.TB, v *vault.Vault, leadID string, sealed []byte, want string) {
	t.Helper()
	got, err := v.Open(t.Context(), leadID, sealed)
	if err != nil {
		t.Fatalf("open lead %s: %v", leadID, err)
	}
	if string(got) != want {
		t.Fatalf("open lead %s = %q, want %q", leadID, got, want)
	}
}

func openErr(t testing.TB, v *vault.Vault, leadID string, sealed []byte, want error) {
	t.Helper()
	got, err := v.Open(t.Context(), leadID, sealed)
	if !errors.Is(err, want) {
		t.Fatalf("open lead %s = %q, %v; want error %v", leadID, got, err, want)
	}
}

// storedValue reads a key's KV entry (by Key.ID) as the server holds it.
func storedValue(t testing.TB, js jetstream.JetStream, id string) []byte {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), bucket)
	if err != nil {
		t.Fatalf("key value: %v", err)
	}
	e, err := kv.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("kv get %s: %v", id, err)
	}
	return e.Value()
}

// streamMessages reads every message left in the bucket's stream.
func streamMessages(t testing.TB, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(t.Context(), "KV_"+bucket)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("get msg %d: %v", seq, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func TestSealOpenRoundTrip(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	k := newKey(t, v)
	const email = "alice@example.com"

	a, b := seal(t, k, email), seal(t, k, email)
	if bytes.Equal(a, b) {
		t.Fatal("sealing the same plaintext twice gave the same bytes")
	}
	for _, s := range [][]byte{a, b} {
		if bytes.Contains(s, []byte(email)) {
			t.Fatalf("sealed bytes contain the plaintext: %q", s)
		}
		if len(s) != 1+8+12+len(email)+16 || s[0] != 2 {
			t.Fatalf("sealed length %d, version %d; want version 2+key id+nonce+%d+tag", len(s), s[0], len(email))
		}
	}
	empty := seal(t, k, "")

	save(t, v, k)
	mustOpen(t, v, k.LeadID(), a, email)
	mustOpen(t, v, k.LeadID(), b, email)
	mustOpen(t, v, k.LeadID(), empty, "")
	// From the bucket, not the cache.
	mustOpen(t, newVault(t, n.JS), k.LeadID(), a, email)
}

func TestOpenRejectsTamperedOrForeignData(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	alice, bob := newKey(t, v), newKey(t, v)
	save(t, v, alice, bob)
	sealed := seal(t, alice, "alice@example.com")

	flipped := func(i int) []byte {
		c := bytes.Clone(sealed)
		c[i] ^= 1
		return c
	}
	tests := []struct {
		name   string
		leadID string
		sealed []byte
		want   error
	}{
		// Its key id names no key of another lead, nor a changed one.
		{"another lead's id", bob.LeadID(), sealed, vault.ErrNoKey},
		{"key id", alice.LeadID(), flipped(1), vault.ErrNoKey},
		{"version byte", alice.LeadID(), append([]byte{9}, sealed[1:]...), vault.ErrCorrupt},
		{"nonce", alice.LeadID(), flipped(9), vault.ErrCorrupt},
		{"ciphertext", alice.LeadID(), flipped(22), vault.ErrCorrupt},
		{"tag", alice.LeadID(), flipped(len(sealed) - 1), vault.ErrCorrupt},
		{"truncated", alice.LeadID(), sealed[:len(sealed)-1], vault.ErrCorrupt},
		{"too short", alice.LeadID(), sealed[:20], vault.ErrCorrupt},
		{"empty", alice.LeadID(), nil, vault.ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			openErr(t, v, tt.leadID, tt.sealed, tt.want)
			openErr(t, newVault(t, n.JS), tt.leadID, tt.sealed, tt.want)
		})
	}
	mustOpen(t, v, alice.LeadID(), sealed, "alice@example.com")
}

// A lead may have many keys (each capture can make one without asking
// which exist): each opens what it sealed, Key seals with the one saved
// last, and a repeated Save is a retry, not a conflict.
func TestSaveKeepsEveryKeyOfALead(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	first := newKey(t, v)
	sealed := seal(t, first, "alice@example.com")
	save(t, v, first)
	save(t, v, first)

	second, err := v.NewKey(first.LeadID())
	if err != nil {
		t.Fatal(err)
	}
	if second.ID() == first.ID() {
		t.Fatalf("two keys named %s", first.ID())
	}
	sealed2 := seal(t, second, "alice@work.example")
	save(t, v, second)
	for _, v := range []*vault.Vault{v, newVault(t, n.JS)} {
		mustOpen(t, v, first.LeadID(), sealed, "alice@example.com")
		mustOpen(t, v, first.LeadID(), sealed2, "alice@work.example")
		k, err := v.Key(t.Context(), first.LeadID())
		if err != nil || k.ID() != second.ID() {
			t.Fatalf("key to seal with: %v %v, want %s", k, err, second.ID())
		}
	}
	if err := v.Shred(t.Context(), first.LeadID()); err != nil {
		t.Fatal(err)
	}
	openErr(t, newVault(t, n.JS), first.LeadID(), sealed, vault.ErrShredded)
	openErr(t, newVault(t, n.JS), first.LeadID(), sealed2, vault.ErrShredded)
}

// Leads stored before key ids had one key under the lead id, and data
// sealed in the first format: both keep working, and such a lead gets no
// second key.
func TestFirstFormatKeysStillWork(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	leadID := newLeadID()
	dek := make([]byte, 32)
	rand.Read(dek)
	wrapped := gcmSeal(t, masterKey, dek, leadID)
	if _, err := n.JS.Publish(t.Context(), "$KV."+bucket+"."+leadID, wrapped); err != nil {
		t.Fatal(err)
	}
	old := gcmSeal(t, dek, []byte("alice@example.com"), leadID)
	mustOpen(t, v, leadID, old, "alice@example.com")
	k, err := v.Key(t.Context(), leadID)
	if err != nil || k.ID() != leadID {
		t.Fatalf("key of a first-format lead: %v %v", k, err)
	}
	again := seal(t, k, "later")
	if again[0] != 1 {
		t.Fatalf("sealed with a first-format key in version %d", again[0])
	}
	mustOpen(t, newVault(t, n.JS), leadID, again, "later")
	second, err := v.NewKey(leadID)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Save(t.Context(), second); !errors.Is(err, vault.ErrKeyExists) {
		t.Fatalf("a second key for a first-format lead: %v, want ErrKeyExists", err)
	}
	if err := v.Shred(t.Context(), leadID); err != nil {
		t.Fatal(err)
	}
	openErr(t, newVault(t, n.JS), leadID, old, vault.ErrShredded)
	for _, m := range streamMessages(t, n.JS) {
		if bytes.Contains(m.Data, wrapped) {
			t.Fatal("the first-format key is still in the stream")
		}
	}
}

// gcmSeal seals in the first format: version 1 | nonce | AES-256-GCM, with
// ad as additional data.
func gcmSeal(t testing.TB, key, plaintext []byte, ad string) []byte {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 13)
	out[0] = 1
	rand.Read(out[1:])
	return aead.Seal(out, out[1:], plaintext, []byte(ad))
}

func TestSaveManyThenOpenFromNewVault(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	const count = 500
	keys := make([]*vault.Key, count)
	sealed := make([][]byte, count)
	for i := range keys {
		keys[i] = newKey(t, v)
		sealed[i] = seal(t, keys[i], fmt.Sprintf("lead-%d@example.com", i))
	}
	save(t, v, keys...)

	fresh := newVault(t, n.JS)
	for i, k := range keys {
		mustOpen(t, fresh, k.LeadID(), sealed[i], fmt.Sprintf("lead-%d@example.com", i))
	}
	kv, err := n.JS.KeyValue(t.Context(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	status, err := kv.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if status.Values() != count {
		t.Fatalf("bucket holds %d values, want %d", status.Values(), count)
	}
}

func TestShred(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	k, other := newKey(t, v), newKey(t, v)
	sealed := seal(t, k, "alice@example.com")
	otherSealed := seal(t, other, "bob@example.com")
	save(t, v, k, other)
	wrapped := storedValue(t, n.JS, k.ID())
	mustOpen(t, v, k.LeadID(), sealed, "alice@example.com") // now cached

	if err := v.Shred(t.Context(), k.LeadID()); err != nil {
		t.Fatalf("shred: %v", err)
	}
	openErr(t, v, k.LeadID(), sealed, vault.ErrShredded)
	openErr(t, newVault(t, n.JS), k.LeadID(), sealed, vault.ErrShredded)
	mustOpen(t, v, other.LeadID(), otherSealed, "bob@example.com")

	// Idempotent.
	if err := v.Shred(t.Context(), k.LeadID()); err != nil {
		t.Fatalf("second shred: %v", err)
	}
	openErr(t, v, k.LeadID(), sealed, vault.ErrShredded)

	// A shredded lead never gets a key again, not even its old one.
	if err := v.Save(t.Context(), k); !errors.Is(err, vault.ErrShredded) {
		t.Fatalf("save after shred: %v, want ErrShredded", err)
	}
	k2, err := v.NewKey(k.LeadID())
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Save(t.Context(), k2); !errors.Is(err, vault.ErrShredded) {
		t.Fatalf("save a new key after shred: %v, want ErrShredded", err)
	}

	// Never existed is not shredded.
	openErr(t, v, newLeadID(), sealed, vault.ErrNoKey)

	// The wrapped key is gone from the bucket's stream; what is left for the
	// lead is one purge marker without data.
	var markers int
	for _, m := range streamMessages(t, n.JS) {
		if bytes.Contains(m.Data, wrapped) {
			t.Fatalf("stream message %d still holds the wrapped key", m.Sequence)
		}
		if m.Subject == "$KV."+bucket+"."+k.LeadID() {
			markers++
			if m.Header.Get("KV-Operation") != "PURGE" || len(m.Data) != 0 {
				t.Fatalf("message left for the lead: headers %v, %d bytes", m.Header, len(m.Data))
			}
		}
	}
	if markers != 1 {
		t.Fatalf("%d messages left for the shredded lead, want 1 purge marker", markers)
	}
}

// TestPurgeMarkerIsVisible pins the server and client behaviour Open relies
// on: KeyValue.Get reports a purged key exactly like a missing one, and only
// the stream's last message for the subject, a purge marker, tells them
// apart.
func TestPurgeMarkerIsVisible(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx := t.Context()
	kv, err := n.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "PROBE", History: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "purged", []byte("secret")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, "purged"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"purged", "missing"} {
		if _, err := kv.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("kv get %s: %v, want ErrKeyNotFound", key, err)
		}
	}
	s, err := n.JS.Stream(ctx, "KV_PROBE")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, "$KV.PROBE.purged")
	if err != nil {
		t.Fatalf("last message of a purged key: %v", err)
	}
	if m.Header.Get("KV-Operation") != "PURGE" || len(m.Data) != 0 {
		t.Fatalf("last message of a purged key: headers %v, data %q", m.Header, m.Data)
	}
	if _, err := s.GetLastMsgForSubject(ctx, "$KV.PROBE.missing"); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("last message of a missing key: %v, want ErrMsgNotFound", err)
	}
	// KeyValue.Create would write over the marker; the vault's create-only
	// publish must not.
	if _, err := kv.Create(ctx, "purged", []byte("again")); err != nil {
		t.Fatalf("kv create over a purge marker: %v", err)
	}
}

func TestKeysSurviveRestart(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	kept, shredded := newKey(t, v), newKey(t, v)
	sk, ss := seal(t, kept, "kept"), seal(t, shredded, "shredded")
	save(t, v, kept, shredded)
	if err := v.Shred(t.Context(), shredded.LeadID()); err != nil {
		t.Fatal(err)
	}

	n.Restart(t)

	for _, v := range []*vault.Vault{v, newVault(t, n.JS)} {
		mustOpen(t, v, kept.LeadID(), sk, "kept")
		openErr(t, v, shredded.LeadID(), ss, vault.ErrShredded)
	}
}

func TestStoredKeyIsWrapped(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	k := newKey(t, v)
	sealed := seal(t, k, "alice@example.com")
	save(t, v, k)
	stored := storedValue(t, n.JS, k.ID())

	// The documented format: version 1 | 12-byte nonce | AES-256-GCM of the
	// 32-byte DEK under the master key, the key's name as additional data.
	if len(stored) != 1+12+32+16 || stored[0] != 1 {
		t.Fatalf("stored value: %d bytes, version %d", len(stored), stored[0])
	}
	unwrap := func(master []byte, id string) ([]byte, error) {
		return gcmOpen(t, master, stored[1:13], stored[13:], id)
	}
	dek, err := unwrap(masterKey, k.ID())
	if err != nil {
		t.Fatalf("unwrap with the master key: %v", err)
	}
	// It is this lead's DEK: it opens what the key sealed (version 2 |
	// 8-byte key id | nonce | ciphertext, lead id as additional data).
	plain, err := gcmOpen(t, dek, sealed[9:21], sealed[21:], k.LeadID())
	if err != nil || string(plain) != "alice@example.com" {
		t.Fatalf("open with the unwrapped DEK: %q, %v", plain, err)
	}
	if bytes.Contains(stored, dek) {
		t.Fatal("stored value contains the DEK")
	}
	if _, err := unwrap(bytes.Repeat([]byte{0x33}, 32), k.ID()); err == nil {
		t.Fatal("unwrapped with the wrong master key")
	}
	if _, err := unwrap(masterKey, newLeadID()); err == nil {
		t.Fatal("unwrapped with another lead's id")
	}
	if _, err := unwrap(masterKey, k.LeadID()); err == nil {
		t.Fatal("unwrapped under another name of the lead")
	}

	// A vault with another master key cannot use the stored key.
	wrong, err := vault.New(t.Context(), n.JS, vault.Config{
		MasterKey: bytes.Repeat([]byte{0x33}, 32), BlindKey: blindKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	openErr(t, wrong, k.LeadID(), sealed, vault.ErrCorrupt)
}

func gcmOpen(t testing.TB, key, nonce, ciphertext []byte, leadID string) ([]byte, error) {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return aead.Open(nil, nonce, ciphertext, []byte(leadID))
}

func TestBlind(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	other, err := vault.New(t.Context(), n.JS, vault.Config{
		MasterKey: masterKey, BlindKey: bytes.Repeat([]byte{0x44}, 32),
	})
	if err != nil {
		t.Fatal(err)
	}
	shape := regexp.MustCompile(`^[a-z2-7]{32}$`)

	email := v.Blind("email", "alice@example.com")
	if !shape.MatchString(email) {
		t.Fatalf("blind index %q is not 32 lower-case base32 characters", email)
	}
	if again := v.Blind("email", "alice@example.com"); again != email {
		t.Fatalf("blind index changed: %q then %q", email, again)
	}
	for name, got := range map[string]string{
		"another kind":      v.Blind("external_id", "alice@example.com"),
		"another value":     v.Blind("email", "bob@example.com"),
		"another BlindKey":  other.Blind("email", "alice@example.com"),
		"kind/value border": v.Blind("emai", "lalice@example.com"),
	} {
		if !shape.MatchString(got) {
			t.Fatalf("%s: blind index %q has the wrong shape", name, got)
		}
		if got == email {
			t.Fatalf("%s: same blind index %q", name, got)
		}
	}
	if empty := v.Blind("", ""); !shape.MatchString(empty) {
		t.Fatalf("blind index of empty input %q", empty)
	}
}

func TestBlindID(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	id := v.BlindID("email", "alice@example.com")
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 8 || u.Variant() != uuid.RFC4122 || u.String() != id {
		t.Fatalf("BlindID %q is not a canonical version 8 UUID (%v)", id, err)
	}
	if again := v.BlindID("email", "alice@example.com"); again != id {
		t.Fatalf("BlindID changed: %q then %q", id, again)
	}
	for name, got := range map[string]string{
		"another kind":  v.BlindID("ext", "alice@example.com"),
		"another value": v.BlindID("email", "bob@example.com"),
	} {
		if got == id {
			t.Fatalf("%s: same id %q", name, got)
		}
	}
}

func TestNewValidatesConfig(t *testing.T) {
	n := testenv.StartNATS(t)
	tests := []struct {
		name string
		cfg  vault.Config
		want string
	}{
		{"short MasterKey", vault.Config{MasterKey: masterKey[:16], BlindKey: blindKey}, "MasterKey"},
		{"no MasterKey", vault.Config{BlindKey: blindKey}, "MasterKey"},
		{"short BlindKey", vault.Config{MasterKey: masterKey, BlindKey: blindKey[:31]}, "BlindKey"},
		{"same keys", vault.Config{MasterKey: masterKey, BlindKey: masterKey}, "BlindKey"},
		{"negative CacheSize", vault.Config{MasterKey: masterKey, BlindKey: blindKey, CacheSize: -1}, "CacheSize"},
		{"bad Bucket", vault.Config{MasterKey: masterKey, BlindKey: blindKey, Bucket: "a.b"}, "a.b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := vault.New(t.Context(), n.JS, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("new: %v, want an error naming %s", err, tt.want)
			}
		})
	}

	// A second New on the bucket updates it in place; its keys stay.
	v := newVault(t, n.JS)
	k := newKey(t, v)
	save(t, v, k)
	if _, err := vault.New(t.Context(), n.JS, vault.Config{
		MasterKey: masterKey, BlindKey: blindKey, CacheSize: 10,
	}); err != nil {
		t.Fatalf("new on an existing bucket: %v", err)
	}
	mustOpen(t, newVault(t, n.JS), k.LeadID(), seal(t, k, "x"), "x")

	// Without a BlindKey (handoff: it seals and opens, blinds nothing) it
	// opens what was sealed, and refuses to blind.
	reader, err := vault.New(t.Context(), n.JS, vault.Config{MasterKey: masterKey})
	if err != nil {
		t.Fatalf("new without a BlindKey: %v", err)
	}
	defer reader.Close()
	mustOpen(t, reader, k.LeadID(), seal(t, k, "x"), "x")
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Blind without a BlindKey did not panic")
			}
		}()
		reader.Blind("email", "ada@example.com")
	}()
}

func TestInvalidLeadID(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	k := newKey(t, v)
	sealed := seal(t, k, "x")
	for _, id := range []string{"", "a b", "a.*", ">", ".a", "a.", "a..b", "a.b"} {
		if _, err := v.NewKey(id); err == nil {
			t.Errorf("NewKey(%q) succeeded", id)
		}
		if _, err := v.Open(t.Context(), id, sealed); err == nil {
			t.Errorf("Open(%q) succeeded", id)
		}
		if err := v.Shred(t.Context(), id); err == nil {
			t.Errorf("Shred(%q) succeeded", id)
		}
	}
}

func TestCacheIsBounded(t *testing.T) {
	n := testenv.StartNATS(t)
	v, err := vault.New(t.Context(), n.JS, vault.Config{MasterKey: masterKey, BlindKey: blindKey, CacheSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	keys := []*vault.Key{newKey(t, v), newKey(t, v), newKey(t, v)}
	sealed := make([][]byte, len(keys))
	for i, k := range keys {
		sealed[i] = seal(t, k, k.LeadID())
	}
	save(t, v, keys...)
	// Shred behind the vault's back, through another one, with its watch
	// stopped: only cached keys still open here. The cache holds the two
	// most recently saved.
	v.Close()
	other := newVault(t, n.JS)
	for _, k := range keys {
		if err := other.Shred(t.Context(), k.LeadID()); err != nil {
			t.Fatal(err)
		}
	}
	openErr(t, v, keys[0].LeadID(), sealed[0], vault.ErrShredded)
	mustOpen(t, v, keys[1].LeadID(), sealed[1], keys[1].LeadID())
	mustOpen(t, v, keys[2].LeadID(), sealed[2], keys[2].LeadID())
}

// TestShredRacesOpen checks that once Shred returns, no Open on the same
// vault succeeds, however Opens and their cache fills interleave with it.
func TestShredRacesOpen(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	const leads = 20
	keys := make([]*vault.Key, leads)
	sealed := make([][]byte, leads)
	for i := range keys {
		keys[i] = newKey(t, v)
		sealed[i] = seal(t, keys[i], "x")
	}
	save(t, v, keys...)
	fresh := newVault(t, n.JS) // empty cache: Opens load while Shred purges

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range keys {
		stop := make(chan struct{})
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					_, err := fresh.Open(ctx, keys[i].LeadID(), sealed[i])
					if err != nil && !errors.Is(err, vault.ErrShredded) {
						t.Errorf("open during shred: %v", err)
						return
					}
				}
			})
		}
		err := fresh.Shred(ctx, keys[i].LeadID())
		if err != nil {
			t.Errorf("shred: %v", err)
		} else if _, err := fresh.Open(ctx, keys[i].LeadID(), sealed[i]); !errors.Is(err, vault.ErrShredded) {
			t.Errorf("open right after shred: %v, want ErrShredded", err)
		}
		close(stop)
	}
	wg.Wait()
	for i, k := range keys {
		openErr(t, fresh, k.LeadID(), sealed[i], vault.ErrShredded)
	}
}

func TestSaveHonoursContextAndRetries(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	keys := make([]*vault.Key, 100)
	for i := range keys {
		keys[i] = newKey(t, v)
	}
	if err := v.Save(ctx, keys...); !errors.Is(err, context.Canceled) {
		t.Fatalf("save with a cancelled context: %v", err)
	}
	openErr(t, newVault(t, n.JS), keys[0].LeadID(), seal(t, keys[0], "x"), vault.ErrNoKey)

	// A Save that timed out after some keys were stored is retried whole.
	save(t, v, keys[:50]...)
	save(t, v, keys...)
	fresh := newVault(t, n.JS)
	for _, k := range keys {
		mustOpen(t, fresh, k.LeadID(), seal(t, k, "x"), "x")
	}
}

func BenchmarkSave(b *testing.B) {
	for _, count := range []int{500, 5000} {
		b.Run(fmt.Sprint(count), func(b *testing.B) {
			n := testenv.StartNATS(b)
			v := newVault(b, n.JS)
			for b.Loop() {
				b.StopTimer()
				keys := make([]*vault.Key, count)
				for i := range keys {
					keys[i] = newKey(b, v)
				}
				b.StartTimer()
				save(b, v, keys...)
			}
			b.ReportMetric(float64(count*b.N)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	n := testenv.StartNATS(b)
	// One cached key: alternating two leads makes every Open a miss.
	v, err := vault.New(b.Context(), n.JS, vault.Config{MasterKey: masterKey, BlindKey: blindKey, CacheSize: 1})
	if err != nil {
		b.Fatal(err)
	}
	keys := []*vault.Key{newKey(b, v), newKey(b, v)}
	sealed := [][]byte{seal(b, keys[0], "alice@example.com"), seal(b, keys[1], "bob@example.com")}
	save(b, v, keys...)
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := v.Open(b.Context(), keys[0].LeadID(), sealed[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i ^= 1
			if _, err := v.Open(b.Context(), keys[i].LeadID(), sealed[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// onDisk reports whether any file under dir holds b.
func onDisk(t testing.TB, dir string, b []byte) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		found = found || bytes.Contains(data, b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestShredErasesKeyFromDisk checks the file store itself: Shred's message
// delete leaves no byte of the wrapped key in the stream's block file,
// where the master key would still unwrap it (a plain KV purge would).
func TestShredErasesKeyFromDisk(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	k, other := newKey(t, v), newKey(t, v)
	save(t, v, k, other)
	wrapped := storedValue(t, n.JS, k.ID())
	otherWrapped := storedValue(t, n.JS, other.ID())
	onDisk := func(b []byte) bool { return onDisk(t, n.Dir, b) }
	if !onDisk(wrapped) {
		t.Fatal("wrapped key not found on disk before shred; the check is blind")
	}

	if err := v.Shred(t.Context(), k.LeadID()); err != nil {
		t.Fatal(err)
	}
	if onDisk(wrapped) {
		t.Fatal("wrapped key still on disk after shred")
	}
	n.Restart(t)
	if onDisk(wrapped) {
		t.Fatal("wrapped key on disk after restart")
	}
	if !onDisk(otherWrapped) {
		t.Fatal("shred erased another lead's key")
	}
	openErr(t, newVault(t, n.JS), k.LeadID(), seal(t, k, "x"), vault.ErrShredded)
	mustOpen(t, newVault(t, n.JS), other.LeadID(), seal(t, other, "y"), "y")
}

// TestShredFinishesAnInterruptedShred starts from the state a Shred cut
// short between its two steps leaves: the purge marker written, the wrapped
// key not yet erased.
func TestShredFinishesAnInterruptedShred(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	k := newKey(t, v)
	sealed := seal(t, k, "x")
	save(t, v, k)
	wrapped := storedValue(t, n.JS, k.ID())

	marker := &nats.Msg{Subject: "$KV." + bucket + "." + k.LeadID(), Header: nats.Header{"KV-Operation": []string{"PURGE"}}}
	if _, err := n.JS.PublishMsg(t.Context(), marker); err != nil {
		t.Fatal(err)
	}
	openErr(t, newVault(t, n.JS), k.LeadID(), sealed, vault.ErrShredded)
	holdsKey := func() bool {
		for _, m := range streamMessages(t, n.JS) {
			if bytes.Equal(m.Data, wrapped) {
				return true
			}
		}
		return false
	}
	if !holdsKey() {
		t.Fatal("the set-up lost the wrapped key already")
	}

	if err := v.Shred(t.Context(), k.LeadID()); err != nil {
		t.Fatal(err)
	}
	if holdsKey() {
		t.Fatal("shred left the wrapped key in the stream")
	}
	openErr(t, v, k.LeadID(), sealed, vault.ErrShredded)
}

func TestBucket(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	k := newKey(t, v)
	save(t, v, k)

	// An ordinary KV bucket to readers.
	kv, err := n.JS.KeyValue(t.Context(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	status, err := kv.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if status.BackingStore() != "JetStream" || status.Values() != 1 {
		t.Fatalf("bucket status: %+v", status)
	}
	if err := v.Shred(t.Context(), k.LeadID()); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(t.Context(), k.LeadID()); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("kv get of a shredded key: %v", err)
	}

	// Nothing wipes it wholesale.
	s, err := n.JS.Stream(t.Context(), "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	purgeDenied := func(what string, err error) {
		t.Helper()
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10110 { // stream purge not permitted
			t.Fatalf("%s: %v, want error 10110", what, err)
		}
	}
	purgeDenied("stream purge", s.Purge(t.Context()))
	purgeDenied("kv purge deletes", kv.PurgeDeletes(t.Context(), jetstream.DeleteMarkersOlderThan(-1)))
	openErr(t, v, k.LeadID(), seal(t, k, "x"), vault.ErrShredded)

	// A bucket made by KeyValue denies message deletes for good; New says so
	// instead of running without secure erase.
	if _, err := n.JS.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "PLAIN"}); err != nil {
		t.Fatal(err)
	}
	_, err = vault.New(t.Context(), n.JS, vault.Config{Bucket: "PLAIN", MasterKey: masterKey, BlindKey: blindKey})
	if err == nil || !strings.Contains(err.Error(), "PLAIN") {
		t.Fatalf("new on a plain KV bucket: %v", err)
	}
}

func BenchmarkShred(b *testing.B) {
	n := testenv.StartNATS(b)
	v := newVault(b, n.JS)
	for b.Loop() {
		b.StopTimer()
		k := newKey(b, v)
		save(b, v, k)
		b.StartTimer()
		if err := v.Shred(b.Context(), k.LeadID()); err != nil {
			b.Fatal(err)
		}
	}
}

func TestKeySealsForAnExistingLead(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx := context.Background()
	cfg := vault.Config{MasterKey: bytes.Repeat([]byte{1}, 32), BlindKey: bytes.Repeat([]byte{2}, 32)}
	v, err := vault.New(ctx, n.JS, cfg)
	if err != nil {
		t.Fatal(err)
	}
	k, err := v.NewKey("lead-k")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Save(ctx, k); err != nil {
		t.Fatal(err)
	}
	// A fresh instance (empty cache) finds the stored key and seals with it.
	v2, err := vault.New(ctx, n.JS, cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := v2.Key(ctx, "lead-k")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := again.Seal([]byte("later submission"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v.Open(ctx, "lead-k", sealed); err != nil || string(got) != "later submission" {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := v2.Key(ctx, "lead-none"); !errors.Is(err, vault.ErrNoKey) {
		t.Fatalf("unknown lead: %v", err)
	}
	if err := v.Shred(ctx, "lead-k"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Key(ctx, "lead-k"); !errors.Is(err, vault.ErrShredded) {
		t.Fatalf("shredded lead: %v", err)
	}
}

// A key shredded by one process leaves every other process's cache
// within a second: no process serves it afterwards.
func TestShredEvictsOtherVaultsCaches(t *testing.T) {
	n := testenv.StartNATS(t)
	here, there := newVault(t, n.JS), newVault(t, n.JS)
	t.Cleanup(here.Close)
	t.Cleanup(there.Close)
	k := newKey(t, here)
	sealed := seal(t, k, "alice@example.com")
	save(t, here, k)
	mustOpen(t, there, k.LeadID(), sealed, "alice@example.com") // cached there now

	if err := here.Shred(t.Context(), k.LeadID()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		_, err := there.Open(t.Context(), k.LeadID(), sealed)
		if errors.Is(err, vault.ErrShredded) {
			break
		}
		if err != nil {
			t.Fatalf("open after shred: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the other vault still opens the shredded lead's data after a second")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A process whose connection comes back after a NATS restart still hears
// of a shred written before it reconnected: its watch had seen no marker
// yet, and a watch that restarts at "new messages" would miss this one
// and keep serving the key.
func TestShredWhileAnotherVaultReconnects(t *testing.T) {
	n := testenv.StartNATS(t)
	here := newVault(t, n.JS)
	t.Cleanup(here.Close)
	nc, js, err := eventstore.Dial(n.Server.URL(), t.Name(), nats.ReconnectWait(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	there := newVault(t, js)
	t.Cleanup(there.Close)
	k := newKey(t, here)
	sealed := seal(t, k, "alice@example.com")
	save(t, here, k)
	mustOpen(t, there, k.LeadID(), sealed, "alice@example.com") // cached there now

	n.Restart(t) // here's connection is back; there's waits 3 s
	if nc.IsConnected() {
		t.Fatal("the other vault's connection is back already: the test shows nothing")
	}
	if err := here.Shred(t.Context(), k.LeadID()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 15*time.Second, func() bool {
		_, err := there.Open(t.Context(), k.LeadID(), sealed)
		return nc.IsConnected() && errors.Is(err, vault.ErrShredded)
	}, "the other vault still opens the shredded lead's data after reconnecting")
}

// A rewrap cut short leaves a first-format key twice, under the old
// master key and the new; a shred then erases both from disk, the older
// not dropped by the history limit with its bytes left in the file.
func TestShredErasesAKeyARewrapLeftTwice(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	leadID := newLeadID()
	dek := make([]byte, 32)
	rand.Read(dek)
	older := gcmSeal(t, bytes.Repeat([]byte{0x33}, 32), dek, leadID) // under a retired master key
	newer := gcmSeal(t, masterKey, dek, leadID)
	for _, w := range [][]byte{older, newer} {
		if _, err := n.JS.Publish(t.Context(), "$KV."+bucket+"."+leadID, w); err != nil {
			t.Fatal(err)
		}
	}
	if !onDisk(t, n.Dir, older) || !onDisk(t, n.Dir, newer) {
		t.Fatal("both versions not on disk before the shred; the check is blind")
	}
	if err := v.Shred(t.Context(), leadID); err != nil {
		t.Fatal(err)
	}
	n.Restart(t)
	if onDisk(t, n.Dir, older) || onDisk(t, n.Dir, newer) {
		t.Fatalf("on disk after the shred: older %v, newer %v", onDisk(t, n.Dir, older), onDisk(t, n.Dir, newer))
	}
}

// A direct get may be answered by a replica behind the stream's leader,
// which misses a key stored a moment ago: read as never stored, it would
// have an erasure skip what the key sealed and an export leave it out.
// A key a direct read misses is asked of the leader, which also tells a
// shredded lead; only a key the leader lacks is ErrNoKey.
func TestKeyMissedByAReplicaBehindIsAskedOfTheLeader(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	own, block, shredded := newKey(t, v), take(t, v), take(t, v)
	save(t, v, own)
	sealedOwn, sealedBlock := seal(t, own, "alice@example.com"), seal(t, block, "bob@example.com")
	sealedShredded := seal(t, shredded, "carol@example.com")
	if err := v.Shred(t.Context(), shredded.LeadID(), shredded.ID()); err != nil {
		t.Fatal(err)
	}
	never, err := v.NewKey(newLeadID()) // sealed with, never stored
	if err != nil {
		t.Fatal(err)
	}
	sealedNever := seal(t, never, "dave@example.com")

	behind := newVault(t, n.JS)
	vault.HideFromDirectReads(behind, func(string) bool { return true })
	mustOpen(t, behind, own.LeadID(), sealedOwn, "alice@example.com")
	mustOpen(t, behind, block.LeadID(), sealedBlock, "bob@example.com")
	openErr(t, behind, shredded.LeadID(), sealedShredded, vault.ErrShredded)
	openErr(t, behind, never.LeadID(), sealedNever, vault.ErrNoKey)
}

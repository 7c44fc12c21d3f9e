package vault_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/pkg/vault"
)

func vaultWith(t testing.TB, js jetstream.JetStream, master []byte, read ...[]byte) *vault.Vault {
	t.Helper()
	v, err := vault.New(t.Context(), js, vault.Config{MasterKey: master, ReadMasterKeys: read, BlindKey: blindKey})
	if err != nil {
		t.Fatalf("new vault: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// A rotation: keys wrapped with the old master key open under the new one
// given the old as a read key; Rewrap stores each again under the new key
// and erases the old wrapping from disk; then the new key alone opens
// everything, and a shredded lead stays shredded.
func TestRewrapRotatesTheMasterKey(t *testing.T) {
	n := testenv.StartNATS(t)
	newMaster := bytes.Repeat([]byte{0x33}, 32)
	old := vaultWith(t, n.JS, masterKey)
	type sealed struct {
		k     *vault.Key
		plain string
		data  []byte
	}
	var all []sealed
	for range 3 { // in one block
		k := take(t, old)
		all = append(all, sealed{k, "block secret of " + k.LeadID(), nil})
	}
	for range 2 { // keys of their own, in the format before blocks
		k := newKey(t, old)
		save(t, old, k)
		all = append(all, sealed{k, "own secret of " + k.LeadID(), nil})
	}
	for i := range all {
		all[i].data = seal(t, all[i].k, all[i].plain)
	}
	shredded := all[0]
	if err := old.Shred(t.Context(), shredded.k.LeadID(), keyIDOf(t, shredded.data)); err != nil {
		t.Fatal(err)
	}
	all = all[1:]
	var wrapped [][]byte // every stored value, as the old master key wrapped it
	for _, m := range streamMessages(t, n.JS) {
		if len(m.Data) > 0 {
			wrapped = append(wrapped, m.Data)
		}
	}
	if len(wrapped) != 3 || !onDisk(t, n.Dir, wrapped[0]) {
		t.Fatalf("%d stored values (want the block and 2 keys), or the disk check is blind", len(wrapped))
	}

	// Before the rewrap, the new master key opens nothing alone.
	alone := vaultWith(t, n.JS, newMaster)
	openErr(t, alone, all[0].k.LeadID(), all[0].data, vault.ErrCorrupt)

	both := vaultWith(t, n.JS, newMaster, masterKey)
	for _, s := range all {
		mustOpen(t, both, s.k.LeadID(), s.data, s.plain)
	}
	got, err := both.Rewrap(t.Context())
	if err != nil || got != 3 {
		t.Fatalf("rewrap: %d, %v; want the block and 2 keys", got, err)
	}
	if again, err := both.Rewrap(t.Context()); err != nil || again != 0 {
		t.Fatalf("second rewrap: %d, %v; want nothing left", again, err)
	}
	n.Restart(t)
	for _, w := range wrapped {
		if onDisk(t, n.Dir, w) {
			t.Fatal("a value wrapped with the old master key is still on disk")
		}
	}
	rotated := vaultWith(t, n.JS, newMaster)
	for _, s := range all {
		mustOpen(t, rotated, s.k.LeadID(), s.data, s.plain)
	}
	openErr(t, rotated, shredded.k.LeadID(), shredded.data, vault.ErrShredded)
	openErr(t, vaultWith(t, n.JS, masterKey), all[0].k.LeadID(), all[0].data, vault.ErrCorrupt)
	// New keys are wrapped with the new master key.
	k := take(t, rotated)
	mustOpen(t, vaultWith(t, n.JS, newMaster), k.LeadID(), seal(t, k, "new"), "new")
}

// Rewraps race shreds of the same leads, in two processes' vaults: no
// shredded lead opens again, and no key of one is left in the bucket.
func TestRewrapRacesShred(t *testing.T) {
	n := testenv.StartNATS(t)
	newMaster := make([]byte, 32)
	_, _ = rand.Read(newMaster)
	old := vaultWith(t, n.JS, masterKey)
	var keys []*vault.Key
	var data [][]byte
	for range 40 {
		k := newKey(t, old)
		keys = append(keys, k)
		data = append(data, seal(t, k, "x"))
	}
	save(t, old, keys...)
	for range 40 {
		k := take(t, old)
		keys = append(keys, k)
		data = append(data, seal(t, k, "x"))
	}
	a, b := vaultWith(t, n.JS, newMaster, masterKey), vaultWith(t, n.JS, newMaster, masterKey)
	var wg sync.WaitGroup
	errs := make(chan error, len(keys)+2)
	for _, v := range []*vault.Vault{a, b} {
		wg.Go(func() {
			if _, err := v.Rewrap(t.Context()); err != nil {
				errs <- err
			}
		})
	}
	for i := 0; i < len(keys); i += 2 { // every other lead
		wg.Go(func() {
			kid, _ := vault.SealedKeyID(data[i])
			if err := a.Shred(t.Context(), keys[i].LeadID(), kid); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := a.Rewrap(t.Context()); err != nil {
		t.Fatal(err)
	}
	rotated := vaultWith(t, n.JS, newMaster)
	for i, k := range keys {
		_, err := rotated.Open(t.Context(), k.LeadID(), data[i])
		if shredded := i%2 == 0; shredded != errors.Is(err, vault.ErrShredded) || !shredded && err != nil {
			t.Fatalf("lead %d (shredded %v): %v", i, shredded, err)
		}
	}
	for _, m := range streamMessages(t, n.JS) {
		for i := 0; i < 40; i += 2 { // own keys of shredded leads
			if bytes.HasPrefix([]byte(m.Subject), []byte("$KV."+bucket+"."+keys[i].LeadID()+".")) {
				t.Fatalf("a shredded lead's key is stored: %s", m.Subject)
			}
		}
	}
}

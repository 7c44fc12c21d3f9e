package vault_test

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/pkg/vault"
)

func take(t testing.TB, v *vault.Vault) *vault.Key {
	t.Helper()
	k, err := v.Take(t.Context(), newLeadID())
	if err != nil {
		t.Fatalf("take: %v", err)
	}
	return k
}

// slotOf is a key's id without its lead: the block and the slot.
func slotOf(k *vault.Key) string { return k.ID()[strings.IndexByte(k.ID(), '.')+1:] }

func keyIDOf(t testing.TB, sealed []byte) string {
	t.Helper()
	id, err := vault.SealedKeyID(sealed)
	if err != nil {
		t.Fatalf("sealed key id: %v", err)
	}
	return id
}

// blockMessages is what the bucket holds under block keys.
func blockMessages(t testing.TB, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	var out []*jetstream.RawStreamMsg
	for _, m := range streamMessages(t, js) {
		if bytes.HasPrefix([]byte(m.Subject), []byte("$KV."+bucket+"._blocks.")) {
			out = append(out, m)
		}
	}
	return out
}

func TestTakeStoresKeysAheadInBlocks(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)

	first := take(t, v)
	if got := len(streamMessages(t, n.JS)); got != 1 {
		t.Fatalf("bucket holds %d messages after the first Take, want 1 (its block)", got)
	}
	// The rest of the block costs no write; past it, one more block.
	keys := []*vault.Key{first}
	for range 1100 {
		keys = append(keys, take(t, v))
	}
	if got := len(blockMessages(t, n.JS)); got != 2 {
		t.Fatalf("%d blocks stored for 1,101 keys, want 2", got)
	}
	if got := len(streamMessages(t, n.JS)); got != 2 {
		t.Fatalf("bucket holds %d messages, want only the 2 blocks", got)
	}
	slots := map[string]bool{}
	for _, k := range keys {
		if slots[slotOf(k)] {
			t.Fatalf("slot of %s handed out twice", k.ID())
		}
		slots[slotOf(k)] = true
	}

	// Another process, nothing cached, opens what each block's keys sealed.
	other := newVault(t, n.JS)
	for _, k := range []*vault.Key{keys[0], keys[1023], keys[1024], keys[1100]} {
		sealed := seal(t, k, "secret of "+k.LeadID())
		mustOpen(t, other, k.LeadID(), sealed, "secret of "+k.LeadID())
		// Sealed for one lead, it does not open as another's.
		openErr(t, other, keys[5].LeadID(), sealed, vault.ErrCorrupt)
	}
	// Save of a key from a block writes nothing: it is stored already.
	save(t, v, keys[3])
	if got := len(streamMessages(t, n.JS)); got != 2 {
		t.Fatalf("Save of a block key wrote: %d messages", got)
	}
}

// Takes from many goroutines across block boundaries never hand out a
// slot twice, and wait for the next block rather than fail.
func TestTakeConcurrently(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	const workers, each = 16, 200
	keys := make(chan *vault.Key, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				k, err := v.Take(t.Context(), newLeadID())
				if err != nil {
					t.Error(err)
					return
				}
				keys <- k
			}
		})
	}
	wg.Wait()
	close(keys)
	slots := map[string]bool{}
	var sample []*vault.Key
	for k := range keys {
		if slots[slotOf(k)] {
			t.Fatalf("slot of %s handed out twice", k.ID())
		}
		slots[slotOf(k)] = true
		if len(slots)%400 == 0 {
			sample = append(sample, k)
		}
	}
	if len(slots) != workers*each {
		t.Fatalf("%d keys, want %d", len(slots), workers*each)
	}
	// 3,200 keys fill 3 blocks and start a fourth; one more may be
	// saved ahead.
	if got := len(blockMessages(t, n.JS)); got < 4 || got > 5 {
		t.Fatalf("%d blocks stored for %d keys", got, workers*each)
	}
	other := newVault(t, n.JS)
	for _, k := range sample {
		mustOpen(t, other, k.LeadID(), seal(t, k, "x"), "x")
	}
}

func TestShredDestroysOnlyItsSlot(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	a, b := take(t, v), take(t, v)
	sa, sb := seal(t, a, "alice@example.com"), seal(t, b, "bob@example.com")
	before := blockMessages(t, n.JS)
	if len(before) != 1 {
		t.Fatalf("%d blocks, want 1", len(before))
	}
	onDisk := func(data []byte) bool { return onDisk(t, n.Dir, data) }
	if !onDisk(before[0].Data) {
		t.Fatal("the block is not on disk before the shred; the check is blind")
	}

	if err := v.Shred(t.Context(), a.LeadID(), keyIDOf(t, sa)); err != nil {
		t.Fatal(err)
	}
	openErr(t, v, a.LeadID(), sa, vault.ErrShredded)
	openErr(t, newVault(t, n.JS), a.LeadID(), sa, vault.ErrShredded)
	mustOpen(t, newVault(t, n.JS), b.LeadID(), sb, "bob@example.com")

	after := blockMessages(t, n.JS)
	if len(after) != 1 || after[0].Sequence == before[0].Sequence {
		t.Fatalf("after the shred the block is %d messages (first seq %d, was %d), want 1 new one", len(after), after[0].Sequence, before[0].Sequence)
	}
	if onDisk(before[0].Data) {
		t.Fatal("the block as it was before the shred is still on disk")
	}
	n.Restart(t)
	if onDisk(before[0].Data) {
		t.Fatal("the old block is on disk after a restart")
	}
	openErr(t, newVault(t, n.JS), a.LeadID(), sa, vault.ErrShredded)
	mustOpen(t, newVault(t, n.JS), b.LeadID(), sb, "bob@example.com")

	// Again is a no-op.
	if err := v.Shred(t.Context(), a.LeadID(), keyIDOf(t, sa)); err != nil {
		t.Fatal(err)
	}
	if got := blockMessages(t, n.JS); len(got) != 1 || got[0].Sequence != after[0].Sequence {
		t.Fatal("a second shred of the same slot rewrote the block")
	}
}

// Two processes shred slots of one block at once: each rewrite is
// checked against the version it read, so none undoes another's.
func TestShredsOfOneBlockRace(t *testing.T) {
	n := testenv.StartNATS(t)
	v1, v2 := newVault(t, n.JS), newVault(t, n.JS)
	type sealedKey struct {
		k      *vault.Key
		sealed []byte
	}
	var keys []sealedKey
	for range 9 {
		k := take(t, v1)
		keys = append(keys, sealedKey{k, seal(t, k, "x")})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i, sk := range keys[:8] {
		v := v1
		if i%2 == 1 {
			v = v2
		}
		wg.Go(func() { errs <- v.Shred(t.Context(), sk.k.LeadID(), keyIDOf(t, sk.sealed)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	fresh := newVault(t, n.JS)
	for _, sk := range keys[:8] {
		openErr(t, fresh, sk.k.LeadID(), sk.sealed, vault.ErrShredded)
	}
	mustOpen(t, fresh, keys[8].k.LeadID(), keys[8].sealed, "x")
	if got := len(blockMessages(t, n.JS)); got != 1 {
		t.Fatalf("the block is %d messages after the shreds, want 1", got)
	}
}

// A rewrite cut short leaves two versions of the block; the next Shred
// erases the older before it writes, so the history limit never drops
// one the ordinary way (which leaves its bytes on disk).
func TestShredFinishesAnInterruptedRewrite(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	a, b := take(t, v), take(t, v)
	sa, sb := seal(t, a, "a"), seal(t, b, "b")
	old := blockMessages(t, n.JS)[0]
	// What a rewrite leaves before its erase: a newer version beside it.
	if _, err := n.JS.PublishMsg(t.Context(), &nats.Msg{Subject: old.Subject, Data: old.Data},
		jetstream.WithExpectLastSequencePerSubject(old.Sequence)); err != nil {
		t.Fatal(err)
	}
	if got := len(blockMessages(t, n.JS)); got != 2 {
		t.Fatalf("set-up: %d versions, want 2", got)
	}
	if err := v.Shred(t.Context(), a.LeadID(), keyIDOf(t, sa)); err != nil {
		t.Fatal(err)
	}
	left := blockMessages(t, n.JS)
	if len(left) != 1 || left[0].Sequence <= old.Sequence+1 {
		t.Fatalf("after the shred: %d versions, want only the rewrite", len(left))
	}
	openErr(t, newVault(t, n.JS), a.LeadID(), sa, vault.ErrShredded)
	mustOpen(t, newVault(t, n.JS), b.LeadID(), sb, "b")
}

// A process that has read a block keeps it, and a lead of that block
// shredded since is still refused: its marker is checked on every read.
func TestCachedBlockServesNoShreddedKey(t *testing.T) {
	n := testenv.StartNATS(t)
	writer := newVault(t, n.JS)
	a, b := take(t, writer), take(t, writer)
	sa, sb := seal(t, a, "a"), seal(t, b, "b")
	reader := newVault(t, n.JS)
	mustOpen(t, reader, b.LeadID(), sb, "b") // reads and keeps the block, a's slot in it

	if err := writer.Shred(t.Context(), a.LeadID(), keyIDOf(t, sa)); err != nil {
		t.Fatal(err)
	}
	openErr(t, reader, a.LeadID(), sa, vault.ErrShredded)
	mustOpen(t, reader, b.LeadID(), sb, "b")
}

func TestBlockKeyErrors(t *testing.T) {
	n := testenv.StartNATS(t)
	v := newVault(t, n.JS)
	if _, err := v.Take(t.Context(), "_blocks"); err == nil {
		t.Fatal("the block token was taken as a lead id")
	}
	k := take(t, v)
	sealed := seal(t, k, "x")
	// A key id naming a block that was never stored.
	forged := bytes.Clone(sealed)
	forged[1] ^= 0xff
	if _, err := v.Open(t.Context(), k.LeadID(), forged); !errors.Is(err, vault.ErrNoKey) {
		t.Fatalf("open with an unknown block = %v, want ErrNoKey", err)
	}
	if _, err := vault.SealedKeyID(sealed[:10]); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("key id of truncated data = %v, want ErrCorrupt", err)
	}
	// Shredding a lead shreds nothing of a block unless told which key.
	if err := v.Shred(t.Context(), k.LeadID()); err != nil {
		t.Fatal(err)
	}
	openErr(t, newVault(t, n.JS), k.LeadID(), sealed, vault.ErrShredded) // its marker says so
	if got := blockMessages(t, n.JS); len(got) != 1 {
		t.Fatalf("%d block versions", len(got))
	}
}

// Another process seals more of a lead's data with the key that sealed
// what it holds; the lead's shred, naming only that first data's key,
// destroys what it sealed too.
func TestKeyOfSealsWithTheSameKey(t *testing.T) {
	n := testenv.StartNATS(t)
	intake, handoff := newVault(t, n.JS), newVault(t, n.JS)
	k := take(t, intake)
	first := seal(t, k, "ada@analytical.example")
	more, err := handoff.KeyOf(t.Context(), k.LeadID(), first)
	if err != nil {
		t.Fatal(err)
	}
	note := seal(t, more, "call her after the board meeting")
	if keyIDOf(t, note) != keyIDOf(t, first) {
		t.Fatalf("sealed with key %s, want %s", keyIDOf(t, note), keyIDOf(t, first))
	}
	mustOpen(t, newVault(t, n.JS), k.LeadID(), note, "call her after the board meeting")
	if _, err := handoff.KeyOf(t.Context(), newLeadID(), first); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("KeyOf for another lead: %v, want ErrCorrupt", err)
	}
	if err := intake.Shred(t.Context(), k.LeadID(), keyIDOf(t, first)); err != nil {
		t.Fatal(err)
	}
	openErr(t, newVault(t, n.JS), k.LeadID(), note, vault.ErrShredded)
	if _, err := newVault(t, n.JS).KeyOf(t.Context(), k.LeadID(), first); !errors.Is(err, vault.ErrShredded) {
		t.Fatalf("KeyOf after the shred: %v, want ErrShredded", err)
	}
}

package vault

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

// Key blocks keep the key write off a capture's path: a Vault stores
// blockSize keys ahead in one message, and Take hands them out, one slot
// to a lead, with no I/O of its own. What a slot's key seals names the
// block and the slot (format 3), and Shred, given those names, rewrites
// the block with the slot zeroed and erases the old message. Why blocks
// and not a key per lead: docs/operations.md.
const (
	// blockSize keys a block: 32 KiB of keys, one write per 1,024 new
	// leads, and a rewrite of that size per erasure.
	blockSize = 1024
	// blockToken is the first token of a block's KV key; checkLeadID
	// refuses it as a lead id, so no lead's subjects reach a block's.
	blockToken  = "_blocks"
	blockIDSize = 8
	slotSize    = 2
	// blockKidLen is the length of a block key's id: the block id and
	// the slot, in hex. Keys of one lead's own (format 2) have 16.
	blockKidLen = 2 * (blockIDSize + slotSize)
	// refillAt: when this few slots are left, the next block is saved in
	// the background, so that Take rarely waits.
	refillAt = blockSize / 4
)

// blocks is this Vault's supply of stored keys. A block is used by one
// Vault only and never handed out twice: an id is random and stored
// create-only, and slots go out under the mutex. Slots left when the
// process stops are never used.
type blocks struct {
	mu   sync.Mutex
	cur  *block
	next *pendingBlock // a save in flight, nil if none
}

// blockCache holds the last few blocks Open unwrapped, by block id. Leads
// are captured, and so read, roughly in order, so a handful serves most
// reads. A block's slots only ever change to zero (a shred), after the
// lead's marker is stored, which every read checks.
type blockCache struct {
	mu    sync.Mutex
	m     map[string][]byte
	order []string // oldest first
}

const blockCacheSize = 8

// get returns the cached block, which is never changed in place: the
// caller copies from it.
func (c *blockCache) get(blockHex string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[blockHex]
	return b, ok
}

func (c *blockCache) put(blockHex string, plain []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][]byte{}
	}
	if _, ok := c.m[blockHex]; ok {
		return
	}
	c.m[blockHex] = plain
	c.order = append(c.order, blockHex)
	if len(c.order) > blockCacheSize {
		// Not zeroed: a reader may still be copying from it.
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
}

type block struct {
	id   [blockIDSize]byte
	deks [][keySize]byte
	used int
}

type pendingBlock struct {
	done chan struct{}
	blk  *block
	err  error
}

// failed reports whether the save is over and failed: started in the
// background, a later take starts another rather than meet its old error
// once the block runs out.
func (p *pendingBlock) failed() bool {
	select {
	case <-p.done:
		return p.err != nil
	default:
		return false
	}
}

// Take returns a new data key for the lead, already stored: a slot of a
// block this Vault saved ahead. It waits for a round trip only when the
// supply has run out (about once in blockSize calls, less when the
// refill in the background kept up). Shred must be given the key's id
// (SealedKeyID of anything it sealed) to destroy it.
func (v *Vault) Take(ctx context.Context, leadID string) (*Key, error) {
	if err := checkLeadID(leadID); err != nil {
		return nil, err
	}
	epoch := v.cache.currentEpoch()
	blk, slot, err := v.blocks.take(ctx, v.saveBlock)
	if err != nil {
		return nil, fmt.Errorf("vault: take key for lead %s: %w", leadID, err)
	}
	k := &Key{leadID: leadID, kid: blockKid(blk.id, slot), dek: blk.deks[slot]}
	// The block keeps no copy of a slot it handed out.
	clear(blk.deks[slot][:])
	aead, err := newAEAD(k.dek[:])
	if err != nil {
		return nil, fmt.Errorf("vault: take key for lead %s: %w", leadID, err)
	}
	k.aead = aead
	v.cache.add(epoch, leadID, k.ID(), &k.dek, true)
	return k, nil
}

// take hands out the next free slot, waiting for a saved block when none
// is left.
func (b *blocks) take(ctx context.Context, save func(context.Context) (*block, error)) (*block, int, error) {
	for {
		b.mu.Lock()
		if c := b.cur; c != nil && c.used < len(c.deks) {
			slot := c.used
			c.used++
			if len(c.deks)-c.used <= refillAt && (b.next == nil || b.next.failed()) {
				b.refill(save)
			}
			b.mu.Unlock()
			return c, slot, nil
		}
		if b.next == nil || b.next.failed() {
			b.refill(save)
		}
		p := b.next
		b.mu.Unlock()
		select {
		case <-p.done:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
		b.mu.Lock()
		if b.next == p {
			b.next = nil
			if p.err != nil {
				b.mu.Unlock()
				return nil, 0, p.err
			}
			b.cur = p.blk
		}
		b.mu.Unlock()
	}
}

// refill starts saving the next block. The caller holds b.mu. The save
// has a deadline of its own: it serves whoever takes next, not the
// caller.
func (b *blocks) refill(save func(context.Context) (*block, error)) {
	p := &pendingBlock{done: make(chan struct{})}
	b.next = p
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), defaultTimeout)
		defer cancel()
		p.blk, p.err = save(ctx)
		close(p.done)
	}()
}

// saveBlock makes blockSize random keys and stores them, wrapped with the
// master key as one message, create-only.
func (v *Vault) saveBlock(ctx context.Context) (*block, error) {
	blk := &block{deks: make([][keySize]byte, blockSize)}
	_, _ = rand.Read(blk.id[:])
	plain := make([]byte, blockSize*keySize)
	_, _ = rand.Read(plain)
	for i := range blk.deks {
		copy(blk.deks[i][:], plain[i*keySize:])
	}
	name := blockName(hex.EncodeToString(blk.id[:]))
	msg := &nats.Msg{Subject: v.prefix + name, Data: seal(v.master, name, plain)}
	clear(plain)
	if _, err := v.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
		return nil, fmt.Errorf("save key block: %w", err)
	}
	return blk, nil
}

func blockName(blockHex string) string { return blockToken + "." + blockHex }

func blockKid(id [blockIDSize]byte, slot int) string {
	var b [blockIDSize + slotSize]byte
	copy(b[:], id[:])
	binary.BigEndian.PutUint16(b[blockIDSize:], uint16(slot))
	return hex.EncodeToString(b[:])
}

// isBlockKid tells a block key's id from a lead's own key id.
func isBlockKid(kid string) bool { return len(kid) == blockKidLen }

// splitBlockKid returns a block key id's block (hex) and slot.
func splitBlockKid(kid string) (string, int, error) {
	b, err := hex.DecodeString(kid)
	if err != nil || len(b) != blockIDSize+slotSize {
		return "", 0, fmt.Errorf("%w: key id %q", ErrCorrupt, kid)
	}
	return kid[:2*blockIDSize], int(binary.BigEndian.Uint16(b[blockIDSize:])), nil
}

// openBlock unwraps a stored block into its keys' bytes, which the
// caller clears; current says whether the master key (not a read master
// key) wrapped it.
func (v *Vault) openBlock(blockHex string, wrapped []byte) (plain []byte, current bool, err error) {
	plain, current, err = v.unwrapAny(blockName(blockHex), wrapped)
	if err != nil {
		return nil, false, err
	}
	if len(plain)%keySize != 0 {
		clear(plain)
		return nil, false, fmt.Errorf("%w: key block of %d bytes", ErrCorrupt, len(plain))
	}
	return plain, current, nil
}

// loadBlockKey reads one slot of a stored block, with the lead's own
// subject in the same request: its purge marker means shredded. A zeroed
// slot was shredded too (its lead's marker is written first). A block
// read before is kept (blockCache), so the next leads of the block cost
// only the marker's check.
func (v *Vault) loadBlockKey(ctx context.Context, leadID, kid string) ([keySize]byte, error) {
	var dek [keySize]byte
	blockHex, slot, err := splitBlockKid(kid)
	if err != nil {
		return dek, fmt.Errorf("vault: lead %s: %w", leadID, err)
	}
	subject := v.prefix + blockName(blockHex)
	plain, cached := v.blockCache.get(blockHex)
	if cached {
		// A cached block may be older than a shred of this lead; the
		// lead's marker, written before the block is, says so. One
		// subject: a plain direct get, cheaper than a batch.
		m, err := v.stream.GetLastMsgForSubject(ctx, v.prefix+leadID)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return dek, fmt.Errorf("vault: load key for lead %s: %w", leadID, err)
		case isMarker(m.Header):
			return dek, fmt.Errorf("vault: lead %s: %w", leadID, ErrShredded)
		}
	} else {
		last, err := v.lastMsgsSure(ctx, subject, v.prefix+leadID, subject)
		if err != nil {
			return dek, fmt.Errorf("vault: load key for lead %s: %w", leadID, err)
		}
		if m, ok := last[v.prefix+leadID]; ok && isMarker(m.Header) {
			return dek, fmt.Errorf("vault: lead %s: %w", leadID, ErrShredded)
		}
		m, ok := last[subject]
		if !ok {
			return dek, fmt.Errorf("vault: lead %s: %w", leadID, ErrNoKey)
		}
		if plain, _, err = v.openBlock(blockHex, m.Data); err != nil {
			return dek, fmt.Errorf("vault: stored key block for lead %s (wrong MasterKey?): %w", leadID, err)
		}
		v.blockCache.put(blockHex, plain)
	}
	if (slot+1)*keySize > len(plain) {
		return dek, fmt.Errorf("vault: lead %s: %w: slot %d of a %d-key block", leadID, ErrCorrupt, slot, len(plain)/keySize)
	}
	copy(dek[:], plain[slot*keySize:])
	if dek == ([keySize]byte{}) {
		return dek, fmt.Errorf("vault: lead %s: %w", leadID, ErrShredded)
	}
	return dek, nil
}

// shredSlot destroys one slot of a block: the block is stored again with
// the slot zeroed (rewriteBlock).
func (v *Vault) shredSlot(ctx context.Context, kid string) error {
	blockHex, slot, err := splitBlockKid(kid)
	if err != nil {
		return err
	}
	_, err = v.rewriteBlock(ctx, blockHex, func(plain []byte, _ bool) (bool, error) {
		if (slot+1)*keySize > len(plain) {
			return false, fmt.Errorf("%w: slot %d of a %d-key block", ErrCorrupt, slot, len(plain)/keySize)
		}
		key := plain[slot*keySize : (slot+1)*keySize]
		if [keySize]byte(key) == ([keySize]byte{}) {
			return false, nil // shredded before
		}
		clear(key)
		return true, nil
	})
	return err
}

// rewriteBlock stores a block again, wrapped with the master key, when
// edit changes its keys (or says to for another reason), on condition
// that it did not change meanwhile, and erases the message before.
// Versions left by a rewrite cut short are erased first, so that the
// subject's history limit (2) never drops one the ordinary way, which
// leaves its bytes on disk. edit gets the block's keys and whether the
// master key wrapped them; it reports whether to store them again.
func (v *Vault) rewriteBlock(ctx context.Context, blockHex string, edit func(plain []byte, current bool) (bool, error)) (bool, error) {
	name := blockName(blockHex)
	subject := v.prefix + name
	for {
		seqs, err := v.keySeqs(ctx, subject)
		if err != nil {
			return false, err
		}
		if len(seqs) == 0 {
			return false, nil // no such block: nothing it names was ever stored
		}
		last := seqs[len(seqs)-1]
		for _, seq := range seqs[:len(seqs)-1] {
			if err := v.erase(ctx, seq); err != nil {
				return false, err
			}
		}
		m, err := v.stream.GetMsg(ctx, last)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // another rewrite meanwhile
		}
		if err != nil {
			return false, fmt.Errorf("read key block: %w", err)
		}
		plain, current, err := v.openBlock(blockHex, m.Data)
		if err != nil {
			return false, fmt.Errorf("key block %s: %w", blockHex, err)
		}
		write, err := edit(plain, current)
		if err != nil || !write {
			clear(plain)
			return false, err
		}
		msg := &nats.Msg{Subject: subject, Data: seal(v.master, name, plain)}
		clear(plain)
		_, err = v.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(last))
		if eventstore.IsWrongLastSequence(err) {
			continue // another rewrite came first: again, on its version
		}
		if err != nil {
			return false, fmt.Errorf("rewrite key block: %w", err)
		}
		return true, v.erase(ctx, last)
	}
}

// erase overwrites a stored message on disk and removes it.
func (v *Vault) erase(ctx context.Context, seq uint64) error {
	if err := v.stream.SecureDeleteMsg(ctx, seq); err != nil {
		// A racing Shred may have erased it first; the delete API
		// reports that only as text, so look again.
		if _, gerr := v.stream.GetMsg(ctx, seq); !errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("erase key: %w", err)
		}
	}
	return nil
}

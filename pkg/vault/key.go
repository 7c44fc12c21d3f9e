package vault

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// Sealed data and wrapped keys share one layout:
//
//	version (1 byte) | [key id (8 or 10 bytes), versions 2 and 3] | nonce (12 bytes) | AES-256-GCM ciphertext + tag (16 bytes)
//
// with the lead id as additional data, so that data sealed for one lead does
// not open as another's. Version 1 is sealed with a lead's only key (stored
// under the lead id), version 2 with one of its keys, named by the key id
// (stored under lead id "." key id), version 3 with a key from a block,
// named by the block id (8 bytes) and the slot (2 bytes, big-endian).
// Wrapped keys and blocks are version 1, with the name they are stored
// under as additional data. The version byte leaves room for another
// cipher or a rotated master key.
const (
	formatV1  = 1
	formatV2  = 2
	formatV3  = 3
	kidSize   = 8
	nonceSize = 12
	tagSize   = 16
	overhead  = 1 + nonceSize + tagSize
)

// Key is one of a lead's data keys (DEK), held in memory. A Key from NewKey
// can seal before it is saved; it must be saved before anything it sealed is
// needed again.
type Key struct {
	leadID string
	kid    string // hex; "" for a lead's only key of the first format
	dek    [keySize]byte
	aead   cipher.AEAD
}

// NewKey makes a random key for the lead, with a random key id, in memory
// only: Save stores it. A lead may have several keys (each capture can make
// one without asking which exist), and Shred destroys them all. This lets a
// caller seal its event's fields first and then store the key concurrently
// with its own append. It returns an error when the lead id is not a valid KV
// key token.
func (v *Vault) NewKey(leadID string) (*Key, error) {
	if err := checkLeadID(leadID); err != nil {
		return nil, err
	}
	var kid [kidSize]byte
	// crypto/rand.Read never fails since Go 1.24; it crashes the program
	// instead of returning a predictable key.
	_, _ = rand.Read(kid[:])
	k := &Key{leadID: leadID, kid: hex.EncodeToString(kid[:])}
	_, _ = rand.Read(k.dek[:])
	aead, err := newAEAD(k.dek[:])
	if err != nil {
		return nil, fmt.Errorf("vault: new key for lead %s: %w", leadID, err)
	}
	k.aead = aead
	return k, nil
}

// LeadID is the lead the key belongs to.
func (k *Key) LeadID() string { return k.leadID }

// ID is the key's name in the bucket: the lead id and, for keys made by
// NewKey, "." and the key id.
func (k *Key) ID() string { return keyID(k.leadID, k.kid) }

func keyID(leadID, kid string) string {
	if kid == "" {
		return leadID
	}
	return leadID + "." + kid
}

// Seal encrypts plaintext with the key (AES-256-GCM, random nonce, additional
// data = lead id). Sealing the same plaintext twice gives different outputs.
// It fails only for a Key not made by NewKey or Key.
func (k *Key) Seal(plaintext []byte) ([]byte, error) {
	if k == nil || k.aead == nil {
		return nil, fmt.Errorf("vault: seal: key not made by NewKey")
	}
	if k.kid == "" {
		return seal(k.aead, k.leadID, plaintext), nil
	}
	kid, err := hex.DecodeString(k.kid)
	if err != nil {
		return nil, fmt.Errorf("vault: seal: key id %q: %w", k.kid, err)
	}
	out := make([]byte, 1+len(kid)+nonceSize, overhead+len(kid)+len(plaintext))
	out[0] = formatV2
	if isBlockKid(k.kid) {
		out[0] = formatV3
	}
	copy(out[1:], kid)
	nonce := out[1+len(kid):]
	_, _ = rand.Read(nonce)
	return k.aead.Seal(out, nonce, plaintext, []byte(k.leadID)), nil
}

func seal(aead cipher.AEAD, ad string, plaintext []byte) []byte {
	out := make([]byte, 1+nonceSize, overhead+len(plaintext))
	out[0] = formatV1
	// A random 96-bit nonce is safe for far more messages than one lead
	// (or the master key, wrapping one DEK per key) will ever seal.
	_, _ = rand.Read(out[1 : 1+nonceSize])
	return aead.Seal(out, out[1:1+nonceSize], plaintext, []byte(ad))
}

// SealedKeyID names the key that sealed data: what Shred needs of a key
// from a block (Take). It fails, wrapping ErrCorrupt, when the data is not
// sealed data.
func SealedKeyID(sealed []byte) (string, error) { return sealedKeyID(sealed) }

// sealedKeyID checks the layout of sealed data before any I/O is spent on
// it, and returns the id of the key that sealed it ("" for version 1).
func sealedKeyID(sealed []byte) (string, error) {
	switch {
	case len(sealed) < overhead:
		return "", fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(sealed))
	case sealed[0] == formatV1:
		return "", nil
	case sealed[0] == formatV2 && len(sealed) >= overhead+kidSize:
		return hex.EncodeToString(sealed[1 : 1+kidSize]), nil
	case sealed[0] == formatV3 && len(sealed) >= overhead+blockIDSize+slotSize:
		return hex.EncodeToString(sealed[1 : 1+blockIDSize+slotSize]), nil
	case sealed[0] == formatV2, sealed[0] == formatV3:
		return "", fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(sealed))
	}
	return "", fmt.Errorf("%w: unknown format version %d", ErrCorrupt, sealed[0])
}

// checkSealed checks the layout of version 1 data (wrapped keys).
func checkSealed(sealed []byte) error {
	if len(sealed) < overhead {
		return fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(sealed))
	}
	if sealed[0] != formatV1 {
		return fmt.Errorf("%w: unknown format version %d", ErrCorrupt, sealed[0])
	}
	return nil
}

// open decrypts data that passed sealedKeyID or checkSealed.
func open(aead cipher.AEAD, ad string, sealed []byte) ([]byte, error) {
	body := sealed[1:]
	switch sealed[0] {
	case formatV2:
		body = sealed[1+kidSize:]
	case formatV3:
		body = sealed[1+blockIDSize+slotSize:]
	}
	plain, err := aead.Open(nil, body[:nonceSize], body[nonceSize:], []byte(ad))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return plain, nil
}

// openSealed decrypts with a raw DEK. The AES key schedule built here is
// garbage afterwards, not zeroed: Go offers no way to wipe it.
func openSealed(dek *[keySize]byte, leadID string, sealed []byte) ([]byte, error) {
	aead, err := newAEAD(dek[:])
	if err != nil {
		return nil, err
	}
	return open(aead, leadID, sealed)
}

// Key returns a stored key of the lead, to seal more of its data (a later
// submission): its only key of the first format if it has one, else the one
// saved last. Errors wrap ErrShredded or ErrNoKey as Open's do.
func (v *Vault) Key(ctx context.Context, leadID string) (*Key, error) {
	if err := checkLeadID(leadID); err != nil {
		return nil, err
	}
	kid, dek, err := v.sealingKey(ctx, leadID)
	if err != nil {
		return nil, err
	}
	k := &Key{leadID: leadID, kid: kid, dek: dek}
	clear(dek[:])
	aead, err := newAEAD(k.dek[:])
	if err != nil {
		return nil, fmt.Errorf("vault: key for lead %s: %w", leadID, err)
	}
	k.aead = aead
	return k, nil
}

// KeyOf returns the key that sealed data of the lead, to seal more of its
// data with that key: what a process that reads the lead's keys but makes
// none (handoff) seals with, so that the lead's erasure shreds it too.
// Errors wrap ErrShredded, ErrNoKey or ErrCorrupt as Open's do.
func (v *Vault) KeyOf(ctx context.Context, leadID string, sealed []byte) (*Key, error) {
	kid, dek, err := v.sealedDEK(ctx, leadID, sealed)
	if err != nil {
		return nil, err
	}
	// A block's key is not stored under its lead: only opening sealed
	// (its additional data is the lead id) shows the key is this lead's.
	if _, err := openSealed(&dek, leadID, sealed); err != nil {
		clear(dek[:])
		return nil, fmt.Errorf("vault: key of lead %s: %w", leadID, err)
	}
	k := &Key{leadID: leadID, kid: kid, dek: dek}
	clear(dek[:])
	if k.aead, err = newAEAD(k.dek[:]); err != nil {
		return nil, fmt.Errorf("vault: key of lead %s: %w", leadID, err)
	}
	return k, nil
}

// CachedKey is Key without I/O: the key the lead's data is sealed with
// next if this vault holds it in its cache, else false.
func (v *Vault) CachedKey(leadID string) (*Key, bool) {
	if checkLeadID(leadID) != nil {
		return nil, false
	}
	id, dek, ok := v.cache.sealingKey(leadID)
	if !ok {
		return nil, false
	}
	k := &Key{leadID: leadID, kid: kidOf(leadID, id), dek: dek}
	clear(dek[:])
	aead, err := newAEAD(k.dek[:])
	if err != nil {
		return nil, false
	}
	k.aead = aead
	return k, true
}

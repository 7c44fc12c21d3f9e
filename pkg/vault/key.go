package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
)

// Sealed data and wrapped keys share one format:
//
//	version (1 byte) | nonce (12 bytes) | AES-256-GCM ciphertext + tag (16 bytes)
//
// with the lead id as additional data, so that data sealed for one lead does
// not open as another's. The version byte leaves room for another cipher or a
// rotated master key.
const (
	formatV1  = 1
	nonceSize = 12
	tagSize   = 16
	overhead  = 1 + nonceSize + tagSize
)

// Key is one lead's data key (DEK), held in memory. A Key from NewKey can seal
// before it is saved; it must be saved before anything it sealed is needed
// again.
type Key struct {
	leadID string
	dek    [keySize]byte
	aead   cipher.AEAD
}

// NewKey makes a random key for the lead, in memory only: Save stores it. This
// lets a caller seal its event's fields first and then store the key
// concurrently with its own append. It returns an error when the lead id is
// not a valid KV key.
func (v *Vault) NewKey(leadID string) (*Key, error) {
	if err := checkLeadID(leadID); err != nil {
		return nil, err
	}
	k := &Key{leadID: leadID}
	// crypto/rand.Read never fails since Go 1.24; it crashes the program
	// instead of returning a predictable key.
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

// Seal encrypts plaintext with the key (AES-256-GCM, random nonce, additional
// data = lead id). Sealing the same plaintext twice gives different outputs.
// It fails only for a Key not made by NewKey.
func (k *Key) Seal(plaintext []byte) ([]byte, error) {
	if k == nil || k.aead == nil {
		return nil, fmt.Errorf("vault: seal: key not made by NewKey")
	}
	return seal(k.aead, k.leadID, plaintext), nil
}

func seal(aead cipher.AEAD, leadID string, plaintext []byte) []byte {
	out := make([]byte, 1+nonceSize, overhead+len(plaintext))
	out[0] = formatV1
	// A random 96-bit nonce is safe for far more messages than one lead
	// (or the master key, wrapping one DEK per lead) will ever seal.
	_, _ = rand.Read(out[1 : 1+nonceSize])
	return aead.Seal(out, out[1:1+nonceSize], plaintext, []byte(leadID))
}

// checkSealed rejects what cannot be sealed data before any I/O is spent on
// it.
func checkSealed(sealed []byte) error {
	if len(sealed) < overhead {
		return fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(sealed))
	}
	if sealed[0] != formatV1 {
		return fmt.Errorf("%w: unknown format version %d", ErrCorrupt, sealed[0])
	}
	return nil
}

// open decrypts data that passed checkSealed.
func open(aead cipher.AEAD, leadID string, sealed []byte) ([]byte, error) {
	plain, err := aead.Open(nil, sealed[1:1+nonceSize], sealed[1+nonceSize:], []byte(leadID))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return plain, nil
}

// openSealed decrypts with a raw DEK. The AES key schedule built here is
// garbage afterwards, not zeroed: Go offers no way to wipe it.
func openSealed(dek *[keySize]byte, leadID string, sealed []byte) ([]byte, error) {
	block, err := aes.NewCipher(dek[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return open(aead, leadID, sealed)
}

// Key returns the stored key of a lead, to seal more of its data (a later
// submission). Errors wrap ErrShredded or ErrNoKey as Open's do.
func (v *Vault) Key(ctx context.Context, leadID string) (*Key, error) {
	if err := checkLeadID(leadID); err != nil {
		return nil, err
	}
	dek, err := v.dek(ctx, leadID)
	if err != nil {
		return nil, err
	}
	k := &Key{leadID: leadID, dek: dek}
	clear(dek[:])
	aead, err := newAEAD(k.dek[:])
	if err != nil {
		return nil, fmt.Errorf("vault: key for lead %s: %w", leadID, err)
	}
	k.aead = aead
	return k, nil
}

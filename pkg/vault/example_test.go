package vault_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/natsserver"
	"github.com/leadflow/leadflow/pkg/vault"
)

func Example() {
	// A throwaway embedded JetStream; services connect to the real one.
	dir, err := os.MkdirTemp("", "vault-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := natsserver.Start(natsserver.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}

	// Services read both keys from their secret store.
	masterKey, blindKey := make([]byte, 32), make([]byte, 32)
	rand.Read(masterKey)
	rand.Read(blindKey)

	ctx := context.Background()
	v, err := vault.New(ctx, js, vault.Config{MasterKey: masterKey, BlindKey: blindKey})
	if err != nil {
		log.Fatal(err)
	}

	// Capturing a lead: seal its personal fields with a new key (stored
	// ahead, in a block: no write here), and blind its email for dedupe.
	// The event carries only these.
	key, err := v.Take(ctx, "0b7e5c2a-6f1d-4c39-9a4e-2f8d1c7b3e10")
	if err != nil {
		log.Fatal(err)
	}
	email, err := key.Seal([]byte("alice@example.com"))
	if err != nil {
		log.Fatal(err)
	}
	_ = v.Blind("email", "alice@example.com") // 32 characters of [a-z2-7]

	// Reading the history back.
	plain, err := v.Open(ctx, key.LeadID(), email)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(plain))

	// Erasing the lead: its events stay, their personal fields are gone.
	// Shred is given the keys its sealed fields name.
	kid, err := vault.SealedKeyID(email)
	if err != nil {
		log.Fatal(err)
	}
	if err := v.Shred(ctx, key.LeadID(), kid); err != nil {
		log.Fatal(err)
	}
	_, err = v.Open(ctx, key.LeadID(), email)
	fmt.Println(errors.Is(err, vault.ErrShredded))
	// Output:
	// alice@example.com
	// true
}

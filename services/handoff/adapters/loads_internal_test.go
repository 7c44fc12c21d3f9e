package adapters

import (
	"bytes"
	"maps"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/services/handoff/app"
)

// Reservations go through the compact encoding and come back as they
// were, to the millisecond; values stored as JSON before still read; a
// lead id that is not a UUID is kept, in JSON.
func TestReservationsEncoding(t *testing.T) {
	at := time.UnixMilli(time.Now().UnixMilli())
	r := app.Reservations{uuid.NewString(): at, uuid.NewString(): at.Add(-time.Hour)}
	b, err := encodeReservations(r)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != reservationsV1 || len(b) != 1+24*len(r) {
		t.Fatalf("encoded %d bytes, version %d", len(b), b[0])
	}
	for _, in := range []struct {
		name string
		r    app.Reservations
		enc  func(app.Reservations) ([]byte, error)
	}{
		{"compact", r, encodeReservations},
		{"json, as stored before", r, encodeReservationsJSON},
		{"an id that is no UUID", app.Reservations{"legacy-7": at}, encodeReservations},
		{"none", app.Reservations{}, encodeReservations},
	} {
		b, err := in.enc(in.r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeReservations(b)
		if err != nil {
			t.Fatalf("%s: %v", in.name, err)
		}
		if !maps.EqualFunc(got, in.r, time.Time.Equal) {
			t.Errorf("%s: got %v, want %v", in.name, got, in.r)
		}
	}
	if b, _ := encodeReservations(app.Reservations{"legacy-7": at}); !bytes.HasPrefix(b, []byte("{")) {
		t.Errorf("an id that is no UUID encoded as %q, want JSON", b)
	}
	if _, err := decodeReservations(append(b, 0)); err == nil {
		t.Error("a truncated entry decoded")
	}
}

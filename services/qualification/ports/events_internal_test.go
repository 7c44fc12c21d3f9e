package ports

import (
	"context"
	"testing"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/services/qualification/app"
)

// A message the re-score's scan cannot decode holds the re-score back
// (dead-lettered) only within the scan: after its end it is the live
// scorer's business, and the scan passes it.
func TestTheScanPassesWhatComesAfterItsEnd(t *testing.T) {
	e := &Events{}
	job := app.Rescore{Version: 2, End: 100}
	const lead = "0199aaaa-0000-7000-8000-000000000000"
	bad := consume.Msg{Seq: 101, Subject: eventstore.LeadSubject(lead), Key: lead, Data: []byte{0xff}}
	if err := e.scanned(job)(context.Background(), bad); err != nil {
		t.Errorf("after the scan's end: %v, want it passed", err)
	}
	bad.Seq = 99
	if err := e.scanned(job)(context.Background(), bad); !consume.IsPermanent(err) {
		t.Errorf("within the scan: %v, want a permanent error (dead-lettered)", err)
	}
}

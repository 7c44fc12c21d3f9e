package app_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/intake/adapters"
	"github.com/leadflow/leadflow/services/intake/app"
)

// Two rows of one chunk on one lead, linked only through that lead (one
// by its external id, the next by its email), are written in row order:
// the lead shows the later row's answers. So when the chunk's look-up
// failed (blind): nothing then says which rows share a lead, so its rows
// go one at a time (the external id's look-ups slow, so that side by
// side the second row would be written first).
func TestImportRowsOnOneLeadKeepTheirOrder(t *testing.T) {
	for _, blind := range []bool{false, true} {
		t.Run(fmt.Sprintf("blind=%v", blind), func(t *testing.T) {
			f := newFixture(t)
			ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
			known := capture("known@order.example", "")
			known.ExternalID = &eventv1.ExternalId{System: "crm", Id: "order-1"}
			r, err := f.app.CaptureLead(ctx, known, meta)
			if err != nil {
				t.Fatal(err)
			}
			byExt := capture("other@order.example", "")
			byExt.ExternalID, byExt.Contact.FirstName = known.ExternalID, "Old"
			byEmail := capture("known@order.example", "")
			byEmail.Contact.FirstName = "New"
			a := f.app
			if blind {
				a = app.New(&blindOnce{Leads: f.leads.Leads}, adapters.NewCampaigns(f.store), f.keys)
			}
			res := a.ImportLeads(ctx, []app.ImportRow{{Row: 1, Capture: byExt}, {Row: 2, Capture: byEmail}}, meta)
			for _, x := range res {
				if x.Err != nil || x.Result.LeadID != r.LeadID {
					t.Fatalf("row %d: %+v, %v; want it on %s", x.Row, x.Result, x.Err, r.LeadID)
				}
			}
			if res[1].Result.Version <= res[0].Result.Version {
				t.Errorf("row 2 written at %d, before row 1 at %d", res[1].Result.Version, res[0].Result.Version)
			}
			if v, err := f.app.GetLead(ctx, r.LeadID); err != nil || v.Contact.GetFirstName() != "New" {
				t.Fatalf("the lead after the import: %q, %v; want the later row's New", v.Contact.GetFirstName(), err)
			}
		})
	}
}

// The same through a merge: a keyed row for the absorbed lead's person
// lands on the survivor, and a later row of the chunk for the survivor's
// own person is written after it, keyed or not: two keyed rows go the
// whole way one after the other, though their look-ups found two
// different holders (the first one's own look-up slow, so that side by
// side the second would be written first).
func TestImportRowsOnOneLeadThroughAMergeKeepTheirOrder(t *testing.T) {
	for _, ownKey := range []string{"", "k-order-2"} {
		t.Run("own key "+ownKey, func(t *testing.T) {
			f := newFixture(t)
			ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
			survivor, absorbed := captured(t, f.app, "l@order-merge.example"), captured(t, f.app, "m@order-merge.example")
			if _, err := f.app.MergeLeads(ctx, app.MergeLeads{Survivor: survivor, Absorbed: absorbed, Reason: "same person"}, meta); err != nil {
				t.Fatal(err)
			}
			viaMerged := capture("m@order-merge.example", "k-order-1")
			viaMerged.Contact.FirstName = "Old"
			own := capture("l@order-merge.example", ownKey)
			own.Contact.FirstName = "New"
			slow := app.New(&slowLookUp{Leads: f.leads.Leads, of: absorbed}, adapters.NewCampaigns(f.store), f.keys)
			res := slow.ImportLeads(ctx, []app.ImportRow{{Row: 1, Capture: viaMerged}, {Row: 2, Capture: own}}, meta)
			for _, x := range res {
				if x.Err != nil || x.Result.LeadID != survivor {
					t.Fatalf("row %d: %+v, %v; want it on the survivor %s", x.Row, x.Result, x.Err, survivor)
				}
			}
			if res[1].Result.Version <= res[0].Result.Version {
				t.Errorf("row 2 written at %d, before row 1 at %d", res[1].Result.Version, res[0].Result.Version)
			}
			if v, err := f.app.GetLead(ctx, survivor); err != nil || v.Contact.GetFirstName() != "New" {
				t.Fatalf("the survivor after the import: %q, %v; want the later row's New", v.Contact.GetFirstName(), err)
			}
		})
	}
}

// A row whose write lost its race (another write on its lead between the
// look-up and the write) goes the whole way in order with the chunk's
// later rows on that lead, one that reaches it through a merge included:
// its look-up held up, it still runs first.
func TestImportRowThatLostItsRaceKeepsItsOrder(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	survivor := captured(t, f.app, "l@race-order.example")
	withExt := capture("a@race-order.example", "")
	withExt.ExternalID = &eventv1.ExternalId{System: "crm", Id: "race-order-1"}
	r, err := f.app.CaptureLead(ctx, withExt, meta)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.MergeLeads(ctx, app.MergeLeads{Survivor: survivor, Absorbed: r.LeadID, Reason: "same"}, meta); err != nil {
		t.Fatal(err)
	}
	byEmail := capture("l@race-order.example", "")
	byEmail.Contact.FirstName = "Old"
	byExt := capture("other@race-order.example", "")
	byExt.ExternalID, byExt.Contact.FirstName = withExt.ExternalID, "New"
	slow := app.New(&slowLookUp{Leads: f.leads.Leads, of: survivor}, adapters.NewCampaigns(f.store), f.keys)
	batch := slow.PrepareImport(ctx, []app.ImportRow{{Row: 1, Capture: byEmail}, {Row: 2, Capture: byExt}}, meta, nil)
	if _, err := f.app.RecordActivity(ctx, app.RecordActivity{LeadID: survivor, ActivityID: "between",
		Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT}, meta); err != nil {
		t.Fatal(err)
	}
	res := batch.Write(ctx)
	for _, x := range res {
		if x.Err != nil || x.Result.LeadID != survivor {
			t.Fatalf("row %d: %+v, %v; want it on %s", x.Row, x.Result, x.Err, survivor)
		}
	}
	if res[1].Result.Version <= res[0].Result.Version {
		t.Errorf("row 2 written at %d, before row 1 at %d", res[1].Result.Version, res[0].Result.Version)
	}
	if v, err := f.app.GetLead(ctx, survivor); err != nil || v.Contact.GetFirstName() != "New" {
		t.Fatalf("the lead after the import: %q, %v; want the later row's New", v.Contact.GetFirstName(), err)
	}
}

// slowLookUp is the real lead store whose look-ups of the email that of's
// id is the token of alone (a capture's own, not an import chunk's) take
// a while.
type slowLookUp struct {
	*adapters.Leads
	of string
}

func (l *slowLookUp) Holders(ctx context.Context, keys ...app.ClaimKey) (map[app.ClaimKey]app.Holder, error) {
	if len(keys) == 1 && keys[0].Token == l.of {
		time.Sleep(300 * time.Millisecond)
	}
	return l.Leads.Holders(ctx, keys...)
}

// blindOnce is the real lead store whose first look-up fails and whose
// look-ups of an external id take a while.
type blindOnce struct {
	*adapters.Leads
	failed atomic.Bool
}

func (l *blindOnce) Holders(ctx context.Context, keys ...app.ClaimKey) (map[app.ClaimKey]app.Holder, error) {
	if l.failed.CompareAndSwap(false, true) {
		return nil, errors.New("look-up failed")
	}
	if slices.ContainsFunc(keys, func(k app.ClaimKey) bool { return k.Kind == app.KindExt }) {
		time.Sleep(300 * time.Millisecond)
	}
	return l.Leads.Holders(ctx, keys...)
}

// A row whose write fails (not for its content) holds back the chunk's
// later rows of its person: written, they would come before it when it
// is sent again. Sent again, the two are stored in row order.
func TestImportRowAfterAFailedOneIsHeldBack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first string // the first row's idempotency key: keyed rows go the whole way
		crash func(f *fixture)
	}{
		{"whole way", "k-held-1", func(f *fixture) { f.leads.crashNext.Store(true) }},
		{"chunk write", "", func(f *fixture) { f.leads.crashEach.Store(true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
			first := capture("a@held.example", tc.first)
			first.Contact.FirstName = "First"
			second := capture("a@held.example", "k-held-2")
			second.Contact.FirstName = "Second"
			rows := []app.ImportRow{{Row: 1, Capture: first}, {Row: 2, Capture: second}}
			tc.crash(f)
			res := f.app.ImportLeads(ctx, rows, meta)
			if res[0].Err == nil || app.RowsOwnFault(res[0].Err) {
				t.Fatalf("row 1: %+v, %v; want its write failed", res[0].Result, res[0].Err)
			}
			if !errors.Is(res[1].Err, app.ErrHeldBack) {
				t.Fatalf("row 2: %+v, %v; want it held back", res[1].Result, res[1].Err)
			}
			res = f.app.ImportLeads(ctx, rows, meta)
			for _, x := range res {
				if x.Err != nil {
					t.Fatalf("sent again, row %d: %v", x.Row, x.Err)
				}
			}
			if res[0].Result.Outcome != app.Created || res[1].Result.Version <= res[0].Result.Version {
				t.Errorf("sent again: row 1 %+v, row 2 %+v; want row 1 creating the lead, row 2 after it", res[0].Result, res[1].Result)
			}
			if v, err := f.app.GetLead(ctx, res[1].Result.LeadID); err != nil || v.Contact.GetFirstName() != "Second" {
				t.Fatalf("the lead: %q, %v; want the later row's Second", v.Contact.GetFirstName(), err)
			}
		})
	}
}

// Two rows of a chunk that land on one lead (one through a merge) are
// not written side by side: the later waits behind the earlier, so when
// the earlier's write fails it is held back, not written (a lost race of
// the earlier would store it after the later), and sent again both are
// stored in row order.
func TestImportRowsOnOneLeadByTwoIdentitiesAreNotWrittenSideBySide(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	survivor, absorbed := captured(t, f.app, "l@fail-together.example"), captured(t, f.app, "m@fail-together.example")
	if _, err := f.app.MergeLeads(ctx, app.MergeLeads{Survivor: survivor, Absorbed: absorbed, Reason: "same person"}, meta); err != nil {
		t.Fatal(err)
	}
	f.leads.crashEach.Store(true)
	rows := []app.ImportRow{{Row: 1, Capture: capture("m@fail-together.example", "")}, {Row: 2, Capture: capture("l@fail-together.example", "")}}
	res := f.app.ImportLeads(ctx, rows, meta)
	if !errors.Is(res[0].Err, errCrash) || !errors.Is(res[1].Err, app.ErrHeldBack) {
		t.Fatalf("row 1: %v; row 2: %v; want row 1's write failed, row 2 held back", res[0].Err, res[1].Err)
	}
	res = f.app.ImportLeads(ctx, rows, meta)
	if res[0].Err != nil || res[1].Err != nil || res[0].Result.LeadID != survivor || res[1].Result.LeadID != survivor ||
		res[1].Result.Version <= res[0].Result.Version {
		t.Fatalf("sent again: %+v %v, %+v %v; want both on %s in row order", res[0].Result, res[0].Err, res[1].Result, res[1].Err, survivor)
	}
}

// A row that fails before its write (its campaign could not be read)
// holds back its person's later rows too.
func TestImportRowFailedBeforeItsWriteHoldsBackItsPerson(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	campaigns := &unreadableOnce{Campaigns: adapters.NewCampaigns(f.store)}
	campaigns.armed.Store(true)
	a := app.New(f.leads.Leads, campaigns, f.keys)
	first := capture("a@campaign-down.example", "")
	first.Attribution = &eventv1.Attribution{Source: "ads", CampaignId: "spring"}
	res := a.ImportLeads(ctx, []app.ImportRow{{Row: 1, Capture: first}, {Row: 2, Capture: capture("a@campaign-down.example", "")}}, meta)
	if res[0].Err == nil || app.RowsOwnFault(res[0].Err) {
		t.Fatalf("row 1: %+v, %v; want its campaign's read failed", res[0].Result, res[0].Err)
	}
	if !errors.Is(res[1].Err, app.ErrHeldBack) {
		t.Fatalf("row 2: %+v, %v; want it held back", res[1].Result, res[1].Err)
	}
}

// unreadableOnce is the real campaign store whose next look-up fails.
type unreadableOnce struct {
	app.Campaigns
	armed atomic.Bool
}

func (c *unreadableOnce) Exists(ctx context.Context, id string) (bool, error) {
	if c.armed.CompareAndSwap(true, false) {
		return false, errors.New("campaigns out of reach")
	}
	return c.Campaigns.Exists(ctx, id)
}

// A row that fails before its write holds back a later row on its lead
// that shares no identity with it (the lead's external id).
func TestImportRowFailedBeforeItsWriteHoldsBackItsLead(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	known := capture("known@campaign-down.example", "")
	known.ExternalID = &eventv1.ExternalId{System: "crm", Id: "down-1"}
	if _, err := f.app.CaptureLead(ctx, known, meta); err != nil {
		t.Fatal(err)
	}
	campaigns := &unreadableOnce{Campaigns: adapters.NewCampaigns(f.store)}
	campaigns.armed.Store(true)
	a := app.New(f.leads.Leads, campaigns, f.keys)
	first := capture("known@campaign-down.example", "")
	first.Attribution = &eventv1.Attribution{Source: "ads", CampaignId: "spring"}
	byExt := capture("other@campaign-down.example", "")
	byExt.ExternalID = known.ExternalID
	res := a.ImportLeads(ctx, []app.ImportRow{{Row: 1, Capture: first}, {Row: 2, Capture: byExt}}, meta)
	if res[0].Err == nil || app.RowsOwnFault(res[0].Err) {
		t.Fatalf("row 1: %+v, %v; want its campaign's read failed", res[0].Result, res[0].Err)
	}
	if !errors.Is(res[1].Err, app.ErrHeldBack) {
		t.Fatalf("row 2: %+v, %v; want it held back", res[1].Result, res[1].Err)
	}
	// ... also a plain row (no external id, which always goes the whole
	// way) reaching the lead by another email the lead claimed.
	alias := capture("alias@campaign-down.example", "")
	alias.ExternalID = known.ExternalID
	if _, err := f.app.CaptureLead(ctx, alias, meta); err != nil {
		t.Fatal(err)
	}
	campaigns.armed.Store(true)
	plain := capture("alias@campaign-down.example", "")
	res = a.ImportLeads(ctx, []app.ImportRow{{Row: 1, Capture: first}, {Row: 2, Capture: plain}}, meta)
	if res[0].Err == nil || app.RowsOwnFault(res[0].Err) {
		t.Fatalf("again, row 1: %+v, %v; want its campaign's read failed", res[0].Result, res[0].Err)
	}
	if !errors.Is(res[1].Err, app.ErrHeldBack) {
		t.Fatalf("again, row 2 by another email: %+v, %v; want it held back", res[1].Result, res[1].Err)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/intake/app"
)

type env struct {
	cfg    Config
	nats   *testenv.NATS
	client intakev1.IntakeServiceClient
	conn   *grpc.ClientConn
}

func hexKey(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// start runs the real service (run, as main calls it) on a free port
// against an embedded JetStream, and dials it.
func start(t testing.TB) *env {
	t.Helper()
	n := testenv.StartNATS(t)
	cfg := Config{Addr: "127.0.0.1:0", NATSURL: n.Server.URL(), Stream: "LEADFLOW", Replicas: 1,
		MasterKey: hexKey(t), BlindKey: hexKey(t), Grace: time.Second}
	return startWith(t, n, cfg)
}

// replica starts another intake process on the same server and keys, as
// a second replica would run.
func (e *env) replica(t testing.TB) *env {
	t.Helper()
	return startWith(t, e.nats, e.cfg)
}

func startWith(t testing.TB, n *testenv.NATS, cfg Config) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { done <- run(ctx, cfg, log, func(a net.Addr) { addrc <- a }) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("service did not start")
	}
	conn, err := grpc.NewClient(addr.String(), n.TLS.Dial()) // n.TLS: startAsUser
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run returned %v", err)
		}
	})
	return &env{cfg: cfg, nats: n, client: intakev1.NewIntakeServiceClient(conn), conn: conn}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func lead(email string) *intakev1.CaptureLeadRequest {
	return &intakev1.CaptureLeadRequest{
		Contact:     &eventv1.Contact{Email: email, FirstName: "Ada", LastName: "Lovelace", Phone: "+44 20 7946 0958"},
		Profile:     &eventv1.Profile{Company: "Analytical Engines", Title: "VP Engineering", Seniority: eventv1.Seniority_SENIORITY_VP, Employees: 250, Country: "gb"},
		Attribution: &eventv1.Attribution{Source: "web-form", UtmSource: "newsletter"},
	}
}

// counts is the last sequence of every stream the server holds, KV
// buckets included: any write anywhere moves one.
func (e *env) counts(t *testing.T) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	lister := e.nats.JS.ListStreams(ctxT(t))
	for info := range lister.Info() {
		if info.Config.Name == "KV_"+consume.DefaultMembersBucket || info.State.LastSeq == 0 {
			// Consumer groups' liveness, renewed every second; and a
			// stream that holds nothing yet (the timer group's dead
			// letters, made as intake starts).
			continue
		}
		out[info.Config.Name] = info.State.LastSeq
	}
	if err := lister.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) assertCounts(t *testing.T, before map[string]uint64) {
	t.Helper()
	if after := e.counts(t); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("something was written: streams went from %v to %v", before, after)
	}
}

func assertCodeAndField(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("want %v, got %v", code, err)
	}
	for _, v := range grpcserver.Violations(err) {
		if v.Field == field {
			return
		}
	}
	t.Fatalf("no violation for %s in %v", field, grpcserver.Violations(err))
}

func (e *env) streamMsgs(t *testing.T) uint64 {
	t.Helper()
	st, err := e.nats.JS.Stream(ctxT(t), "LEADFLOW")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestCaptureAndReadBackFromTheStream(t *testing.T) { testCaptureAndReadBackFromTheStream(t, start) }

func testCaptureAndReadBackFromTheStream(t *testing.T, start func(testing.TB) *env) {
	e := start(t)
	ctx := ctxT(t)
	res, err := e.client.CaptureLead(ctx, lead("Ada@Example.COM "))
	if err != nil {
		t.Fatal(err)
	}
	if res.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED || res.GetLeadId() == "" || res.GetVersion() == 0 {
		t.Fatalf("capture: %v", res)
	}
	got, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: res.GetLeadId()})
	if err != nil {
		t.Fatal(err)
	}
	l := got.GetLead()
	if l.GetContact().GetEmail() != "ada@example.com" || l.GetContact().GetPhone() != "+442079460958" {
		t.Errorf("contact not normalized or not opened: %v", l.GetContact())
	}
	if l.GetProfile().GetCountry() != "GB" || l.GetProfile().GetEmailDomain() != "example.com" {
		t.Errorf("profile: %v", l.GetProfile())
	}
	lc := l.GetLifecycle()
	if lc.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_NEW || lc.GetOwner().GetId() != "qualification" || lc.GetDeadline() == nil {
		t.Errorf("a new lead needs status NEW, an owner and a deadline: %v", lc)
	}
	if l.GetVersion() != res.GetVersion() || l.GetSubmissions() != 1 {
		t.Errorf("version %d submissions %d", l.GetVersion(), l.GetSubmissions())
	}
	tl, err := e.client.GetLeadTimeline(ctx, &intakev1.GetLeadTimelineRequest{LeadId: res.GetLeadId()})
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.GetEntries()) != 1 || tl.GetEntries()[0].GetEvent().GetEventType() != "LeadCaptured" ||
		!strings.Contains(tl.GetEntries()[0].GetSummary(), "captured from web-form") {
		t.Fatalf("timeline: %v", tl)
	}
	// Personal data never reaches the stream in the clear.
	raw, err := e.nats.JS.Stream(ctx, "LEADFLOW")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := raw.GetMsg(ctx, tl.GetEntries()[0].GetSequence())
	if err != nil {
		t.Fatal(err)
	}
	// The phone as given and as normalized: four digits alone turn up in
	// a hex UUID of the subject or headers about once in 400 runs.
	for _, secret := range []string{"ada@example.com", "Lovelace", "7946 0958", "2079460958", "VP Engineering", "Analytical Engines"} {
		if strings.Contains(string(msg.Data), secret) || strings.Contains(fmt.Sprint(msg.Header), secret) || strings.Contains(msg.Subject, secret) {
			t.Errorf("%q is in the stream in the clear", secret)
		}
	}
	// What stays clear of the role: its seniority, and the job function
	// of the sealed title.
	var ev eventv1.Event
	if err := proto.Unmarshal(msg.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if p := ev.GetLeadCaptured().GetProfile(); p.GetTitle() != "" || p.GetJobFunction() != eventv1.JobFunction_JOB_FUNCTION_ENGINEERING ||
		p.GetSeniority() != eventv1.Seniority_SENIORITY_VP {
		t.Errorf("stored profile: %v", p)
	}
}

func TestSameEmailIsOneLead(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	first, err := e.client.CaptureLead(ctx, lead("grace@navy.mil"))
	if err != nil {
		t.Fatal(err)
	}
	again := lead("  GRACE@navy.MIL")
	again.Contact.FirstName, again.Contact.LastName, again.Contact.Phone = "", "", ""
	again.Profile = &eventv1.Profile{Title: "Rear Admiral"}
	second, err := e.client.CaptureLead(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if second.GetLeadId() != first.GetLeadId() || second.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
		t.Fatalf("second capture: %v, first lead %s", second, first.GetLeadId())
	}
	got, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: first.GetLeadId()})
	if err != nil {
		t.Fatal(err)
	}
	// The later submission adds what it says and keeps the rest.
	l := got.GetLead()
	if l.GetSubmissions() != 2 || l.GetProfile().GetTitle() != "Rear Admiral" || l.GetProfile().GetCompany() != "Analytical Engines" ||
		l.GetContact().GetFirstName() != "Ada" || l.GetContact().GetEmail() != "grace@navy.mil" {
		t.Fatalf("lead after resubmission: %v", l)
	}
	// The same external id from another email is the same person too.
	byExt := lead("other@navy.mil")
	byExt.ExternalId = &eventv1.ExternalId{System: "hubspot", Id: "42"}
	a, err := e.client.CaptureLead(ctx, byExt)
	if err != nil {
		t.Fatal(err)
	}
	byExt2 := lead("third@navy.mil")
	byExt2.ExternalId = &eventv1.ExternalId{System: "hubspot", Id: "42"}
	b, err := e.client.CaptureLead(ctx, byExt2)
	if err != nil {
		t.Fatal(err)
	}
	if a.GetLeadId() != b.GetLeadId() || b.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
		t.Fatalf("external id dedupe: %v then %v", a, b)
	}
}

// An external id makes a repeated capture a no-op, as a key does: the
// other system's record sent again, the same, answers the first result
// and writes nothing, by CaptureLead or in an import. The record sent
// with something new is a resubmission.
func TestAnExternalIDRepeatedReturnsTheFirstAnswer(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	req := withExt(lead("repeat@crm.example"), "crm-77")
	first := e.capture(t, req)
	before := e.counts(t)
	again := e.capture(t, req)
	if again.GetLeadId() != first.GetLeadId() || !again.GetReplayed() || again.GetOutcome() != first.GetOutcome() || again.GetVersion() != first.GetVersion() {
		t.Fatalf("the record sent again answered %v, first %v", again, first)
	}
	e.assertCounts(t, before)
	stream, err := e.client.ImportLeads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&intakev1.ImportLeadsRequest{Row: 0, Lead: withExt(lead("repeat@crm.example"), "crm-77")}); err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	if got := importResults(t, stream); len(got) != 1 || got[0].GetLeadId() != first.GetLeadId() || !got[0].GetReplayed() || got[0].GetOutcome() != first.GetOutcome() || got[0].GetVersion() != first.GetVersion() {
		t.Fatalf("the record imported again: %v, want the first answer %v", got, first)
	}
	e.assertCounts(t, before)

	changed := withExt(lead("repeat@crm.example"), "crm-77")
	changed.Profile.Title = "CTO"
	if r := e.capture(t, changed); r.GetLeadId() != first.GetLeadId() || r.GetReplayed() || r.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
		t.Fatalf("the record with a new title: %v, want a resubmission", r)
	}
}

// A CRM record whose consent goes withdrawn, granted, withdrawn again,
// sent without a time: each change is stored, and only a record sent
// twice in a row is a retry.
func TestAnExternalIDGoingBackIsStoredAgain(t *testing.T) {
	e := start(t)
	with := func(s eventv1.ConsentStatus) *intakev1.CaptureLeadRequest {
		r := withExt(lead("flip@crm.example"), "crm-88")
		r.Consents = []*eventv1.Consent{{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: s}}
		return r
	}
	withdrawn, granted := eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN, eventv1.ConsentStatus_CONSENT_STATUS_GRANTED
	id := e.capture(t, with(withdrawn)).GetLeadId()
	for i, s := range []eventv1.ConsentStatus{granted, withdrawn} {
		r := e.capture(t, with(s))
		if r.GetLeadId() != id || r.GetReplayed() || r.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
			t.Fatalf("change %d to %v: %v, want a resubmission on %s", i, s, r, id)
		}
		if c := e.getLead(t, id).GetConsents(); len(c) != 1 || c[0].GetStatus() != s {
			t.Fatalf("after change %d to %v the lead has %v", i, s, c)
		}
		before := e.counts(t)
		if again := e.capture(t, with(s)); !again.GetReplayed() || again.GetVersion() != r.GetVersion() {
			t.Fatalf("change %d sent twice: %v, want the first answer %v", i, again, r)
		}
		e.assertCounts(t, before)
	}
	// A grant of that id sent with a key, or with a time, in between:
	// the withdrawal sent again after it is new too.
	for i, other := range []func(*intakev1.CaptureLeadRequest){
		func(r *intakev1.CaptureLeadRequest) { r.IdempotencyKey = "import-7" },
		func(r *intakev1.CaptureLeadRequest) { r.OccurredAt = timestamppb.Now() },
	} {
		g := with(granted)
		other(g)
		if r := e.capture(t, g); r.GetLeadId() != id || r.GetReplayed() {
			t.Fatalf("grant %d: %v", i, r)
		}
		if r := e.capture(t, with(withdrawn)); r.GetReplayed() {
			t.Fatalf("the withdrawal after grant %d: %v, want it stored", i, r)
		}
		if c := e.getLead(t, id).GetConsents(); len(c) != 1 || c[0].GetStatus() != withdrawn {
			t.Fatalf("after grant %d and the withdrawal the lead has %v", i, c)
		}
	}
}

func TestIdempotencyKeyReturnsTheFirstAnswer(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	req := lead("linus@kernel.org")
	req.IdempotencyKey = "form-7f3a"
	first, err := e.client.CaptureLead(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	before := e.counts(t)
	for range 3 {
		again, err := e.client.CaptureLead(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if again.GetLeadId() != first.GetLeadId() || !again.GetReplayed() || again.GetOutcome() != first.GetOutcome() || again.GetVersion() != first.GetVersion() {
			t.Fatalf("retry answered %v, first %v", again, first)
		}
	}
	// The key belongs to the caller's request: other content under it,
	// even another person, is refused, and nothing is written.
	changed := lead("linus@kernel.org")
	changed.Profile.Title = "Chief Penguin"
	changed.IdempotencyKey = "form-7f3a"
	other := lead("someone.else@kernel.org")
	other.IdempotencyKey = "form-7f3a"
	for _, r := range []*intakev1.CaptureLeadRequest{changed, other} {
		_, err := e.client.CaptureLead(ctx, r)
		assertCodeAndField(t, err, codes.InvalidArgument, "idempotency_key")
	}
	e.assertCounts(t, before)
	got, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: first.GetLeadId()})
	if err != nil || got.GetLead().GetSubmissions() != 1 || got.GetLead().GetProfile().GetTitle() == "Chief Penguin" {
		t.Fatalf("retries changed the lead: %v %v", got, err)
	}
	// A key used for a resubmission replays as a resubmission.
	resub := lead("linus@kernel.org")
	resub.IdempotencyKey = "form-8000"
	r1, err := e.client.CaptureLead(ctx, resub)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := e.client.CaptureLead(ctx, resub)
	if err != nil {
		t.Fatal(err)
	}
	if r1.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED || !r2.GetReplayed() || r2.GetOutcome() != r1.GetOutcome() ||
		r1.GetReplayed() || r2.GetVersion() != r1.GetVersion() {
		t.Fatalf("resubmission replay: %v then %v", r1, r2)
	}
}

// Repeats of every idempotent command (capture key, activity id, consent
// key) answer the first answer, version included, and write nothing to
// any stream or bucket; the same key with other content is refused.
func TestRepeatsWriteNothingAnywhere(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	capture := lead("repeat@example.com")
	capture.IdempotencyKey = "cap-1"
	first, err := e.client.CaptureLead(ctx, capture)
	if err != nil {
		t.Fatal(err)
	}
	act := &intakev1.RecordActivityRequest{LeadId: first.GetLeadId(), ActivityId: "visit-1", Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT, Detail: "/pricing"}
	a1, err := e.client.RecordActivity(ctx, act)
	if err != nil {
		t.Fatal(err)
	}
	consent := &intakev1.SetConsentRequest{LeadId: first.GetLeadId(), Source: "preference-center", IdempotencyKey: "pc-9",
		Consent: &eventv1.Consent{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: eventv1.ConsentStatus_CONSENT_STATUS_GRANTED}}
	c1, err := e.client.SetConsent(ctx, consent)
	if err != nil {
		t.Fatal(err)
	}
	// A later event on the lead: a repeat still answers its own first version.
	if _, err := e.client.RecordActivity(ctx, &intakev1.RecordActivityRequest{LeadId: first.GetLeadId(), ActivityId: "visit-2", Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT}); err != nil {
		t.Fatal(err)
	}
	before := e.counts(t)
	for range 3 {
		c, err := e.client.CaptureLead(ctx, capture)
		if err != nil || !c.GetReplayed() || c.GetVersion() != first.GetVersion() || c.GetLeadId() != first.GetLeadId() {
			t.Fatalf("capture repeat: %v %v, first %v", c, err, first)
		}
		a, err := e.client.RecordActivity(ctx, act)
		if err != nil || !a.GetReplayed() || a.GetVersion() != a1.GetVersion() {
			t.Fatalf("activity repeat: %v %v, first %v", a, err, a1)
		}
		s, err := e.client.SetConsent(ctx, consent)
		if err != nil || !s.GetReplayed() || s.GetVersion() != c1.GetVersion() {
			t.Fatalf("consent repeat: %v %v, first %v", s, err, c1)
		}
	}
	e.assertCounts(t, before)

	otherAct := proto.Clone(act).(*intakev1.RecordActivityRequest)
	otherAct.Detail = "/careers"
	_, err = e.client.RecordActivity(ctx, otherAct)
	assertCodeAndField(t, err, codes.InvalidArgument, "activity_id")
	otherConsent := proto.Clone(consent).(*intakev1.SetConsentRequest)
	otherConsent.Consent.Status = eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN
	_, err = e.client.SetConsent(ctx, otherConsent)
	assertCodeAndField(t, err, codes.InvalidArgument, "idempotency_key")
	e.assertCounts(t, before)

	// Through another replica, which holds no key of the lead: a repeat of
	// an activity with a detail to seal takes none either.
	r := e.replica(t)
	before = e.counts(t)
	if a, err := r.client.RecordActivity(ctx, act); err != nil || !a.GetReplayed() || a.GetVersion() != a1.GetVersion() {
		t.Fatalf("activity repeat through another replica: %v %v, first %v", a, err, a1)
	}
	e.assertCounts(t, before)
}

// Captures of one email racing from many clients make exactly one lead;
// every other capture is recorded on it.
func TestConcurrentCapturesOfOneEmailMakeOneLead(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	const racers = 16
	var wg sync.WaitGroup
	results := make([]*intakev1.CaptureLeadResponse, racers)
	errs := make([]error, racers)
	startGun := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-startGun
			results[i], errs[i] = e.client.CaptureLead(ctx, lead("race@example.org"))
		})
	}
	close(startGun)
	wg.Wait()
	created := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("racer %d: %v", i, errs[i])
		}
		if r.GetLeadId() != results[0].GetLeadId() {
			t.Fatalf("two leads for one email: %s and %s", r.GetLeadId(), results[0].GetLeadId())
		}
		if r.GetOutcome() == intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED {
			created++
		}
	}
	if created != 1 {
		t.Fatalf("%d captures created the lead, want 1", created)
	}
	tl, err := e.client.GetLeadTimeline(ctx, &intakev1.GetLeadTimelineRequest{LeadId: results[0].GetLeadId()})
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.GetEntries()) != racers {
		t.Fatalf("timeline has %d events, want %d", len(tl.GetEntries()), racers)
	}
}

func TestInvalidInputIsRefusedAndWritesNothing(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	if _, err := e.client.RegisterCampaign(ctx, &intakev1.RegisterCampaignRequest{CampaignId: "spring-26", Name: "Spring", Channel: eventv1.Channel_CHANNEL_WEBINAR}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		edit  func(*intakev1.CaptureLeadRequest)
		field string
	}{
		{"missing email", func(r *intakev1.CaptureLeadRequest) { r.Contact.Email = "" }, "contact.email"},
		{"bad email", func(r *intakev1.CaptureLeadRequest) { r.Contact.Email = "not-an-email" }, "contact.email"},
		{"email with display name", func(r *intakev1.CaptureLeadRequest) { r.Contact.Email = "Ada <ada@example.com>" }, "contact.email"},
		{"email without dot domain", func(r *intakev1.CaptureLeadRequest) { r.Contact.Email = "ada@localhost" }, "contact.email"},
		{"long first name", func(r *intakev1.CaptureLeadRequest) { r.Contact.FirstName = strings.Repeat("a", 101) }, "contact.first_name"},
		{"control character", func(r *intakev1.CaptureLeadRequest) { r.Contact.LastName = "Love\x00lace" }, "contact.last_name"},
		{"bad phone", func(r *intakev1.CaptureLeadRequest) { r.Contact.Phone = "call me maybe" }, "contact.phone"},
		{"short phone", func(r *intakev1.CaptureLeadRequest) { r.Contact.Phone = "+1234" }, "contact.phone"},
		{"long notes", func(r *intakev1.CaptureLeadRequest) { r.Contact.Notes = strings.Repeat("ü", 2001) }, "contact.notes"},
		{"bad country", func(r *intakev1.CaptureLeadRequest) { r.Profile.Country = "XX" }, "profile.country"},
		{"negative employees", func(r *intakev1.CaptureLeadRequest) { r.Profile.Employees = -1 }, "profile.employees"},
		{"unknown seniority", func(r *intakev1.CaptureLeadRequest) { r.Profile.Seniority = 99 }, "profile.seniority"},
		{"missing source", func(r *intakev1.CaptureLeadRequest) { r.Attribution.Source = "" }, "attribution.source"},
		{"bad source", func(r *intakev1.CaptureLeadRequest) { r.Attribution.Source = "Web Form!" }, "attribution.source"},
		{"unknown campaign", func(r *intakev1.CaptureLeadRequest) { r.Attribution.CampaignId = "autumn-99" }, "attribution.campaign_id"},
		{"campaign id with a subject wildcard", func(r *intakev1.CaptureLeadRequest) { r.Attribution.CampaignId = "a.>" }, "attribution.campaign_id"},
		{"external id without system", func(r *intakev1.CaptureLeadRequest) { r.ExternalId = &eventv1.ExternalId{Id: "9"} }, "external_id.system"},
		{"consent without status", func(r *intakev1.CaptureLeadRequest) {
			r.Consents = []*eventv1.Consent{{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL}}
		}, "consents[0].status"},
		{"idempotency key with spaces", func(r *intakev1.CaptureLeadRequest) { r.IdempotencyKey = "a b" }, "idempotency_key"},
		// Kept in the clear on the event, after an erasure too.
		{"idempotency key naming the person", func(r *intakev1.CaptureLeadRequest) { r.IdempotencyKey = "newsletter:grace@example.com" }, "idempotency_key"},
		{"future time", func(r *intakev1.CaptureLeadRequest) { r.OccurredAt = timestamp(time.Now().Add(time.Hour)) }, "occurred_at"},
		{"actor without kind", func(r *intakev1.CaptureLeadRequest) { r.Actor = &eventv1.Actor{Id: "zapier"} }, "actor.kind"},
	}
	before := e.streamMsgs(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := lead("valid@example.com")
			c.edit(req)
			_, err := e.client.CaptureLead(ctx, req)
			assertField(t, err, c.field)
		})
	}
	if after := e.streamMsgs(t); after != before {
		t.Fatalf("refused requests wrote %d messages", after-before)
	}
	res, err := e.client.CaptureLead(ctx, lead("valid@example.com"))
	if err != nil || res.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED {
		t.Fatalf("the valid request after the refusals: %v %v", res, err)
	}
}

func assertField(t *testing.T, err error, field string) {
	t.Helper()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("want InvalidArgument, got %v", err)
	}
	for _, v := range grpcserver.Violations(err) {
		if v.Field == field {
			return
		}
	}
	t.Fatalf("no violation for %s in %v", field, grpcserver.Violations(err))
}

// rawCodec sends bytes as they are, to put what a proto library refuses
// to encode (invalid UTF-8) on the wire.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}

func TestInvalidUTF8IsInvalidArgument(t *testing.T) {
	e := start(t)
	// CaptureLeadRequest{contact: Contact{email: "\xff@x.com"}}
	contact := protowire.AppendTag(nil, 1, protowire.BytesType)
	contact = protowire.AppendBytes(contact, []byte("\xff@x.com"))
	req := protowire.AppendTag(nil, 2, protowire.BytesType)
	req = protowire.AppendBytes(req, contact)
	before := e.streamMsgs(t)
	err := e.conn.Invoke(ctxT(t), intakev1.IntakeService_CaptureLead_FullMethodName, &req, &intakev1.CaptureLeadResponse{}, grpc.ForceCodecV2(rawCodec{}))
	assertField(t, err, "contact.email")
	if e.streamMsgs(t) != before {
		t.Fatal("a refused request wrote")
	}
}

func TestBulkImport(t *testing.T) { testBulkImport(t, start) }

var ann = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "ann", Team: eventv1.Team_TEAM_MARKETING}

func testBulkImport(t *testing.T, start func(testing.TB) *env) {
	e := start(t)
	ctx := ctxT(t)
	existing, err := e.client.CaptureLead(ctx, lead("known@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := e.client.ImportLeads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Three chunks (the last one short): a person in several chunks, or on
	// both sides of a chunk's edge, is created once and resubmitted after.
	const rows = 2*app.ImportChunk + 100
	last := app.ImportChunk - 1 // the last row of the first chunk
	go func() {
		for i := range rows {
			var r *intakev1.CaptureLeadRequest
			switch {
			case i == 5:
				r = lead("known@example.com") // an existing lead
			case i == 10 || i == 1500 || i == 2050:
				r = lead("twice@example.com") // the same person in three chunks
			case i == 11:
				r = lead("twice@example.com") // ... and twice in one chunk
			case i == last || i == last+1:
				// The last row of a chunk and the first of the next: one
				// person, known by an external id, with two addresses.
				r = withExt(lead(fmt.Sprintf("edge%d@example.com", i)), "ext-edge")
			case i%100 == 7:
				r = lead("broken") // refused
			default:
				r = lead(fmt.Sprintf("row%d@example.com", i))
			}
			if i == 20 {
				r.IdempotencyKey = "row-20"
			}
			if i == 5 || i == 30 {
				r.Actor = ann // an integration importing for a person
			}
			if err := stream.Send(&intakev1.ImportLeadsRequest{Row: int64(i), Lead: r}); err != nil {
				t.Error(err)
				return
			}
		}
		_ = stream.CloseSend()
	}()
	got := importResults(t, stream)
	if len(got) != rows {
		t.Fatalf("%d results for %d rows", len(got), rows)
	}
	leads := map[string]bool{}
	for i, r := range got {
		if r.GetRow() != int64(i) {
			t.Fatalf("result %d is for row %d", i, r.GetRow())
		}
		switch {
		case i%100 == 7:
			if len(r.GetErrors()) == 0 || r.GetErrors()[0].GetField() != "contact.email" || r.GetLeadId() != "" {
				t.Errorf("row %d should be refused: %v", i, r)
			}
		case i == 5:
			if r.GetLeadId() != existing.GetLeadId() || r.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
				t.Errorf("row 5 should resubmit on %s: %v", existing.GetLeadId(), r)
			}
		case i == 11 || i == 1500 || i == 2050:
			if r.GetLeadId() != got[10].GetLeadId() || r.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
				t.Errorf("row %d should resubmit on row 10's lead %s: %v", i, got[10].GetLeadId(), r)
			}
		case i == last+1:
			if r.GetLeadId() != got[last].GetLeadId() || r.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
				t.Errorf("row %d should resubmit on row %d's lead %s: %v", i, last, got[last].GetLeadId(), r)
			}
		default:
			if r.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED || leads[r.GetLeadId()] {
				t.Errorf("row %d should create a new lead: %v", i, r)
			}
			leads[r.GetLeadId()] = true
		}
	}
	l, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: got[10].GetLeadId()})
	if err != nil || l.GetLead().GetSubmissions() != 4 || l.GetLead().GetContact().GetEmail() != "twice@example.com" {
		t.Fatalf("the twice-imported lead: %v %v", l, err)
	}
	// A row's actor is its events', as a capture's is.
	for _, i := range []int{5, 30} {
		tl := e.timeline(t, got[i].GetLeadId())
		if a := tl[len(tl)-1].GetActor(); !proto.Equal(a, ann) {
			t.Errorf("row %d: %s by %v, want ann", i, tl[len(tl)-1].GetEventType(), a)
		}
	}
	// Import again: every valid row is now known, nothing is new.
	stream2, err := e.client.ImportLeads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream2.Send(&intakev1.ImportLeadsRequest{Row: 1, Lead: lead("row1@example.com")}); err != nil {
		t.Fatal(err)
	}
	r20 := lead("row20@example.com")
	r20.IdempotencyKey = "row-20"
	if err := stream2.Send(&intakev1.ImportLeadsRequest{Row: 20, Lead: r20}); err != nil {
		t.Fatal(err)
	}
	// Row 20's key on another person: that row is refused, as a bad field
	// is, and the import goes on.
	reused := lead("someone-else@example.com")
	reused.IdempotencyKey = "row-20"
	for i, r := range []*intakev1.CaptureLeadRequest{reused, lead("after@example.com")} {
		if err := stream2.Send(&intakev1.ImportLeadsRequest{Row: int64(21 + i), Lead: r}); err != nil {
			t.Fatal(err)
		}
	}
	_ = stream2.CloseSend()
	answers := importResults(t, stream2)
	if len(answers) != 4 {
		t.Fatalf("%d answers to 4 rows: %v", len(answers), answers)
	}
	a, b := answers[0], answers[1]
	if c := answers[2]; len(c.GetErrors()) != 1 || c.GetErrors()[0].GetField() != "idempotency_key" || c.GetLeadId() != "" {
		t.Errorf("a row reusing another row's key: %v", c)
	}
	if d := answers[3]; d.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED {
		t.Errorf("the row after it: %v", d)
	}
	if a.GetLeadId() != got[1].GetLeadId() || a.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
		t.Errorf("re-import of row 1: %v", a)
	}
	if b.GetLeadId() != got[20].GetLeadId() || !b.GetReplayed() {
		t.Errorf("re-import of row 20 with its key: %v", b)
	}
}

// importResults reads an import's answers to its end; a stream that ends
// early fails the test.
func importResults(t *testing.T, stream grpc.BidiStreamingClient[intakev1.ImportLeadsRequest, intakev1.ImportLeadsResponse]) []*intakev1.ImportLeadsResponse {
	t.Helper()
	var out []*intakev1.ImportLeadsResponse
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("the import ended early after %d answers: %v", len(out), err)
		}
		out = append(out, r)
	}
}

func TestActivityCampaignsAndConsent(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	reg := &intakev1.RegisterCampaignRequest{CampaignId: "webinar-q4", Name: "Q4 webinar", Channel: eventv1.Channel_CHANNEL_WEBINAR,
		Budget: &eventv1.Money{Currency: "EUR", MinorUnits: 500000}}
	if _, err := e.client.RegisterCampaign(ctx, reg); err != nil {
		t.Fatal(err)
	}
	again, err := e.client.RegisterCampaign(ctx, reg)
	if err != nil || !again.GetReplayed() {
		t.Fatalf("same registration again: %v %v", again, err)
	}
	other := &intakev1.RegisterCampaignRequest{CampaignId: "webinar-q4", Name: "Something else", Channel: eventv1.Channel_CHANNEL_EMAIL}
	if _, err := e.client.RegisterCampaign(ctx, other); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("taken campaign id: %v", err)
	}
	cost := &intakev1.RecordCampaignCostRequest{CampaignId: "webinar-q4", CostId: "inv-1", Amount: &eventv1.Money{Currency: "EUR", MinorUnits: 120000}}
	c1, err := e.client.RecordCampaignCost(ctx, cost)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := e.client.RecordCampaignCost(ctx, cost)
	if err != nil || !c2.GetReplayed() || c2.GetVersion() != c1.GetVersion() {
		t.Fatalf("repeated cost: %v %v", c2, err)
	}
	if _, err := e.client.RecordCampaignCost(ctx, &intakev1.RecordCampaignCostRequest{CampaignId: "nope", CostId: "x", Amount: cost.Amount}); status.Code(err) != codes.NotFound {
		t.Fatalf("cost on unknown campaign: %v", err)
	}
	// A later cost, then the first again: the first answer's version.
	if _, err := e.client.RecordCampaignCost(ctx, &intakev1.RecordCampaignCostRequest{CampaignId: "webinar-q4", CostId: "inv-2",
		Amount: &eventv1.Money{Currency: "EUR", MinorUnits: 5000}}); err != nil {
		t.Fatal(err)
	}
	if c3, err := e.client.RecordCampaignCost(ctx, cost); err != nil || !c3.GetReplayed() || c3.GetVersion() != c1.GetVersion() {
		t.Fatalf("repeated cost after another: %v %v, want version %d", c3, err, c1.GetVersion())
	}
	// The cost id with another amount, and a cost in another currency
	// than the budget's: refused, nothing written.
	before := e.counts(t)
	reused := proto.Clone(cost).(*intakev1.RecordCampaignCostRequest)
	reused.Amount.MinorUnits++
	_, err = e.client.RecordCampaignCost(ctx, reused)
	assertCodeAndField(t, err, codes.InvalidArgument, "cost_id")
	usd := &intakev1.RecordCampaignCostRequest{CampaignId: "webinar-q4", CostId: "inv-usd", Amount: &eventv1.Money{Currency: "USD", MinorUnits: 100}}
	_, err = e.client.RecordCampaignCost(ctx, usd)
	assertField(t, err, "amount.currency")
	if !strings.Contains(err.Error(), "must be EUR") {
		t.Errorf("the refusal does not name the campaign's currency: %v", err)
	}
	// Dates no plan has: the reports compare costs' periods with time.
	_, err = e.client.RecordCampaignCost(ctx, &intakev1.RecordCampaignCostRequest{CampaignId: "webinar-q4", CostId: "inv-old",
		Amount: &eventv1.Money{Currency: "EUR", MinorUnits: 100}, PeriodStart: timestamppb.New(time.Date(1899, 1, 1, 0, 0, 0, 0, time.UTC))})
	assertField(t, err, "period_start")
	// An end alone: the cost would count where it was recorded.
	_, err = e.client.RecordCampaignCost(ctx, &intakev1.RecordCampaignCostRequest{CampaignId: "webinar-q4", CostId: "inv-end",
		Amount: &eventv1.Money{Currency: "EUR", MinorUnits: 100}, PeriodEnd: timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))})
	assertField(t, err, "period_start")
	_, err = e.client.RegisterCampaign(ctx, &intakev1.RegisterCampaignRequest{CampaignId: "far", Name: "Far", Channel: eventv1.Channel_CHANNEL_WEBINAR,
		EndsAt: timestamppb.New(time.Now().AddDate(50, 0, 0))})
	assertField(t, err, "ends_at")
	e.assertCounts(t, before)
	// A campaign without a budget takes its first cost's currency.
	if _, err := e.client.RegisterCampaign(ctx, &intakev1.RegisterCampaignRequest{CampaignId: "expo", Name: "Expo", Channel: eventv1.Channel_CHANNEL_EVENT}); err != nil {
		t.Fatal(err)
	}
	// Not a made-up currency, which every later cost would have to follow.
	_, err = e.client.RecordCampaignCost(ctx, &intakev1.RecordCampaignCostRequest{CampaignId: "expo", CostId: "inv-xyz", Amount: &eventv1.Money{Currency: "XYZ", MinorUnits: 100}})
	assertField(t, err, "amount.currency")
	usd.CampaignId = "expo"
	if _, err := e.client.RecordCampaignCost(ctx, usd); err != nil {
		t.Fatal(err)
	}
	_, err = e.client.RecordCampaignCost(ctx, &intakev1.RecordCampaignCostRequest{CampaignId: "expo", CostId: "inv-eur", Amount: cost.Amount})
	assertField(t, err, "amount.currency")

	req := lead("mary@example.com")
	req.Attribution.CampaignId = "webinar-q4"
	req.Consents = []*eventv1.Consent{{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: eventv1.ConsentStatus_CONSENT_STATUS_GRANTED}}
	res, err := e.client.CaptureLead(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	act := &intakev1.RecordActivityRequest{LeadId: res.GetLeadId(), ActivityId: "click-1", Type: eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK, CampaignId: "webinar-q4"}
	a1, err := e.client.RecordActivity(ctx, act)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := e.client.RecordActivity(ctx, act)
	if err != nil || !a2.GetReplayed() || a2.GetVersion() != a1.GetVersion() {
		t.Fatalf("repeated activity: %v %v", a2, err)
	}
	if _, err := e.client.RecordActivity(ctx, &intakev1.RecordActivityRequest{LeadId: "0199aaaa-0000-7000-8000-000000000000", ActivityId: "a", Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT}); status.Code(err) != codes.NotFound {
		t.Fatalf("activity on unknown lead: %v", err)
	}
	_, err = e.client.RecordActivity(ctx, &intakev1.RecordActivityRequest{LeadId: res.GetLeadId(), ActivityId: "a"})
	assertField(t, err, "type")

	withdraw := &intakev1.SetConsentRequest{LeadId: res.GetLeadId(), Source: "preference-center", IdempotencyKey: "pc-1",
		Consent: &eventv1.Consent{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN}}
	w1, err := e.client.SetConsent(ctx, withdraw)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := e.client.SetConsent(ctx, withdraw); err != nil || !r.GetReplayed() {
		t.Fatalf("repeated consent: %v %v", r, err)
	}
	// Without a key, the status the channel has is no change: nothing is
	// written, and the answer is the lead's version.
	held := e.counts(t)
	same := &intakev1.SetConsentRequest{LeadId: res.GetLeadId(), Source: "crm-sync", Consent: withdraw.GetConsent()}
	if r, err := e.client.SetConsent(ctx, same); err != nil || !r.GetReplayed() || r.GetVersion() != w1.GetVersion() {
		t.Fatalf("unchanged consent without a key: %v %v, want version %d", r, err, w1.GetVersion())
	}
	e.assertCounts(t, held)
	_, err = e.client.SetConsent(ctx, &intakev1.SetConsentRequest{LeadId: res.GetLeadId(), Source: "x", Consent: &eventv1.Consent{Channel: 42, Status: 1}})
	assertField(t, err, "consent.channel")

	got, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: res.GetLeadId()})
	if err != nil {
		t.Fatal(err)
	}
	l := got.GetLead()
	if l.GetActivities() != 1 || len(l.GetConsents()) != 1 || l.GetConsents()[0].GetStatus() != eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN {
		t.Fatalf("lead: activities %d consents %v", l.GetActivities(), l.GetConsents())
	}
	tl, err := e.client.GetLeadTimeline(ctx, &intakev1.GetLeadTimelineRequest{LeadId: res.GetLeadId()})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, en := range tl.GetEntries() {
		types = append(types, en.GetEvent().GetEventType())
		if en.GetEvent().GetCorrelationId() == "" || en.GetEvent().GetLifecycle().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_NEW {
			t.Errorf("envelope incomplete: %v", en.GetEvent())
		}
	}
	if !slices.Equal(types, []string{"LeadCaptured", "ActivityRecorded", "ConsentChanged"}) {
		t.Fatalf("timeline %v", types)
	}
}

// A known person's form that changes a consent is heard as a consent
// change (it was answered RESUBMITTED and dropped); one that repeats the
// consents the lead has changes nothing more.
func TestResubmissionCarriesItsConsents(t *testing.T) {
	e := start(t)
	first := lead("consent@c.example")
	first.Consents = []*eventv1.Consent{{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: eventv1.ConsentStatus_CONSENT_STATUS_GRANTED}}
	id := e.capture(t, first).GetLeadId()
	again := lead("consent@c.example")
	again.Consents = []*eventv1.Consent{{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN},
		{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_PHONE, Status: eventv1.ConsentStatus_CONSENT_STATUS_GRANTED}}
	again.IdempotencyKey = "form-2"
	var answered *intakev1.CaptureLeadResponse
	for i := range 2 {
		r := e.capture(t, again)
		if r.GetLeadId() != id || r.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
			t.Fatalf("capture again: %v", r)
		}
		if i == 0 {
			answered = r
		} else if !r.GetReplayed() || r.GetVersion() != answered.GetVersion() {
			t.Fatalf("a repeat answered %v, the first %v: want the first's version", r, answered)
		}
	}
	again.IdempotencyKey = ""
	if r := e.capture(t, again); r.GetLeadId() != id {
		t.Fatalf("capture once more: %v", r)
	}
	got := e.consents(t, id)
	if got[eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL] != eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN ||
		got[eventv1.ConsentChannel_CONSENT_CHANNEL_PHONE] != eventv1.ConsentStatus_CONSENT_STATUS_GRANTED {
		t.Fatalf("consents after the forms: %v", got)
	}
	var types []string
	for _, ev := range e.timeline(t, id) {
		types = append(types, ev.GetEventType())
		if c := ev.GetConsentChanged(); c != nil && c.GetSource() != "resubmission" {
			t.Errorf("consent change from %q", c.GetSource())
		}
	}
	if want := []string{"LeadCaptured", "LeadResubmitted", "ConsentChanged", "ConsentChanged", "LeadResubmitted"}; !slices.Equal(types, want) {
		t.Fatalf("timeline %v, want %v", types, want)
	}
}

// A form dated before the person's last word on a channel (a backfill
// of older forms) does not overrule it: a phone withdrawn in the newer
// form stays withdrawn, and nothing is written for it; a channel the
// older form alone names is heard.
func TestAnOlderFormDoesNotOverruleANewerConsent(t *testing.T) {
	e := start(t)
	newer := lead("backfill@c.example")
	newer.OccurredAt = timestamppb.New(time.Now().Add(-24 * time.Hour))
	newer.Consents = []*eventv1.Consent{{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_PHONE, Status: eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN}}
	id := e.capture(t, newer).GetLeadId()
	older := lead("backfill@c.example")
	older.OccurredAt = timestamppb.New(time.Now().Add(-400 * 24 * time.Hour))
	older.Consents = []*eventv1.Consent{{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_PHONE, Status: eventv1.ConsentStatus_CONSENT_STATUS_GRANTED},
		{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: eventv1.ConsentStatus_CONSENT_STATUS_GRANTED}}
	if r := e.capture(t, older); r.GetLeadId() != id || r.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
		t.Fatalf("the older form: %v", r)
	}
	got := e.consents(t, id)
	if got[eventv1.ConsentChannel_CONSENT_CHANNEL_PHONE] != eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN ||
		got[eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL] != eventv1.ConsentStatus_CONSENT_STATUS_GRANTED {
		t.Fatalf("consents after an older form: %v, want phone still withdrawn, email granted", got)
	}
	changes := 0
	for _, ev := range e.timeline(t, id) {
		if ev.GetConsentChanged() != nil {
			changes++
		}
	}
	if changes != 1 {
		t.Fatalf("%d consent changes, want one (email's)", changes)
	}
}

// The guard against older forms' grants compares a person's own words
// only: not one a merge carried (dated by the merge), nor another
// person's, whose form came through a merged lead. A withdrawal, older or
// not, is always heard.
func TestAnOlderFormIsComparedWithItsPersonsOwnWords(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	email := eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL
	form := func(addr string, daysAgo int, st eventv1.ConsentStatus) *intakev1.CaptureLeadRequest {
		r := lead(addr)
		r.OccurredAt = timestamppb.New(time.Now().Add(-time.Duration(daysAgo) * 24 * time.Hour))
		r.Consents = []*eventv1.Consent{{Channel: email, Status: st}}
		return r
	}
	emailOf := func(id string) eventv1.ConsentStatus { return e.consents(t, id)[email] }
	merge := func(absorbed, survivor string) {
		if _, err := e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "same person"}); err != nil {
			t.Fatal(err)
		}
	}
	withdrawn, granted := eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN, eventv1.ConsentStatus_CONSENT_STATUS_GRANTED

	// The merge carries A's withdrawal onto B, dated now; B's own grant
	// of 5 days ago, after its person's words of 20 and 30 days ago, is
	// the latest.
	a := e.capture(t, form("own-a@c.example", 30, withdrawn)).GetLeadId()
	b := e.capture(t, form("own-b@c.example", 20, granted)).GetLeadId()
	merge(a, b)
	if got := emailOf(b); got != withdrawn {
		t.Fatalf("B's email %v after the merge, want the withdrawal it carried", got)
	}
	e.capture(t, form("own-b@c.example", 5, granted))
	if got := emailOf(b); got != granted {
		t.Fatalf("B's email %v after its person's grant of 5 days ago", got)
	}
	// Withdrawn 10 days ago, older than that grant: heard all the same.
	e.capture(t, form("own-b@c.example", 10, withdrawn))
	if got := emailOf(b); got != withdrawn {
		t.Fatalf("B's email %v after an older withdrawal, want it heard", got)
	}

	// A's person grants 5 days ago through the survivor, whose own person
	// granted 1 day ago: B's words are not A's, so the unmerge gives A
	// the grant.
	a = e.capture(t, form("via-a@c.example", 30, withdrawn)).GetLeadId()
	b = e.capture(t, form("via-b@c.example", 1, granted)).GetLeadId()
	merge(a, b)
	e.capture(t, form("via-a@c.example", 5, granted))
	if _, err := e.client.UnmergeLeads(ctx, &intakev1.UnmergeLeadsRequest{SurvivorLeadId: b, AbsorbedLeadId: a, Reason: "two people"}); err != nil {
		t.Fatal(err)
	}
	if got := emailOf(a); got != granted {
		t.Fatalf("A's email %v after the unmerge, want the grant its person sent 5 days ago", got)
	}
}

// The server stops and starts on the same folder mid-run: acknowledged
// leads are all there and the service goes on without a restart.
func TestServerRestartLosesNothing(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	var ids []string
	for i := range 20 {
		r, err := e.client.CaptureLead(ctx, lead(fmt.Sprintf("before%d@example.com", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.GetLeadId())
	}
	e.nats.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := e.client.CaptureLead(ctx, lead("after@example.com"))
		if err == nil {
			ids = append(ids, r.GetLeadId())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no capture after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, id := range ids {
		got, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: id})
		if err != nil || got.GetLead().GetContact().GetEmail() == "" {
			t.Fatalf("lead %s after restart: %v %v", id, got, err)
		}
	}
	// Identities survived too: the first email still dedupes.
	r, err := e.client.CaptureLead(ctx, lead("before0@example.com"))
	if err != nil || r.GetLeadId() != ids[0] {
		t.Fatalf("dedupe after restart: %v %v", r, err)
	}
}

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// A capture that claimed an email and died before writing the lead's first
// event leaves a claim with no lead behind. The next captures of that
// email, even racing ones, adopt it: one lead, under the claimed id.
func TestClaimWithoutEventIsAdopted(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	v := e.vault(t)
	orphan := "0199aaaa-0000-7000-8000-00000000abcd"
	store := eventstore.New(e.nats.JS, "LEADFLOW")
	if _, err := store.Commit(ctx, eventstore.Write{
		Subject: eventstore.ClaimSubject("email", v.BlindID("email", "crash@example.com")),
		Claim:   &eventv1.Claim{LeadId: orphan, EventId: "claim-email-" + orphan},
	}); err != nil {
		t.Fatal(err)
	}
	const racers = 8
	var wg sync.WaitGroup
	res := make([]*intakev1.CaptureLeadResponse, racers)
	errs := make([]error, racers)
	for i := range racers {
		wg.Go(func() { res[i], errs[i] = e.client.CaptureLead(ctx, lead("crash@example.com")) })
	}
	wg.Wait()
	created := 0
	for i := range racers {
		if errs[i] != nil || res[i].GetLeadId() != orphan {
			t.Fatalf("racer %d: %v %v, want lead %s", i, res[i], errs[i], orphan)
		}
		if res[i].GetOutcome() == intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED {
			created++
		}
	}
	if created != 1 {
		t.Fatalf("%d racers created the lead", created)
	}
	got, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: orphan})
	if err != nil || got.GetLead().GetSubmissions() != racers || got.GetLead().GetContact().GetEmail() != "crash@example.com" {
		t.Fatalf("adopted lead: %v %v", got, err)
	}
}

func withExt(r *intakev1.CaptureLeadRequest, id string) *intakev1.CaptureLeadRequest {
	r.ExternalId = &eventv1.ExternalId{System: "hubspot", Id: id}
	return r
}

func (e *env) capture(t *testing.T, r *intakev1.CaptureLeadRequest) *intakev1.CaptureLeadResponse {
	t.Helper()
	res, err := e.client.CaptureLead(ctxT(t), r)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// vault is a vault on e's server with intake's keys, closed when the
// test ends.
func (e *env) vault(t *testing.T) *vault.Vault {
	t.Helper()
	master, _ := hex.DecodeString(e.cfg.MasterKey)
	blind, _ := hex.DecodeString(e.cfg.BlindKey)
	v, err := vault.New(ctxT(t), e.nats.JS, vault.Config{MasterKey: master, BlindKey: blind})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// appendRejection appends LeadRejected by rep ann with note sealed as
// handoff seals it, with the key of the lead's last submission.
func (e *env) appendRejection(t *testing.T, leadID, note string) {
	t.Helper()
	ctx := ctxT(t)
	v := e.vault(t)
	events := e.timeline(t, leadID)
	k, err := v.KeyOf(ctx, leadID, events[0].GetLeadCaptured().GetSealedPersonal())
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k.Seal([]byte(note))
	if err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(e.nats.JS, e.cfg.Stream)
	version, err := store.Version(ctx, eventstore.LeadSubject(leadID))
	if err != nil {
		t.Fatal(err)
	}
	ev := &eventv1.Event{EventId: fmt.Sprintf("rejected-%d", version), LeadId: leadID, EventType: "LeadRejected", OccurredAt: timestamppb.Now(),
		Actor:     &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "ann", Team: eventv1.Team_TEAM_SALES},
		Lifecycle: events[len(events)-1].GetLifecycle(),
		Payload:   &eventv1.Event_LeadRejected{LeadRejected: &eventv1.LeadRejected{RepId: "ann", Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY, SealedNote: sealed}}}
	if _, err := store.Append(ctx, eventstore.LeadSubject(leadID), version, ev); err != nil {
		t.Fatal(err)
	}
}

func (e *env) timeline(t *testing.T, leadID string) []*eventv1.Event {
	t.Helper()
	tl, err := e.client.GetLeadTimeline(ctxT(t), &intakev1.GetLeadTimelineRequest{LeadId: leadID})
	if err != nil {
		t.Fatal(err)
	}
	var out []*eventv1.Event
	for _, en := range tl.GetEntries() {
		out = append(out, en.GetEvent())
	}
	return out
}

// Every identity a capture brings is claimed for its lead, whichever
// came first: a new email with a known external id, or a new external id
// with a known email, both lead back to the one lead afterwards.
func TestEveryIdentityIsClaimedInBothOrders(t *testing.T) {
	e := start(t)
	// Email first, then an external id with it, then another email with
	// that external id: each new identity is the lead's from then on.
	l1 := e.capture(t, lead("first@a.example")).GetLeadId()
	if got := e.capture(t, withExt(lead("first@a.example"), "ext-1")); got.GetLeadId() != l1 {
		t.Fatalf("email match with a new external id went to %s, want %s", got.GetLeadId(), l1)
	}
	if got := e.capture(t, withExt(lead("second@a.example"), "ext-1")); got.GetLeadId() != l1 || got.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
		t.Fatalf("external id match with a new email: %v, want a resubmission on %s", got, l1)
	}
	if got := e.capture(t, lead("second@a.example")); got.GetLeadId() != l1 {
		t.Fatalf("the second email alone went to %s, want %s: it was never claimed", got.GetLeadId(), l1)
	}
	// External id first: a new person with both, then the same external
	// id with another email, then that email alone.
	l2 := e.capture(t, withExt(lead("third@b.example"), "ext-2")).GetLeadId()
	if got := e.capture(t, withExt(lead("fourth@b.example"), "ext-2")); got.GetLeadId() != l2 {
		t.Fatalf("external id match: %s, want %s", got.GetLeadId(), l2)
	}
	if got := e.capture(t, lead("fourth@b.example")); got.GetLeadId() != l2 {
		t.Fatalf("the email the external id brought went to %s, want %s", got.GetLeadId(), l2)
	}
	if got := e.capture(t, lead("third@b.example")); got.GetLeadId() != l2 {
		t.Fatalf("the first email went to %s, want %s", got.GetLeadId(), l2)
	}
}

// A capture whose email one lead holds and whose external id another
// does records a merge candidate on both leads, once.
func TestIdentitiesOfTwoLeadsAreAMergeCandidate(t *testing.T) {
	e := start(t)
	byEmail := e.capture(t, lead("dup@c.example")).GetLeadId()
	byExt := e.capture(t, withExt(lead("other@c.example"), "ext-3")).GetLeadId()
	for range 2 {
		got := e.capture(t, withExt(lead("dup@c.example"), "ext-3"))
		if got.GetLeadId() != byExt {
			t.Fatalf("the external id is the stronger match: went to %s, want %s", got.GetLeadId(), byExt)
		}
	}
	for _, c := range []struct{ lead, other, identity string }{{byEmail, byExt, "external_id"}, {byExt, byEmail, "email"}} {
		var found []*eventv1.MergeCandidateFound
		for _, ev := range e.timeline(t, c.lead) {
			if m := ev.GetMergeCandidateFound(); m != nil {
				found = append(found, m)
			}
		}
		if len(found) != 1 || found[0].GetOtherLeadId() != c.other || found[0].GetIdentity() != c.identity {
			t.Fatalf("lead %s records candidates %v, want one naming %s by %s", c.lead, found, c.other, c.identity)
		}
	}
}

// Two captures racing with one external id and two new emails: one lead
// holds the external id in the end, and if both made a lead each, both
// leads record the other as a merge candidate; nothing is left silently.
func TestRacingCapturesOfOneExternalID(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	split := 0
	defer func() { t.Logf("%d of 5 rounds made two leads", split) }()
	for round := range 5 {
		ext := fmt.Sprintf("race-%d", round)
		var wg sync.WaitGroup
		res := make([]*intakev1.CaptureLeadResponse, 2)
		errs := make([]error, 2)
		for i := range 2 {
			wg.Go(func() {
				res[i], errs[i] = e.client.CaptureLead(ctx, withExt(lead(fmt.Sprintf("r%d-%d@d.example", round, i)), ext))
			})
		}
		wg.Wait()
		for i := range 2 {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
		}
		a, b := res[0].GetLeadId(), res[1].GetLeadId()
		if a == b {
			continue
		}
		split++
		for _, c := range [][2]string{{a, b}, {b, a}} {
			found := false
			for _, ev := range e.timeline(t, c[0]) {
				found = found || ev.GetMergeCandidateFound().GetOtherLeadId() == c[1]
			}
			if !found {
				t.Fatalf("round %d: leads %s and %s share an external id, but %s records no candidate", round, a, b, c[0])
			}
		}
	}
}

// onDisk reports which of the needles appear in any file of the
// server's store directory.
func (e *env) onDisk(t *testing.T, needles ...[]byte) []string {
	t.Helper()
	for range 5 {
		var found []string
		err := filepath.WalkDir(e.nats.Dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, n := range needles {
				if bytes.Contains(data, n) {
					found = append(found, fmt.Sprintf("%q in %s", n, filepath.Base(p)))
				}
			}
			return nil
		})
		if errors.Is(err, fs.ErrNotExist) {
			continue // a file the server replaced while the walk went: walk again
		}
		if err != nil {
			t.Fatal(err)
		}
		return found
	}
	t.Fatal("the store's files kept changing under five walks")
	return nil
}

// Erasure end to end: every personal field of a lead is sealed, an
// export returns them all, decrypted; after EraseLead none of them (nor
// the lead's key) is anywhere in the store's files, the history still
// replays whole, and the person's next capture makes a new lead.
func TestEraseAndExport(t *testing.T) { testEraseAndExport(t, start) }

func testEraseAndExport(t *testing.T, start func(testing.TB) *env) {
	e := start(t)
	ctx := ctxT(t)
	req := withExt(&intakev1.CaptureLeadRequest{
		Contact: &eventv1.Contact{Email: "erin.erasure@forget.example", FirstName: "Erinzelda", LastName: "Vanishkova",
			Phone: "+44 20 7946 0123", Notes: "prefers-calls-after-lunch"},
		Profile: &eventv1.Profile{Company: "Obliviate Holdings", Title: "Head of Forgetting", Seniority: eventv1.Seniority_SENIORITY_DIRECTOR,
			Employees: 120, Country: "de", Industry: "software"},
		Attribution: &eventv1.Attribution{Source: "web-form", UtmSource: "utm-src-zq", UtmMedium: "utm-med-zq", UtmCampaign: "utm-camp-zq"},
		Consents:    []*eventv1.Consent{{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: eventv1.ConsentStatus_CONSENT_STATUS_GRANTED}},
	}, "crm-id-zq-4711")
	res := e.capture(t, req)
	id := res.GetLeadId()
	// Through another replica, which seals with a key of its own: the
	// erasure must shred both.
	if _, err := e.replica(t).client.RecordActivity(ctx, &intakev1.RecordActivityRequest{LeadId: id, ActivityId: "dl-1",
		Type: eventv1.ActivityType_ACTIVITY_TYPE_CONTENT_DOWNLOAD, Detail: "deck-sent-to-erinzelda"}); err != nil {
		t.Fatal(err)
	}
	// A rep's note, as handoff seals it: with the key of the lead's
	// submission.
	e.appendRejection(t, id, "erinzelda-asked-for-her-husband")
	personal := []string{"erin.erasure@forget.example", "Erinzelda", "Vanishkova", "+442079460123", "prefers-calls-after-lunch",
		"Obliviate Holdings", "Head of Forgetting", "utm-src-zq", "utm-med-zq", "utm-camp-zq", "crm-id-zq-4711", "deck-sent-to-erinzelda",
		"erinzelda-asked-for-her-husband"}

	x, err := e.client.ExportLead(ctx, &intakev1.ExportLeadRequest{LeadId: id})
	if err != nil {
		t.Fatal(err)
	}
	dump := protojson.Format(x)
	for _, p := range personal {
		if !strings.Contains(dump, p) {
			t.Errorf("the export lacks %q", p)
		}
	}
	if n := x.GetNotes(); len(n) != 1 || n[0].GetEventType() != "LeadRejected" || n[0].GetField() != "sealed_note" || n[0].GetActor().GetId() != "ann" {
		t.Errorf("exported notes: %v", n)
	}
	// Sealed: no personal field is stored in the clear, even before erasure.
	needles := make([][]byte, len(personal))
	for i, p := range personal {
		needles[i] = []byte(p)
	}
	if found := e.onDisk(t, needles...); len(found) > 0 {
		t.Fatalf("personal data in the clear on disk: %v", found)
	}
	if found := e.onDisk(t, []byte("forget.example")); len(found) == 0 {
		t.Fatal("the email domain, kept in the clear, is not found on disk: the check is blind")
	}
	// The lead's keys are in the key blocks of the two replicas, one
	// block each, wrapped.
	blocks := e.keyBlocks(t)
	if len(blocks) != 2 {
		t.Fatalf("%d key blocks stored, want one a replica", len(blocks))
	}
	for _, b := range blocks {
		if found := e.onDisk(t, b); len(found) == 0 {
			t.Fatal("a key block is not on disk before erasure: the check is blind")
		}
	}
	before := e.timeline(t, id)

	// A reason naming the person's email is refused: it would outlive the
	// erasure in the clear.
	_, err = e.client.EraseLead(ctx, &intakev1.EraseLeadRequest{LeadId: id, Reason: "Ada <ada.erase@forget.example> asked to be forgotten"})
	assertCodeAndField(t, err, codes.InvalidArgument, "reason")
	er, err := e.client.EraseLead(ctx, &intakev1.EraseLeadRequest{LeadId: id, Reason: "access request 2026-114"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.client.EraseLead(ctx, &intakev1.EraseLeadRequest{LeadId: id, Reason: "access request 2026-114"})
	if err != nil || !again.GetReplayed() || again.GetVersion() != er.GetVersion() {
		t.Fatalf("erasing again: %v %v", again, err)
	}
	e.nats.Restart(t)
	// Both blocks were stored again without the lead's key, and erased as
	// they were.
	if found := e.onDisk(t, needles...); len(found) > 0 {
		t.Fatalf("after erasure: %v", found)
	}
	for i, b := range blocks {
		if len(e.onDisk(t, b)) > 0 {
			t.Fatalf("key block %d is on disk as it was before the erasure", i)
		}
	}
	if got := len(e.keyBlocks(t)); got != 2 {
		t.Fatalf("%d key blocks after erasure, want the 2 rewritten", got)
	}

	after := e.timeline(t, id)
	if len(after) != len(before)+1 || after[len(after)-1].GetEventType() != "LeadErased" {
		t.Fatalf("history after erasure: %d events, want the %d before and LeadErased", len(after), len(before))
	}
	for i := range before {
		if !proto.Equal(before[i], after[i]) {
			t.Fatalf("event %d changed by the erasure", i)
		}
	}
	got, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: id})
	if err != nil {
		t.Fatal(err)
	}
	l := got.GetLead()
	if !l.GetErased() || l.GetContact() != nil || l.GetLifecycle().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_ERASED ||
		l.GetProfile().GetCountry() != "DE" || l.GetProfile().GetEmailDomain() != "forget.example" || l.GetProfile().GetCompany() != "" ||
		l.GetSubmissions() != 1 || l.GetActivities() != 1 {
		t.Fatalf("erased lead: %v", l)
	}
	x, err = e.client.ExportLead(ctx, &intakev1.ExportLeadRequest{LeadId: id})
	if err != nil {
		t.Fatal(err)
	}
	if dump := protojson.Format(x); strings.Contains(dump, "Erinzelda") || len(x.GetEvents()) != len(after) {
		t.Fatalf("export after erasure: %s", dump)
	}
	// Nothing more happens to an erased lead.
	_, err = e.client.RecordActivity(ctx, &intakev1.RecordActivityRequest{LeadId: id, ActivityId: "dl-2", Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("activity on an erased lead: %v", err)
	}

	// The person comes back: a new lead, holding both identities.
	back := e.capture(t, req)
	if back.GetLeadId() == id || back.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED {
		t.Fatalf("capture after erasure: %v, want a new lead", back)
	}
	for _, r := range []*intakev1.CaptureLeadRequest{lead("erin.erasure@forget.example"), withExt(lead("new.address@forget.example"), "crm-id-zq-4711")} {
		if got := e.capture(t, r); got.GetLeadId() != back.GetLeadId() {
			t.Fatalf("identity of the new lead went to %s, want %s", got.GetLeadId(), back.GetLeadId())
		}
	}
}

// Merge then unmerge: both timelines show both steps, captures of the
// absorbed lead's identities go to the survivor while merged and back to
// the absorbed lead afterwards, which is again in the state it had.
func TestMergeThenUnmergeRestoresBoth(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	survivor := e.capture(t, lead("keeper@m.example")).GetLeadId()
	absorbed := e.capture(t, withExt(lead("dupe@m.example"), "ext-m")).GetLeadId()
	if _, err := e.client.RecordActivity(ctx, &intakev1.RecordActivityRequest{LeadId: absorbed, ActivityId: "m-1", Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT}); err != nil {
		t.Fatal(err)
	}
	beforeMerge, err := e.client.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: absorbed})
	if err != nil {
		t.Fatal(err)
	}
	merge := &intakev1.MergeLeadsRequest{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "same person, two addresses"}
	m, err := e.client.MergeLeads(ctx, merge)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := e.client.MergeLeads(ctx, merge); err != nil || !again.GetReplayed() || again.GetAbsorbedVersion() != m.GetAbsorbedVersion() {
		t.Fatalf("merging again: %v %v", again, err)
	}
	// The survivor's LeadMerged carries what scoring knows of the
	// absorbed lead, coarse only: the survivor is scored on both.
	carried := 0
	for _, ev := range e.timeline(t, survivor) {
		if m := ev.GetLeadMerged(); m != nil {
			carried++
			p, acts := m.GetAbsorbedProfile(), m.GetAbsorbedActivities()
			if p.GetEmployees() != 250 || p.GetSeniority() != eventv1.Seniority_SENIORITY_VP || p.GetCompany() != "" || p.GetTitle() != "" ||
				len(acts) != 1 || acts[0].GetType() != eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT {
				t.Errorf("the survivor's LeadMerged carries %v and %v, want the absorbed lead's coarse profile and its one visit", p, acts)
			}
		}
	}
	if carried != 1 {
		t.Errorf("%d LeadMerged on the survivor, want 1", carried)
	}
	a := e.getLead(t, absorbed)
	s := e.getLead(t, survivor)
	if a.GetLifecycle().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_MERGED || a.GetMergedInto() != survivor ||
		!slices.Equal(s.GetAbsorbedLeadIds(), []string{absorbed}) || s.GetLifecycle().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_NEW {
		t.Fatalf("after merge: absorbed %v, survivor %v", a, s)
	}
	for _, r := range []*intakev1.CaptureLeadRequest{lead("dupe@m.example"), withExt(lead("third@m.example"), "ext-m")} {
		if got := e.capture(t, r); got.GetLeadId() != survivor || got.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
			t.Fatalf("capture of the absorbed lead's identity while merged: %v, want a resubmission on %s", got, survivor)
		}
	}
	// Facts sent to the absorbed lead's id are the survivor's, not refused:
	// a consent withdrawal must never be lost.
	act, err := e.client.RecordActivity(ctx, &intakev1.RecordActivityRequest{LeadId: absorbed, ActivityId: "m-2",
		Type: eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST, Detail: "asked for a demo by phone"})
	if err != nil || act.GetLeadId() != survivor {
		t.Fatalf("activity of the absorbed lead while merged: %v %v, want it on %s", act, err, survivor)
	}
	cons, err := e.client.SetConsent(ctx, &intakev1.SetConsentRequest{LeadId: absorbed, Source: "preference-center",
		Consent: &eventv1.Consent{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN}})
	if err != nil || cons.GetLeadId() != survivor {
		t.Fatalf("consent of the absorbed lead while merged: %v %v, want it on %s", cons, err, survivor)
	}
	exp, err := e.client.ExportLead(ctx, &intakev1.ExportLeadRequest{LeadId: survivor})
	if err != nil || len(exp.GetActivities()) != 1 || exp.GetActivities()[0].GetDetail() != "asked for a demo by phone" {
		t.Fatalf("the survivor's activities, opened with its key: %v %v", exp.GetActivities(), err)
	}
	// An access request to the survivor returns what the person's
	// absorbed lead holds too, opened with that lead's key.
	if ab := exp.GetAbsorbed(); len(ab) != 1 || ab[0].GetLead().GetLeadId() != absorbed || len(ab[0].GetSubmissions()) != 1 ||
		ab[0].GetSubmissions()[0].GetPersonal().GetContact().GetEmail() != "dupe@m.example" || len(ab[0].GetActivities()) != 1 {
		t.Fatalf("the survivor's export holds of the absorbed lead: %v", ab)
	}
	_, err = e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: absorbed, AbsorbedLeadId: survivor, Reason: "backwards"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "MERGED") || !strings.Contains(err.Error(), "Merge") {
		t.Fatalf("merging into a merged lead: %v, want FailedPrecondition naming Merge and MERGED", err)
	}
	// The survivor holds what came for the person since: erasing the
	// merged lead alone would keep it.
	_, err = e.client.EraseLead(ctx, &intakev1.EraseLeadRequest{LeadId: absorbed, Reason: "request"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "merged into "+survivor) {
		t.Fatalf("erasing a merged lead: %v, want FailedPrecondition naming the survivor", err)
	}
	// Unless the survivor was erased without it (an erasure that did not
	// reach that deep): then it is erased on its own.
	other := e.capture(t, lead("other@m.example")).GetLeadId()
	left := e.capture(t, lead("left@m.example")).GetLeadId()
	if _, err := e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: other, AbsorbedLeadId: left, Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	e.appendErased(t, other)
	if _, err := e.client.EraseLead(ctx, &intakev1.EraseLeadRequest{LeadId: left, Reason: "request"}); err != nil {
		t.Fatalf("erasing a merged lead whose survivor is erased: %v", err)
	}

	unmerge := &intakev1.UnmergeLeadsRequest{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "two people after all"}
	if _, err := e.client.UnmergeLeads(ctx, unmerge); err != nil {
		t.Fatal(err)
	}
	if again, err := e.client.UnmergeLeads(ctx, unmerge); err != nil || !again.GetReplayed() {
		t.Fatalf("unmerging again: %v %v", again, err)
	}
	a = e.getLead(t, absorbed)
	s = e.getLead(t, survivor)
	if !proto.Equal(a.GetLifecycle(), beforeMerge.GetLead().GetLifecycle()) || a.GetMergedInto() != "" || len(s.GetAbsorbedLeadIds()) != 0 {
		t.Fatalf("after unmerge: absorbed %v (before the merge %v), survivor %v", a.GetLifecycle(), beforeMerge.GetLead().GetLifecycle(), s)
	}
	if got := e.capture(t, lead("dupe@m.example")); got.GetLeadId() != absorbed {
		t.Fatalf("capture after unmerge went to %s, want %s", got.GetLeadId(), absorbed)
	}
	wantTypes := map[string][]string{
		// The two captures, the activity and the withdrawal that came
		// through the absorbed lead go back, in their order (then the
		// capture after the unmerge).
		absorbed: {"LeadCaptured", "ActivityRecorded", "LeadMerged", "LeadUnmerged",
			"LeadResubmitted", "LeadResubmitted", "ActivityRecorded", "ConsentChanged", "LeadResubmitted"},
		survivor: {"LeadCaptured", "LeadMerged", "LeadResubmitted", "LeadResubmitted", "ActivityRecorded", "ConsentChanged", "LeadUnmerged"},
	}
	for id, want := range wantTypes {
		var got []string
		for _, ev := range e.timeline(t, id) {
			got = append(got, ev.GetEventType())
		}
		if !slices.Equal(got, want) {
			t.Errorf("timeline of %s: %v, want %v", id, got, want)
		}
	}

	// Every lifecycle rule applies: no merge with an erased lead.
	gone := e.capture(t, lead("gone@m.example")).GetLeadId()
	if _, err := e.client.EraseLead(ctx, &intakev1.EraseLeadRequest{LeadId: gone, Reason: "request"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*intakev1.MergeLeadsRequest{
		{SurvivorLeadId: survivor, AbsorbedLeadId: gone, Reason: "x"},
		{SurvivorLeadId: gone, AbsorbedLeadId: survivor, Reason: "x"},
	} {
		if _, err := e.client.MergeLeads(ctx, r); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("merge with an erased lead: %v, want FailedPrecondition", err)
		}
	}
	_, err = e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: survivor, AbsorbedLeadId: survivor, Reason: "x"})
	assertField(t, err, "absorbed_lead_id")

	// Nor of a lead with an open deal: it would leave the pipeline.
	deal := e.capture(t, lead("deal@m.example")).GetLeadId()
	e.appendOpportunity(t, deal)
	_, err = e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: survivor, AbsorbedLeadId: deal, Reason: "x"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "refused in OPPORTUNITY") {
		t.Fatalf("merging away an open opportunity: %v, want FailedPrecondition naming OPPORTUNITY", err)
	}
	if _, err := e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: deal, AbsorbedLeadId: survivor, Reason: "x"}); err != nil {
		t.Fatalf("merging into the lead with the deal: %v", err)
	}

	// Nor of a lead a rep holds, assigned or accepted: the rep's commands
	// and SLAs would not follow it. Into it, yes.
	for _, st := range []eventv1.LeadStatus{eventv1.LeadStatus_LEAD_STATUS_ASSIGNED, eventv1.LeadStatus_LEAD_STATUS_ACCEPTED} {
		held := e.capture(t, lead(st.String()+"@m.example")).GetLeadId()
		e.appendHeld(t, held, st)
		other := e.capture(t, lead("other-"+st.String()+"@m.example")).GetLeadId()
		before := e.counts(t)
		_, err := e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: other, AbsorbedLeadId: held, Reason: "x"})
		want := "refused in " + strings.TrimPrefix(st.String(), "LEAD_STATUS_")
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "rep ann") {
			t.Fatalf("merging away a lead in sales: %v, want FailedPrecondition naming %s and its rep", err, want)
		}
		e.assertCounts(t, before)
		if _, err := e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: held, AbsorbedLeadId: other, Reason: "x"}); err != nil {
			t.Fatalf("merging into the lead in sales: %v", err)
		}
	}

	// Nor of an MQL into a lead sales has not got: the qualified person
	// would leave sales' queue, and nothing would qualify the survivor.
	// Into another MQL, yes, and the other way round.
	mql := func(email string) string {
		id := e.capture(t, lead(email)).GetLeadId()
		e.appendRaw(t, &eventv1.Event{LeadId: id, EventType: "LeadQualified",
			Actor: &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "qualification"},
			Lifecycle: &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_MQL, Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_QUEUE, Id: "routing"},
				Deadline: timestamppb.New(time.Now().Add(time.Hour))},
			Payload: &eventv1.Event_LeadQualified{LeadQualified: &eventv1.LeadQualified{Score: 80, Threshold: 70}}})
		return id
	}
	queued, fresh := mql("queued@m.example"), e.capture(t, lead("fresh@m.example")).GetLeadId()
	before := e.counts(t)
	_, err = e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: fresh, AbsorbedLeadId: queued, Reason: "x"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "refused in MQL") || !strings.Contains(err.Error(), "is NEW") {
		t.Fatalf("merging an MQL into a new lead: %v, want FailedPrecondition naming MQL and the survivor's NEW", err)
	}
	e.assertCounts(t, before)
	if _, err := e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: mql("twin@m.example"), AbsorbedLeadId: queued, Reason: "x"}); err != nil {
		t.Fatalf("merging an MQL into an MQL: %v", err)
	}
	if _, err := e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: mql("other-mql@m.example"), AbsorbedLeadId: fresh, Reason: "x"}); err != nil {
		t.Fatalf("merging a new lead into an MQL: %v", err)
	}
}

// appendHeld appends, as handoff would, the event that puts the lead in
// st (ASSIGNED or ACCEPTED) with rep ann.
func (e *env) appendHeld(t *testing.T, leadID string, st eventv1.LeadStatus) {
	t.Helper()
	ann := &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}
	ev := &eventv1.Event{LeadId: leadID, EventType: "LeadAssigned",
		Actor:     &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "handoff"},
		Lifecycle: &eventv1.Lifecycle{Status: st, Owner: ann, Deadline: timestamppb.New(time.Now().Add(time.Hour))},
		Payload:   &eventv1.Event_LeadAssigned{LeadAssigned: &eventv1.LeadAssigned{Owner: ann}}}
	if st == eventv1.LeadStatus_LEAD_STATUS_ACCEPTED {
		ev.EventType, ev.Payload = "LeadAccepted", &eventv1.Event_LeadAccepted{LeadAccepted: &eventv1.LeadAccepted{RepId: "ann"}}
	}
	e.appendRaw(t, ev)
}

// A chain of merges stops where captures stop following it: a lead whose
// merged leads go as deep as that is not absorbed (the chain once grew
// past it, and captures and erasure of its deepest lead failed).
func TestMergeChainsStayFollowable(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	top := e.capture(t, lead("chain0@m.example")).GetLeadId()
	for i := 1; ; i++ {
		next := e.capture(t, lead(fmt.Sprintf("chain%d@m.example", i))).GetLeadId()
		_, err := e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: next, AbsorbedLeadId: top, Reason: "same person"})
		if i <= 7 {
			if err != nil {
				t.Fatalf("merge %d: %v", i, err)
			}
			top = next
			continue
		}
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "chain of more than 7 merges") {
			t.Fatalf("merge %d: %v, want FailedPrecondition naming the chain", i, err)
		}
		break
	}
	// The deepest lead's identity still finds the top of the chain.
	if got := e.capture(t, lead("chain0@m.example")); got.GetLeadId() != top {
		t.Fatalf("capture of the deepest lead went to %s, want %s", got.GetLeadId(), top)
	}
}

// appendErased appends LeadErased and nothing else: an erasure that did
// not reach the leads merged into the lead.
func (e *env) appendErased(t *testing.T, leadID string) {
	t.Helper()
	e.appendRaw(t, &eventv1.Event{LeadId: leadID, EventType: "LeadErased",
		Lifecycle: &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_ERASED},
		Payload:   &eventv1.Event_LeadErased{LeadErased: &eventv1.LeadErased{Reason: "request"}}})
}

// appendOpportunity appends OpportunityCreated by rep ann, as handoff
// would after ann accepted the lead.
func (e *env) appendOpportunity(t *testing.T, leadID string) {
	t.Helper()
	e.appendRaw(t, &eventv1.Event{LeadId: leadID, EventType: "OpportunityCreated",
		Actor: &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "ann", Team: eventv1.Team_TEAM_SALES},
		Lifecycle: &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_OPPORTUNITY,
			Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}, Deadline: timestamppb.New(time.Now().Add(30 * 24 * time.Hour))},
		Payload: &eventv1.Event_OpportunityCreated{OpportunityCreated: &eventv1.OpportunityCreated{OpportunityId: "o-1", RepId: "ann", Stage: "discovery",
			Amount: &eventv1.Money{Currency: "EUR", MinorUnits: 100000}}}})
}

// appendRaw appends ev, as another service wrote it, at the lead's version.
func (e *env) appendRaw(t *testing.T, ev *eventv1.Event) {
	t.Helper()
	ctx := ctxT(t)
	store := eventstore.New(e.nats.JS, e.cfg.Stream)
	version, err := store.Version(ctx, eventstore.LeadSubject(ev.GetLeadId()))
	if err != nil {
		t.Fatal(err)
	}
	ev.EventId, ev.OccurredAt = uuid.NewString(), timestamppb.Now()
	if _, err := store.Append(ctx, eventstore.LeadSubject(ev.GetLeadId()), version, ev); err != nil {
		t.Fatal(err)
	}
}

// keyBlocks is the wrapped data of every key block stored (pkg/vault).
func (e *env) keyBlocks(t *testing.T) [][]byte {
	t.Helper()
	st, err := e.nats.JS.Stream(t.Context(), "KV_LEADFLOW_KEYS")
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for seq := uint64(1); ; seq++ {
		m, err := st.GetMsg(t.Context(), seq, jetstream.WithGetMsgSubject("$KV.LEADFLOW_KEYS._blocks.>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out, seq = append(out, m.Data), m.Sequence
	}
}

func (e *env) getLead(t *testing.T, id string) *intakev1.Lead {
	t.Helper()
	got, err := e.client.GetLead(ctxT(t), &intakev1.GetLeadRequest{LeadId: id})
	if err != nil {
		t.Fatal(err)
	}
	return got.GetLead()
}

// consents is each channel's consent GetLead answers for a lead.
func (e *env) consents(t *testing.T, id string) map[eventv1.ConsentChannel]eventv1.ConsentStatus {
	t.Helper()
	got := map[eventv1.ConsentChannel]eventv1.ConsentStatus{}
	for _, c := range e.getLead(t, id).GetConsents() {
		got[c.GetChannel()] = c.GetStatus()
	}
	return got
}

// Replicas share no memory: an email one replica claimed for a lead (it
// came with that lead's external id) is that lead's on another replica
// too, whose first try at the email alone is to create its lead.
func TestAClaimedEmailIsTheLeadsOnEveryReplica(t *testing.T) {
	a := start(t)
	b := a.replica(t)
	l1 := a.capture(t, withExt(lead("first@r.example"), "ext-r")).GetLeadId()
	if got := a.capture(t, withExt(lead("second@r.example"), "ext-r")); got.GetLeadId() != l1 {
		t.Fatalf("external id match: %v, want %s", got, l1)
	}
	for _, e := range []*env{b, a} {
		got := e.capture(t, lead("second@r.example"))
		if got.GetLeadId() != l1 || got.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
			t.Fatalf("the claimed email alone: %v, want a resubmission on %s", got, l1)
		}
	}
	// And a lead one replica created is a resubmission on the other.
	l2 := a.capture(t, lead("third@r.example")).GetLeadId()
	if got := b.capture(t, lead("third@r.example")); got.GetLeadId() != l2 || got.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
		t.Fatalf("capture on the other replica: %v, want a resubmission on %s", got, l2)
	}
	// An erasure on one replica is seen by the other at once.
	if _, err := a.client.EraseLead(ctxT(t), &intakev1.EraseLeadRequest{LeadId: l2, Reason: "request"}); err != nil {
		t.Fatal(err)
	}
	if got := b.getLead(t, l2); !got.GetErased() || got.GetContact() != nil {
		t.Fatalf("the other replica after erasure: %v", got)
	}
	if got := b.capture(t, lead("third@r.example")); got.GetLeadId() == l2 || got.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED {
		t.Fatalf("capture of the erased person on the other replica: %v, want a new lead", got)
	}
}

// A slow import is answered row by row as its rows come, not once the
// stream ends or a chunk's thousand rows have piled up.
func TestASlowImportIsAnsweredAsItGoes(t *testing.T) {
	e := start(t)
	stream, err := e.client.ImportLeads(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	answers := make(chan *intakev1.ImportLeadsResponse, 8)
	go func() {
		defer close(answers)
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			answers <- r
		}
	}()
	for i := range 3 {
		if err := stream.Send(&intakev1.ImportLeadsRequest{Row: int64(i + 1), Lead: lead(fmt.Sprintf("slow%d@import.example", i))}); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-answers:
			if r.GetRow() != int64(i+1) || r.GetLeadId() == "" {
				t.Fatalf("answer %v, want row %d's", r, i+1)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("row %d not answered while the stream stays open", i+1)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if r, ok := <-answers; ok {
		t.Fatalf("an answer after the last row's: %v", r)
	}
}

// A steady stream whose rows come closer together than the pause that
// writes a partial chunk is answered as it goes too: a chunk's first row
// waits ten pauses at most.
func TestASteadyImportIsAnsweredAsItGoes(t *testing.T) {
	srv := testenv.StartNATS(t)
	e := startWith(t, srv, Config{Addr: "127.0.0.1:0", NATSURL: srv.Server.URL(), Stream: "LEADFLOW", Replicas: 1,
		MasterKey: hexKey(t), BlindKey: hexKey(t), Grace: time.Second, importLinger: 200 * time.Millisecond})
	stream, err := e.client.ImportLeads(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan struct{})
	go func() {
		if _, err := stream.Recv(); err == nil {
			close(answered)
		}
	}()
	for i := range 40 { // 4 s, one row every 100 ms: no 200 ms pause
		if err := stream.Send(&intakev1.ImportLeadsRequest{Row: int64(i + 1), Lead: lead(fmt.Sprintf("steady%d@import.example", i))}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-answered:
	default:
		t.Fatal("no row answered while the stream kept sending")
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
}

// lostWrite is the lead store of a server whose answer to one write of
// the next chunk of new leads is lost: the write is stored, its outcome
// unknown.
type lostWrite struct {
	app.Leads
	armed atomic.Bool
	// refused: the chunk's first write fails too, for good.
	refused bool
}

func (l *lostWrite) WriteEach(ctx context.Context, writes []app.LeadWrite) ([]uint64, []error) {
	if !l.armed.CompareAndSwap(true, false) || len(writes) < 2 {
		return l.Leads.WriteEach(ctx, writes)
	}
	if l.refused {
		writes = writes[1:]
	}
	versions, errs := l.Leads.WriteEach(ctx, writes)
	if l.refused {
		versions, errs = append([]uint64{0}, versions...), append([]error{errors.New("the store refused it")}, errs...)
	}
	errs[1] = fmt.Errorf("%w: the answer was lost", eventstore.ErrUnknownOutcome)
	return versions, errs
}

// importThroughLostWrite imports rows new people named prefix<i>@ through
// an intake whose lead store is lost (armed), and returns the stream, its
// sending side closed.
func importThroughLostWrite(t *testing.T, lost *lostWrite, prefix string, rows int) intakev1.IntakeService_ImportLeadsClient {
	t.Helper()
	n := testenv.StartNATS(t)
	e := startWith(t, n, Config{Addr: "127.0.0.1:0", NATSURL: n.Server.URL(), Stream: "LEADFLOW", Replicas: 1,
		MasterKey: hexKey(t), BlindKey: hexKey(t), Grace: time.Second, importLinger: time.Hour,
		leads: func(inner app.Leads) app.Leads { lost.Leads = inner; return lost }})
	lost.armed.Store(true)
	stream, err := e.client.ImportLeads(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		if err := stream.Send(&intakev1.ImportLeadsRequest{Row: int64(i), Lead: lead(fmt.Sprintf("%s%d@example.com", prefix, i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	return stream
}

// An import whose failed rows have no key warns of a second submission
// when any of them may be stored, though the first failed otherwise.
func TestAnImportEndsWarningOfAnyRowThatMayBeStored(t *testing.T) {
	stream := importThroughLostWrite(t, &lostWrite{refused: true}, "warn", 2)
	r, err := stream.Recv()
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "idempotency_key") || !strings.Contains(st.Message(), "row 0, 1: ") {
		t.Fatalf("the import ended with %v %v, want UNAVAILABLE naming rows 0 and 1 and the missing idempotency_key", r, err)
	}
}

// An import row whose write's outcome is unknown ends the import, naming
// the row, but only after the chunk's other rows, stored, are answered: a
// client sending again what got no answer must not resubmit them.
func TestAnImportRowLostMidChunkLeavesTheOthersAnswered(t *testing.T) {
	stream := importThroughLostWrite(t, &lostWrite{}, "lost", 3)
	var rows []int64
	for {
		r, err := stream.Recv()
		if err == nil {
			if r.GetLeadId() == "" {
				t.Fatalf("row %d answered without a lead: %v", r.GetRow(), r)
			}
			rows = append(rows, r.GetRow())
			continue
		}
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "row 1: ") {
			t.Fatalf("the import ended with %v, want UNAVAILABLE naming row 1", err)
		}
		break
	}
	if fmt.Sprint(rows) != "[0 2]" {
		t.Fatalf("answered rows %v, want [0 2]: row 2 was stored", rows)
	}
}

// lostAnswer is the lead store of a server whose answer to the next
// append is lost: the events are stored, the outcome unknown.
type lostAnswer struct {
	app.Leads
	armed atomic.Bool
	every atomic.Bool // every answer is lost, not only the next
}

func (l *lostAnswer) lose() bool { return l.every.Load() || l.armed.CompareAndSwap(true, false) }

func (l *lostAnswer) Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error) {
	v, err := l.Leads.Append(ctx, leadID, expected, events...)
	if err == nil && l.lose() {
		return 0, fmt.Errorf("%w: the answer was lost", eventstore.ErrUnknownOutcome)
	}
	return v, err
}

func (l *lostAnswer) Create(ctx context.Context, leadID string, ev *eventv1.Event) (uint64, error) {
	v, err := l.Leads.Create(ctx, leadID, ev)
	if err == nil && l.every.Load() {
		return 0, fmt.Errorf("%w: the answer was lost", eventstore.ErrUnknownOutcome)
	}
	return v, err
}

// WriteEach loses the answers of every write of its next call.
func (l *lostAnswer) WriteEach(ctx context.Context, writes []app.LeadWrite) ([]uint64, []error) {
	vs, errs := l.Leads.WriteEach(ctx, writes)
	if len(errs) > 0 && l.lose() {
		for i := range errs {
			if errs[i] == nil {
				vs[i], errs[i] = 0, fmt.Errorf("%w: the answer was lost", eventstore.ErrUnknownOutcome)
			}
		}
	}
	return vs, errs
}

// A capture whose write's outcome is unknown is UNAVAILABLE, to send
// again; but one without an idempotency key is not told that is safe:
// sent again, its submission is stored twice. So is an import's row. An
// external id with its time keys a capture as well: sent again, it is
// the first answer (without its time, only while no other capture of the
// id came between).
func TestACaptureWithAnUnknownOutcomeSaysWhetherToSendItAgain(t *testing.T) {
	lost := &lostAnswer{}
	e := startWrapped(t, func(inner app.Leads) app.Leads { lost.Leads = inner; return lost })
	id := e.capture(t, lead("unknown@example.com")).GetLeadId()
	for _, key := range []string{"", "form-9", "crm:unknown-9", "crm:untimed-9"} {
		r := lead("unknown@example.com")
		if system, id, ok := strings.Cut(key, ":"); ok {
			r.ExternalId = &eventv1.ExternalId{System: system, Id: id}
			if id == "unknown-9" {
				r.OccurredAt = timestamppb.New(time.Now().Add(-time.Minute))
			}
		} else {
			r.IdempotencyKey = key
		}
		keyed := key != "" && key != "crm:untimed-9"
		lost.armed.Store(true)
		_, err := e.client.CaptureLead(ctxT(t), r)
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || strings.Contains(st.Message(), "idempotency_key") == keyed {
			t.Errorf("key %q: %v, want UNAVAILABLE, naming the missing idempotency_key only without a key", key, err)
		}
		if lost.armed.Load() {
			t.Fatalf("key %q: the capture appended nothing", key)
		}
		if keyed {
			again, err := e.client.CaptureLead(ctxT(t), r)
			if err != nil || again.GetLeadId() != id || !again.GetReplayed() {
				t.Errorf("key %q sent again: %v %v, want the first answer, replayed", key, again, err)
			}
		}
	}
	// An import's rows: told to resend only when every failed row has a
	// key (a keyed row first, an unkeyed one after it, is not).
	for _, keys := range [][]string{{""}, {"row-9"}, {"row-10", ""}} {
		lost.armed.Store(len(keys) == 1)
		lost.every.Store(len(keys) > 1)
		stream, err := e.client.ImportLeads(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		keyless := false
		for i, key := range keys {
			r := lead(fmt.Sprintf("unknown%d-%d@example.com", len(keys), i))
			r.IdempotencyKey = key
			keyless = keyless || key == ""
			if err := stream.Send(&intakev1.ImportLeadsRequest{Row: int64(i + 1), Lead: r}); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		res, err := stream.Recv()
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || strings.Contains(st.Message(), "idempotency_key") != keyless {
			t.Errorf("import rows with keys %q: %v %v, want UNAVAILABLE, naming the missing idempotency_key only without one", keys, res, err)
		}
		if lost.armed.Load() {
			t.Fatalf("import rows with keys %q: the import wrote nothing", keys)
		}
	}
	lost.every.Store(false)
}

// A phone written with its extension is stored with it, apart, and shown
// so; a later form with another phone brings its own extension, or none.
func TestAPhoneExtensionIsKept(t *testing.T) {
	e := start(t)
	r := lead("ext@c.example")
	r.Contact.Phone = "+1 (415) 555-0100 ext. 23"
	id := e.capture(t, r).GetLeadId()
	if c := e.getLead(t, id).GetContact(); c.GetPhone() != "+14155550100" || c.GetPhoneExtension() != "23" {
		t.Fatalf("contact %v, want +14155550100 extension 23", c)
	}
	again := lead("ext@c.example")
	again.Contact.Phone = "+1 415 555 0199"
	e.capture(t, again)
	if c := e.getLead(t, id).GetContact(); c.GetPhone() != "+14155550199" || c.GetPhoneExtension() != "" {
		t.Fatalf("after a form with a new phone: %v, want +14155550199 without an extension", c)
	}
}

// A campaign takes its currency from its budget or first cost: a code
// ISO 4217 does not list now is refused there, naming the field, but a
// campaign an earlier version bound to one (HRK, when any three capitals
// passed) takes more costs in it.
func TestACampaignsCurrencyIsCurrentOrAlreadyItsOwn(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	_, err := e.client.RegisterCampaign(ctx, &intakev1.RegisterCampaignRequest{CampaignId: "typo", Name: "Typo", Channel: eventv1.Channel_CHANNEL_WEBINAR,
		Budget: &eventv1.Money{Currency: "XYZ", MinorUnits: 100}})
	assertCodeAndField(t, err, codes.InvalidArgument, "budget.currency")
	old, err := envelope.NewEvent("", &eventv1.CampaignRegistered{CampaignId: "zagreb", Name: "Zagreb fair", Channel: eventv1.Channel_CHANNEL_EVENT,
		Budget: &eventv1.Money{Currency: "HRK", MinorUnits: 1_000_000}}, envelope.Meta{CorrelationID: "c"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventstore.New(e.nats.JS, "LEADFLOW").Append(ctx, eventstore.CampaignSubject("zagreb"), 0, old); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.RecordCampaignCost(ctx, &intakev1.RecordCampaignCostRequest{CampaignId: "zagreb", CostId: "stand",
		Amount: &eventv1.Money{Currency: "HRK", MinorUnits: 200_000}}); err != nil {
		t.Fatalf("a cost in the campaign's own HRK: %v", err)
	}
}

// lookedUp is the lead store with a write of meanwhile's made right after
// the next look-up of two or more identities (an import chunk's).
type lookedUp struct {
	app.Leads
	meanwhile atomic.Pointer[func()]
}

func (l *lookedUp) Holders(ctx context.Context, keys ...app.ClaimKey) (map[app.ClaimKey]app.Holder, error) {
	held, err := l.Leads.Holders(ctx, keys...)
	if len(keys) > 1 {
		if m := l.meanwhile.Swap(nil); m != nil {
			(*m)()
		}
	}
	return held, err
}

// Two plain rows of one import chunk on one lead by two of its identities
// (its email and an alias its CRM record claimed) are stored in row
// order, also when the lead moved on between the chunk's look-up and its
// write: the later row's form is the lead's last.
func TestImportRowsOnOneLeadByTwoIdentitiesKeepTheirOrder(t *testing.T) {
	store := &lookedUp{}
	e := startWrapped(t, func(inner app.Leads) app.Leads { store.Leads = inner; return store })
	own := lead("own@order.example")
	own.ExternalId = &eventv1.ExternalId{System: "crm", Id: "order-1"}
	id := e.capture(t, own).GetLeadId()
	alias := lead("alias@order.example")
	alias.ExternalId = own.ExternalId
	if got := e.capture(t, alias); got.GetLeadId() != id {
		t.Fatalf("the CRM record's alias went to %s, not its lead %s", got.GetLeadId(), id)
	}
	activity := func() {
		if _, err := e.client.RecordActivity(ctxT(t), &intakev1.RecordActivityRequest{LeadId: id, ActivityId: "meanwhile",
			Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT}); err != nil {
			t.Error(err)
		}
	}
	store.meanwhile.Store(&activity)

	stream, err := e.client.ImportLeads(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []*intakev1.CaptureLeadRequest{lead("own@order.example"), lead("alias@order.example")} {
		r.Contact.FirstName = []string{"Old", "New"}[i]
		if err := stream.Send(&intakev1.ImportLeadsRequest{Row: int64(i + 1), Lead: r}); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	answers := importResults(t, stream)
	if store.meanwhile.Load() != nil {
		t.Fatal("the chunk looked up nothing: the race was not run")
	}
	if len(answers) != 2 || answers[0].GetLeadId() != id || answers[1].GetLeadId() != id || answers[0].GetVersion() >= answers[1].GetVersion() {
		t.Fatalf("answers %v: want both rows on %s, row 1 stored first", answers, id)
	}
	got, err := e.client.GetLead(ctxT(t), &intakev1.GetLeadRequest{LeadId: id})
	if err != nil || got.GetLead().GetContact().GetFirstName() != "New" {
		t.Fatalf("lead %v %v: want the last row's first name, New", got.GetLead().GetContact(), err)
	}
}

// claimLost is the lead store of a process killed between a capture's
// event and its external id's claim (armed: the next such claim).
type claimLost struct {
	app.Leads
	armed atomic.Bool
}

func (l *claimLost) Claim(ctx context.Context, key app.ClaimKey, seen app.Holder, claim *eventv1.Claim) error {
	if key.Kind == app.KindExt && l.armed.CompareAndSwap(true, false) {
		return errors.New("killed before the claim")
	}
	return l.Leads.Claim(ctx, key, seen, claim)
}

// A keyed capture whose external id's claim was cut off, and whose lead
// was merged before the client sent it again, claims the id on that
// retry for the lead it made, as a capture through a merged lead does: the
// CRM record's next capture, with another email, lands on the survivor
// instead of making a second lead.
func TestARetryAfterAMergeClaimsWhatItsFirstAttemptDidNot(t *testing.T) {
	store := &claimLost{}
	e := startWrapped(t, func(inner app.Leads) app.Leads { store.Leads = inner; return store })
	survivor := e.capture(t, lead("kept@merge.example")).GetLeadId()
	r := lead("first@merge.example")
	r.IdempotencyKey, r.ExternalId = "form-rm-1", &eventv1.ExternalId{System: "crm", Id: "rm-1"}
	store.armed.Store(true)
	absorbed := e.capture(t, r).GetLeadId()
	if store.armed.Load() {
		t.Fatal("the capture claimed no external id: nothing was cut off")
	}
	if _, err := e.client.FindLead(ctxT(t), &intakev1.FindLeadRequest{ExternalId: r.ExternalId}); status.Code(err) != codes.NotFound {
		t.Fatalf("the cut-off claim is found: %v", err)
	}
	if _, err := e.client.MergeLeads(ctxT(t), &intakev1.MergeLeadsRequest{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "same person"}); err != nil {
		t.Fatal(err)
	}
	if again := e.capture(t, r); again.GetLeadId() != absorbed || !again.GetReplayed() {
		t.Fatalf("sent again: %v, want the first answer, replayed", again)
	}
	found, err := e.client.FindLead(ctxT(t), &intakev1.FindLeadRequest{ExternalId: r.ExternalId})
	if err != nil || found.GetLeadId() != absorbed || found.GetSurvivorLeadId() != survivor {
		t.Fatalf("external id found as %v %v, want held by %s, merged into %s", found, err, absorbed, survivor)
	}
	next := lead("moved@merge.example")
	next.ExternalId = r.ExternalId
	if got := e.capture(t, next); got.GetLeadId() != survivor || got.GetOutcome() != intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED {
		t.Fatalf("the CRM record's next capture: %v, want a resubmission on %s", got, survivor)
	}
}

// startWrapped starts intake on a server of its own, its lead store
// wrapped by wrap.
func startWrapped(t *testing.T, wrap func(app.Leads) app.Leads) *env {
	t.Helper()
	n := testenv.StartNATS(t)
	return startWith(t, n, Config{Addr: "127.0.0.1:0", NATSURL: n.Server.URL(), Stream: "LEADFLOW", Replicas: 1,
		MasterKey: hexKey(t), BlindKey: hexKey(t), Grace: time.Second, leads: wrap})
}

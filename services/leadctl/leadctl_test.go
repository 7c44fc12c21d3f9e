package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// world is an embedded JetStream with the event stream.
type world struct {
	nats  *testenv.NATS
	store *eventstore.Store
}

func newWorld(t testing.TB) *world {
	t.Helper()
	return worldOn(t, testenv.StartNATS(t))
}

// newWorldWithUsers is newWorld on a server with a user per role: leadctl
// runs as the operator, the test's own writes as the admin. It fails the
// test if the server logged a permissions violation.
func newWorldWithUsers(t testing.TB) *world {
	t.Helper()
	n := testenv.StartNATSWithUsers(t)
	n.NoViolations(t)
	return worldOn(t, n)
}

func worldOn(t testing.TB, n *testenv.NATS) *world {
	t.Helper()
	if _, err := eventstore.EnsureStream(context.Background(), n.JS, eventstore.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	return &world{nats: n, store: eventstore.New(n.JS, "")}
}

// write decides cmd on the lead's state and appends payload, recorded at.
func (w *world) write(t *testing.T, lead string, cmd lifecycle.Command, payload proto.Message, cause string, at time.Time) *eventv1.Event {
	t.Helper()
	ctx := context.Background()
	recs, err := w.store.Load(ctx, eventstore.LeadSubject(lead))
	if err != nil {
		t.Fatal(err)
	}
	var state lifecycle.State
	var version uint64
	if len(recs) > 0 {
		state, version = lifecycle.FromProto(recs[len(recs)-1].Event.GetLifecycle()), recs[len(recs)-1].Seq
	}
	ev, _, err := lifecycle.NewEvent(lead, state, cmd, lifecycle.DefaultPolicy(), payload,
		envelope.Meta{Actor: &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "intake"}, CausationID: cause, CorrelationID: "req-1"}, at)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.Append(ctx, eventstore.LeadSubject(lead), version, ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// leadctl runs one command line against w and returns its output.
func (w *world) leadctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runCtl(context.Background(), append(w.natsFlags(), args...)...)
}

// natsFlags point leadctl at w's server, as the operator when it has
// users, and then over TLS to NATS and the services.
func (w *world) natsFlags() []string {
	flags := []string{"--nats", w.nats.Server.URL()}
	if w.nats.Passwords != nil {
		flags = append(flags, "--nats-user", natsauth.Operator, "--nats-password", w.nats.Passwords[natsauth.Operator],
			"--nats-ca", w.nats.TLS.CAFile, "--tls-ca", w.nats.TLS.CAFile)
	}
	return flags
}

func runCtl(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	root := newRoot(&out)
	root.SetArgs(args)
	root.SetErr(&out)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func captured() *eventv1.LeadCaptured {
	return &eventv1.LeadCaptured{Profile: &eventv1.Profile{Country: "GB", Employees: 200, EmailDomain: "acme.example",
		Seniority: eventv1.Seniority_SENIORITY_VP, Industry: "software"}, Attribution: &eventv1.Attribution{Source: "web-form"}}
}

func activity(typ eventv1.ActivityType) *eventv1.ActivityRecorded {
	return &eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: typ}
}

func TestTimelineAndStateAsOf(t *testing.T) { testTimelineAndStateAsOf(t, newWorld) }

func testTimelineAndStateAsOf(t *testing.T, newWorld func(testing.TB) *world) {
	w := newWorld(t)
	lead := uuid.NewString()
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	c := w.write(t, lead, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", t0)
	w.write(t, lead, lifecycle.Command{Name: lifecycle.RecordActivity}, activity(eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED), "", t0.Add(time.Hour))
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Score, Score: 80}, &eventv1.LeadScored{Total: 80, Threshold: 70}, c.GetEventId(), t0.Add(2*time.Hour))
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Qualify}, &eventv1.LeadQualified{Score: 80, Threshold: 70}, c.GetEventId(), t0.Add(3*time.Hour))

	out, err := w.leadctl(t, "timeline", lead)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("want a header and 4 events:\n%s", out)
	}
	for i, want := range []string{"LeadCaptured", "ActivityRecorded", "LeadScored", "LeadQualified"} {
		if !strings.Contains(lines[i+1], want) {
			t.Fatalf("line %d is not %s:\n%s", i+1, want, out)
		}
	}
	if !strings.Contains(lines[3], "#1") || !strings.Contains(lines[4], "MQL") {
		t.Fatalf("the score should name event #1 as its cause and the verdict make an MQL:\n%s", out)
	}

	out, err = w.leadctl(t, "timeline", lead, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var evs []struct {
		Seq   uint64 `json:"seq"`
		Event struct {
			EventType string `json:"event_type"`
		} `json:"event"`
	}
	if err := json.Unmarshal([]byte(out), &evs); err != nil || len(evs) != 4 || evs[3].Event.EventType != "LeadQualified" || evs[0].Seq >= evs[3].Seq {
		t.Fatalf("json timeline %v: %s", err, out)
	}

	out, err = w.leadctl(t, "state", lead, "--as-of", t0.Add(90*time.Minute).Format(time.RFC3339), "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st leadState
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if st.Status != "NEW" || st.Events != 2 || st.LastEvent != "ActivityRecorded" {
		t.Fatalf("state as of 10:30 = %+v", st)
	}
	// Said to the fraction asked: two answers a moment apart must not
	// read as one time.
	asOf := t0.Add(2*time.Hour + 250*time.Millisecond)
	out, err = w.leadctl(t, "state", lead, "--as-of", asOf.Format(time.RFC3339Nano))
	if err != nil || !strings.Contains(out, "2026-11-30T11:00:00.25Z") {
		t.Fatalf("state as of %s: %v\n%s", asOf.Format(time.RFC3339Nano), err, out)
	}
	out, err = w.leadctl(t, "state", lead)
	if err != nil || !strings.Contains(out, "MQL") || !strings.Contains(out, "LeadQualified") {
		t.Fatalf("state now: %v\n%s", err, out)
	}
	// Before its first event was recorded: said so, with when that event
	// says it happened (a backfilled lead's is earlier).
	if _, err := w.leadctl(t, "state", lead, "--as-of", t0.Add(-time.Minute).Format(time.RFC3339)); !errors.Is(err, errUnknownLead) ||
		!strings.Contains(err.Error(), "goes by when events were recorded") || !strings.Contains(err.Error(), "says it happened at") {
		t.Fatalf("state before capture: %v", err)
	}
}

// state without --as-of is after the lead's last event: a writer whose
// clock runs ahead of this machine's (recorded_at is the writer's) does
// not hide the newest event, nor a lead made of such events.
func TestStateNowIsAfterTheLastEvent(t *testing.T) {
	w := newWorld(t)
	lead, ahead := uuid.NewString(), uuid.NewString()
	now := time.Now()
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", now)
	w.write(t, lead, lifecycle.Command{Name: lifecycle.RecordActivity}, activity(eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK), "", now.Add(10*time.Second))
	out, err := w.leadctl(t, "state", lead, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st leadState
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if st.Events != 2 || st.LastEvent != "ActivityRecorded" || st.Version != w.version(t, lead) {
		t.Fatalf("state now, the last event recorded 10s ahead of this clock: %+v", st)
	}
	w.write(t, ahead, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", now.Add(10*time.Second))
	if out, err := w.leadctl(t, "state", ahead); err != nil || !strings.Contains(out, "LeadCaptured") {
		t.Fatalf("state now of a lead captured 10s ahead of this clock: %v\n%s", err, out)
	}
}

func TestClearErrors(t *testing.T) {
	w := newWorld(t)
	if _, err := w.leadctl(t, "timeline", uuid.NewString()); !errors.Is(err, errUnknownLead) {
		t.Fatalf("unknown lead: %v", err)
	}
	if _, err := w.leadctl(t, "timeline", "lead.>"); !errors.Is(err, errUsage) {
		t.Fatalf("not a uuid: %v", err)
	}
	if _, err := w.leadctl(t, "state", uuid.NewString(), "--as-of", "yesterday"); !errors.Is(err, errUsage) {
		t.Fatalf("bad --as-of: %v", err)
	}
	t.Setenv("LEADFLOW_AUTH_SIGNING_KEY", "")
	if _, err := w.leadctl(t, "token", "issue", "--sub", "web-forms", "--scope", "leads:read"); !errors.Is(err, errUsage) ||
		!strings.Contains(err.Error(), "no signing key") {
		t.Fatalf("token issue without a key: %v", err)
	}
	if _, err := w.leadctl(t, "dlq", "list", "-o", "yaml"); !errors.Is(err, errUsage) {
		t.Fatalf("bad -o: %v", err)
	}
	// A skip drops an event: it must name the one the operator read.
	if _, err := w.leadctl(t, "dlq", "skip", "ops", uuid.NewString()); !errors.Is(err, errUsage) ||
		!strings.Contains(err.Error(), "--seq") || !strings.Contains(err.Error(), "leadctl dlq list") {
		t.Fatalf("skip without --seq: %v", err)
	}
	_, err := runCtl(context.Background(), "--nats", "nats://127.0.0.1:1", "--timeout", "500ms", "timeline", uuid.NewString())
	if err == nil || !strings.Contains(err.Error(), "cannot reach NATS at nats://127.0.0.1:1") {
		t.Fatalf("unreachable server: %v", err)
	}
	_, err = w.leadctl(t, "--qualification", "127.0.0.1:1", "--timeout", "500ms", "explain", uuid.NewString())
	if err == nil || !strings.Contains(err.Error(), "cannot reach qualification") {
		t.Fatalf("unreachable qualification: %v", err)
	}
}

// An id pasted in another UUID form (upper case, braces, no dashes) names
// the same lead: its subject is made of the canonical form.
func TestLeadIDsInAnyUUIDForm(t *testing.T) {
	w := newWorld(t)
	id := uuid.NewString()
	w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", time.Now())
	for _, form := range []string{strings.ToUpper(id), "{" + id + "}", strings.ReplaceAll(id, "-", ""), "urn:uuid:" + id} {
		for _, cmd := range [][]string{{"timeline", form}, {"replay", "--lead", form}} {
			out, err := w.leadctl(t, cmd...)
			if err != nil || !strings.Contains(out, "LeadCaptured") {
				t.Fatalf("%v: %v\n%s", cmd, err, out)
			}
		}
	}
}

// A consumer that cannot handle one lead's event dead-letters it; dlq list
// names the group and lead, redrive (once fixed) releases it, and the list
// is empty again. skip drops the dead event instead.
func TestDeadLetterCommands(t *testing.T) { testDeadLetterCommands(t, newWorld) }

func testDeadLetterCommands(t *testing.T, newWorld func(testing.TB) *world) {
	w := newWorld(t)
	poisoned, skipped := uuid.NewString(), uuid.NewString()
	t0 := time.Now()
	w.write(t, poisoned, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", t0)
	w.write(t, skipped, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", t0)
	var fixed atomic.Bool
	var mu sync.Mutex
	handled := map[string]int{}
	// The group's one member, stopped and started again below.
	start := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- consume.Run(ctx, w.nats.JS, consume.Config{Stream: eventstore.DefaultStream, Group: "ops",
				Partitions: eventstore.Partitions, Filter: eventstore.PartitionSubjects, Key: eventstore.LeadID,
				Logger: slog.New(slog.DiscardHandler)}, func(_ context.Context, m consume.Msg) error {
				if !fixed.Load() {
					return consume.Permanent(errors.New("no route for this lead"))
				}
				mu.Lock()
				handled[m.Key]++
				mu.Unlock()
				return nil
			})
		}()
		var once sync.Once
		stop = func() { once.Do(func() { cancel(); <-done }) }
		t.Cleanup(stop)
		return stop
	}
	stop := start()
	listed := func() string {
		out, err := w.leadctl(t, "dlq", "list")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	eventually(t, 15*time.Second, func() bool {
		out := listed()
		return strings.Contains(out, poisoned) && strings.Contains(out, skipped)
	}, "dead letters not listed")
	w.write(t, poisoned, lifecycle.Command{Name: lifecycle.RecordActivity}, activity(eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK), "", time.Now())
	var dead, skippedDead uint64
	eventually(t, 10*time.Second, func() bool {
		out, _ := w.leadctl(t, "dlq", "list", "-o", "json")
		var dls []struct {
			Group, Key, Error string
			StreamSeq         uint64 `json:"stream_seq"`
			Parked            *[]uint64
		}
		_ = json.Unmarshal([]byte(out), &dls)
		for _, d := range dls {
			// Nothing parked is [], not null: scripts take its length.
			if d.Key == skipped && d.Parked != nil && len(*d.Parked) == 0 {
				skippedDead = d.StreamSeq
			}
		}
		for _, d := range dls {
			if d.Key == poisoned && d.Group == "ops" && d.Parked != nil && len(*d.Parked) == 1 && d.Error == "no route for this lead" && d.StreamSeq > 0 {
				dead = d.StreamSeq
				return skippedDead > 0
			}
		}
		return false
	}, "the later event is not parked behind the dead one, or nothing parked is not []")

	// Waited for while the cause is not fixed: served, and dead again.
	if _, err := w.leadctl(t, "dlq", "redrive", "ops", poisoned, "--seq", strconv.FormatUint(dead, 10), "--wait", "15s"); err == nil ||
		!strings.Contains(err.Error(), "failed again") || !strings.Contains(err.Error(), "1 parked") {
		t.Fatalf("redrive of a lead still failing, waited for: %v", err)
	}

	fixed.Store(true)
	stale := strconv.FormatUint(dead+1, 10)
	if _, err := w.leadctl(t, "dlq", "redrive", "ops", poisoned, "--seq", stale); err == nil || !strings.Contains(err.Error(), "another message") {
		t.Fatalf("redrive naming seq %s, not the dead one: %v", stale, err)
	}
	if out, err := w.leadctl(t, "dlq", "redrive", "ops", poisoned, "--seq", strconv.FormatUint(dead, 10), "--wait", "15s"); err != nil || !strings.Contains(out, "served") {
		t.Fatalf("redrive: %v %s", err, out)
	}
	mu.Lock()
	if handled[poisoned] != 2 {
		t.Errorf("handled %v once the redrive was served: the dead event and the one parked behind it", handled)
	}
	mu.Unlock()
	if _, err := w.leadctl(t, "dlq", "skip", "ops", skipped); !errors.Is(err, errUsage) {
		t.Fatalf("skip without --seq: %v", err)
	}
	// With no member running, nothing serves it: said, and kept.
	stop()
	if _, err := w.leadctl(t, "dlq", "skip", "ops", skipped, "--seq", strconv.FormatUint(skippedDead, 10), "--wait", "2s"); err == nil ||
		!strings.Contains(err.Error(), "not served within") {
		t.Fatalf("skip with no member running, waited for: %v", err)
	}
	start()
	eventually(t, 15*time.Second, func() bool { return strings.Contains(listed(), "no dead letters") }, "dead letters left")
	mu.Lock()
	defer mu.Unlock()
	if handled[poisoned] != 2 || handled[skipped] != 0 {
		t.Fatalf("handled %v: the re-driven lead twice (dead + parked), the skipped one never", handled)
	}
	if _, err := w.leadctl(t, "dlq", "redrive", "ops", poisoned); err == nil || !strings.Contains(err.Error(), "no dead letter") {
		t.Fatalf("redrive of nothing: %v", err)
	}
}

// A typo in tail's filters would match nothing and look like a quiet
// stream: it is refused with the names it could have been.
func TestTailRefusesUnknownFilters(t *testing.T) {
	w := newWorld(t)
	tail := func(args ...string) error {
		// One that is not refused tails until told to stop.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := runCtl(ctx, append(append(w.natsFlags(), "tail"), args...)...)
		return err
	}
	if err := tail("--type", "LeadQualifed"); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "LeadQualified, ") {
		t.Fatalf("tail --type with a typo: %v", err)
	}
	if err := tail("--type", "RoutingChanged"); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "tail follows lead events") {
		t.Fatalf("tail --type of a model's event: %v, want a usage error", err)
	}
	for typ := range notOnLeads {
		if !slices.Contains(envelope.Types(), typ) {
			t.Errorf("notOnLeads names %s, which is no event type", typ)
		}
	}
	if err := tail("--service", "qualificaton"); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "handoff, intake, nurture, qualification") {
		t.Fatalf("tail --service with a typo: %v", err)
	}
	if err := tail("--last", "-5"); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--last") {
		t.Fatalf("tail --last -5: %v, want a usage error", err)
	}
}

// A list cut at --limit says so: the count alone reads as the list's.
func TestLostSaysItsListIsCut(t *testing.T) {
	var b strings.Builder
	resp := &nurturev1.FindLostLeadsResponse{TotalLost: 5, Lost: []*nurturev1.LostLead{{LeadId: "a"}, {LeadId: "b"}}}
	if err := writeLost(&b, resp); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "the first 2 of 5 lost leads (--limit lists more)") {
		t.Fatalf("a list cut at 2 of 5:\n%s", b.String())
	}
	b.Reset()
	resp.TotalLost = 2
	if err := writeLost(&b, resp); err != nil || strings.Contains(b.String(), "--limit") {
		t.Fatalf("a whole list names --limit: %v\n%s", err, b.String())
	}
}

// Every event type has the service that writes it, so a new type cannot
// fall out of tail --service.
func TestEveryTypeHasAWriter(t *testing.T) {
	for _, typ := range envelope.Types() {
		if commandedThrough[typ] == "" {
			t.Errorf("%s: no service in commandedThrough", typ)
		}
	}
	if len(commandedThrough) != len(envelope.Types()) {
		t.Errorf("commandedThrough names %d types, the schema has %d", len(commandedThrough), len(envelope.Types()))
	}
}

// tail --service shows what a service wrote on its own and what people
// and integrations wrote through its API, which name them as the actor.
func TestTailByWritingService(t *testing.T) {
	w := newWorld(t)
	lead := uuid.NewString()
	w.writeBy(t, &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_INTEGRATION, Id: "web-forms"}, lead,
		lifecycle.Command{Name: lifecycle.Capture}, captured())
	w.writeAs(t, "qualification", lead, lifecycle.Command{Name: lifecycle.Score, Score: 10}, &eventv1.LeadScored{Total: 10, Threshold: 70})
	// An integration's capture that names a service as its actor: the
	// caller beside it shows it came through intake's API.
	w.writeByMeta(t, envelope.Meta{Actor: &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "qualification"},
		Caller: &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_INTEGRATION, Id: "web-forms"}}, lead,
		lifecycle.Command{Name: lifecycle.Resubmit}, &eventv1.LeadResubmitted{Attribution: &eventv1.Attribution{Source: "web-form"}})
	w.writeBy(t, &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "ana", Team: eventv1.Team_TEAM_MARKETING}, lead,
		lifecycle.Command{Name: lifecycle.Recycle, Reason: "manual"}, &eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_MANUAL})
	for service, want := range map[string][]string{"intake": {"LeadCaptured", "LeadResubmitted"}, "qualification": {"LeadScored"}, "nurture": {"LeadRecycled"}} {
		out, stop := w.tailing(t, "--service", service, "--last", "100")
		eventually(t, 10*time.Second, func() bool { return strings.Contains(out.String(), want[len(want)-1]) }, "tail --service %s printed %q", service, out.String())
		if got := stop(); strings.Count(got, "\n") != len(want)-1 {
			t.Fatalf("tail --service %s printed other than its %v:\n%s", service, want, got)
		}
	}
}

// tailing runs leadctl tail with args; stop waits a moment for anything
// printed after what the caller waited for, ends it, and returns what it
// printed.
func (w *world) tailing(t *testing.T, args ...string) (out *syncBuffer, stop func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		root := newRoot(out)
		root.SetErr(out)
		root.SetArgs(append(append(w.natsFlags(), "tail"), args...))
		done <- root.ExecuteContext(ctx)
	}()
	return out, func() string {
		t.Helper()
		time.Sleep(300 * time.Millisecond)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
}

func TestTailFollowsNewEvents(t *testing.T) { testTailFollowsNewEvents(t, newWorld) }

// A tail that ends says nothing of losing NATS: its own close is no loss.
func TestTailSaysNothingOfItsOwnClose(t *testing.T) {
	w := newWorld(t)
	out, stop := w.tailing(t, "--lead", uuid.NewString())
	time.Sleep(300 * time.Millisecond)
	stop()
	time.Sleep(300 * time.Millisecond) // the client's callbacks run on a goroutine of their own
	if strings.Contains(out.String(), "lost NATS") {
		t.Fatalf("tail said, as it ended: %q", out.String())
	}
}

// A tail whose NATS goes away says so, and that it is back, and follows
// on: quiet would read as no events.
func TestTailSaysWhenNATSIsGone(t *testing.T) {
	w := newWorld(t)
	lead := uuid.NewString()
	out, stop := w.tailing(t, "--lead", lead)
	time.Sleep(500 * time.Millisecond)
	w.nats.Restart(t)
	eventually(t, 20*time.Second, func() bool {
		return strings.Contains(out.String(), "lost NATS") && strings.Contains(out.String(), "NATS is back")
	}, "tail said nothing of the restart: %q", func() any { return out.String() })
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", time.Now())
	eventually(t, 20*time.Second, func() bool { return strings.Contains(out.String(), "LeadCaptured") },
		"tail showed nothing after NATS came back: %q", func() any { return out.String() })
	stop()
}

func testTailFollowsNewEvents(t *testing.T, newWorld func(testing.TB) *world) {
	w := newWorld(t)
	lead, other := uuid.NewString(), uuid.NewString()
	out, stop := w.tailing(t, "--lead", lead, "--type", "ActivityRecorded")
	time.Sleep(500 * time.Millisecond) // tail starts at the end of the stream
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", time.Now())
	w.write(t, other, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", time.Now())
	w.write(t, other, lifecycle.Command{Name: lifecycle.RecordActivity}, activity(eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK), "", time.Now())
	w.write(t, lead, lifecycle.Command{Name: lifecycle.RecordActivity}, activity(eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK), "", time.Now())
	eventually(t, 10*time.Second, func() bool { return strings.Contains(out.String(), "ActivityRecorded") }, "tail showed nothing")
	got := stop()
	if strings.Count(got, "\n") != 0 || !strings.Contains(got, lead) || strings.Contains(got, other) {
		t.Fatalf("tail --lead --type printed:\n%s", got)
	}

	// --last further back than the stream goes starts at its first event.
	back, stop := w.tailing(t, "--lead", lead, "--last", "1000")
	eventually(t, 10*time.Second, func() bool { return strings.Count(back.String(), "\n") >= 2 }, "tail --last 1000 printed %q", back.String())
	if got := stop(); !strings.Contains(got, "LeadCaptured") || !strings.Contains(got, "ActivityRecorded") || strings.Contains(got, other) {
		t.Fatalf("tail --lead --last 1000 printed:\n%s", got)
	}
}

// serve builds a service from source, runs it against w and returns its
// address once it answers health checks.
func (w *world) serve(t *testing.T, name string, args ...string) string {
	t.Helper()
	addr := freeAddr(t)
	w.run(t, build(t, name), addr, args...)
	return addr
}

// healthy waits until the gRPC server at addr reports SERVING.
func healthy(t *testing.T, addr string, creds grpc.DialOption) {
	t.Helper()
	conn, err := grpc.NewClient(addr, creds)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	eventually(t, 30*time.Second, func() bool {
		r, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
	}, "%s did not start", addr)
}

// explain asks the real qualification process (built from source) why a
// lead has its score.
func TestExplainAgainstQualification(t *testing.T) { testExplainAgainstQualification(t, newWorld) }

func testExplainAgainstQualification(t *testing.T, newWorld func(testing.TB) *world) {
	w := newWorld(t)
	addr := w.serve(t, "qualification")
	conn, err := grpc.NewClient(addr, w.nats.TLS.Dial())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := qualificationv1.NewQualificationServiceClient(conn)
	eventually(t, 20*time.Second, func() bool {
		_, err := q.ListModelVersions(context.Background(), &qualificationv1.ListModelVersionsRequest{})
		return err == nil
	}, "qualification did not start")
	activateDefault(t, q)

	lead := uuid.NewString()
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", time.Now())
	var out string
	eventually(t, 20*time.Second, func() bool {
		out, err = w.leadctl(t, "--qualification", addr, "explain", lead)
		return err == nil
	}, "no explanation: %v", func() any { return err })
	if !strings.Contains(out, "40 of threshold 35 (fit 40 + engagement 0), model v1") ||
		!strings.Contains(out, "+30  vp") || !strings.Contains(out, "+10  gb") || !strings.Contains(out, "verdict: qualifies; the lead is ") {
		t.Fatalf("explain:\n%s", out)
	}
	if _, err := w.leadctl(t, "--qualification", addr, "explain", uuid.NewString()); !errors.Is(err, errUnknownLead) {
		t.Fatalf("explain of an unknown lead: %v", err)
	}

	// A verdict no rule gave: by hand, once.
	if _, err := w.leadctl(t, "--qualification", addr, "disqualify", lead); !errors.Is(err, errUsage) {
		t.Fatalf("disqualify without a reason: %v", err)
	}
	out, err = w.leadctl(t, "--qualification", addr, "disqualify", lead, "--reason", "a competitor's analyst", "--request-id", "v-1")
	if err != nil || !strings.Contains(out, "is DISQUALIFIED") || strings.Contains(out, "first answer") {
		t.Fatalf("disqualify: %v\n%s", err, out)
	}
	// Run again with its request id: the first verdict, said to be one.
	again, err := w.leadctl(t, "--qualification", addr, "disqualify", lead, "--reason", "a competitor's analyst", "--request-id", "v-1")
	if err != nil || !strings.Contains(again, "is DISQUALIFIED") || !strings.Contains(again, "the first answer to this --request-id") {
		t.Fatalf("disqualify again: %v\n%s", err, again)
	}
	if ev := w.last(t, lead); ev.GetLeadDisqualified().GetReason() != "a competitor's analyst" || ev.GetActor().GetId() != "leadctl" {
		t.Fatalf("the verdict: %v", ev)
	}
	if _, err := w.leadctl(t, "--qualification", addr, "disqualify", lead, "--reason", "again", "--not-now"); err == nil ||
		!strings.Contains(err.Error(), "DisqualifyLead refused in DISQUALIFIED") {
		t.Fatalf("a second verdict: %v", err)
	}
}

// activateDefault proposes a small model and signs it off for both teams.
func activateDefault(t *testing.T, q qualificationv1.QualificationServiceClient) {
	t.Helper()
	ctx := context.Background()
	m := &eventv1.ScoringModel{ModelId: "scoring", Description: "leadctl test", Threshold: 35,
		FitRules: []*eventv1.FitRule{
			{Id: "vp", Description: "VP or above", Points: 30, When: &eventv1.Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority_SENIORITY_VP}}},
			{Id: "gb", Description: "In Great Britain", Points: 10, When: &eventv1.Criteria{CountryIn: []string{"GB"}}},
		}}
	marketing := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "ann", Team: eventv1.Team_TEAM_MARKETING}
	p, err := q.ProposeModel(ctx, &qualificationv1.ProposeModelRequest{Model: m, ProposedBy: marketing})
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []*eventv1.Actor{marketing, {Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "sam", Team: eventv1.Team_TEAM_SALES}} {
		if _, err := q.ApproveModel(ctx, &qualificationv1.ApproveModelRequest{Version: p.GetVersion(), Approver: who}); err != nil {
			t.Fatal(err)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var eventually = testenv.Eventually

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const (
	masterKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	blindKey  = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
)

// export, erase and lost against the real intake and nurture processes.
func TestExportEraseAndLost(t *testing.T) {
	w := newWorld(t)
	intakeAddr := w.serve(t, "intake", "-master-key", masterKey, "-blind-key", blindKey)
	nurtureAddr := w.serve(t, "nurture")
	ctl := func(args ...string) (string, error) {
		return w.leadctl(t, append([]string{"--intake", intakeAddr, "--nurture", nurtureAddr}, args...)...)
	}
	conn, err := grpc.NewClient(intakeAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := intakev1.NewIntakeServiceClient(conn).CaptureLead(context.Background(), &intakev1.CaptureLeadRequest{
		Contact:     &eventv1.Contact{Email: "grace@cobol.example", FirstName: "Grace"},
		Attribution: &eventv1.Attribution{Source: "web-form"}})
	if err != nil {
		t.Fatal(err)
	}
	lead := c.GetLeadId()
	// An access request names the person: find gives the lead to export.
	out, err := ctl("find", "--email", "Grace@COBOL.example")
	if err != nil || !strings.Contains(out, "lead "+lead+" (by email)") {
		t.Fatalf("find: %v\n%s", err, out)
	}
	if _, err := ctl("find", "--external-id", "no-colon"); !errors.Is(err, errUsage) {
		t.Fatalf("find --external-id without a system: %v", err)
	}
	if _, err := ctl("find", "--email", "nobody@cobol.example"); !errors.Is(err, errUnknownLead) {
		t.Fatalf("find of nobody: %v", err)
	}
	out, err = ctl("export", lead)
	if err != nil || !strings.Contains(out, "grace@cobol.example") || !strings.Contains(out, "Grace") {
		t.Fatalf("export: %v\n%s", err, out)
	}
	if _, err := ctl("erase", lead); !errors.Is(err, errUsage) {
		t.Fatalf("erase without a reason: %v", err)
	}
	out, err = ctl("erase", lead, "--reason", "ticket 114")
	if err != nil || !strings.Contains(out, "erased") {
		t.Fatalf("erase: %v\n%s", err, out)
	}
	out, err = ctl("export", lead)
	if err == nil && strings.Contains(out, "grace@cobol.example") {
		t.Fatalf("the erased lead still exports its email:\n%s", out)
	}
	if out, err := ctl("timeline", lead); err != nil || !strings.Contains(out, "LeadErased") {
		t.Fatalf("history after erasure: %v\n%s", err, out)
	}
	if out, err := ctl("find", "--email", "grace@cobol.example"); !errors.Is(err, errUnknownLead) {
		t.Fatalf("find after the erasure: %v\n%s", err, out)
	}

	// By hand to nurture: not an erased lead, but a new one, enrolled at once.
	if out, err := ctl("recycle", lead, "--note", "not ready"); err == nil || !strings.Contains(err.Error(), "RecycleLead refused in ERASED") {
		t.Fatalf("recycle an erased lead: %v\n%s", err, out)
	}
	if _, err := ctl("recycle", lead); !errors.Is(err, errUsage) {
		t.Fatalf("recycle without a note: %v", err)
	}
	c, err = intakev1.NewIntakeServiceClient(conn).CaptureLead(context.Background(), &intakev1.CaptureLeadRequest{
		Contact: &eventv1.Contact{Email: "ada@engine.example"}, Attribution: &eventv1.Attribution{Source: "trade-show"}})
	if err != nil {
		t.Fatal(err)
	}
	out, err = ctl("recycle", c.GetLeadId(), "--note", "trade-show list, not ready to talk")
	if err != nil || !strings.Contains(out, "enrolled in nurture-default") {
		t.Fatalf("recycle a new lead: %v\n%s", err, out)
	}
	if out, err := ctl("timeline", c.GetLeadId()); err != nil || !strings.Contains(out, "LeadRecycled") || !strings.Contains(out, "NurtureEnrolled") {
		t.Fatalf("timeline after the recycle: %v\n%s", err, out)
	}

	// A writer that leaves a lead without an owner breaks the invariant.
	orphan := uuid.NewString()
	ev, _, err := lifecycle.NewEvent(orphan, lifecycle.State{}, lifecycle.Command{Name: lifecycle.Capture}, lifecycle.DefaultPolicy(),
		captured(), envelope.Meta{CorrelationID: "x"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ev.Lifecycle.Owner, ev.Lifecycle.Deadline = nil, nil
	if _, err := w.store.Append(context.Background(), eventstore.LeadSubject(orphan), 0, ev); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() bool {
		out, err = ctl("lost")
		return found(err) && strings.Contains(out, orphan)
	}, "lost does not name the lead without an owner (or exits as if it found none): %v\n%s", func() any { return err }, func() any { return out })
	if strings.Contains(out, lead) {
		t.Fatalf("lost names the erased lead, which is terminal:\n%s", out)
	}
	out, err = ctl("lost", "-o", "json")
	if !found(err) || !strings.Contains(out, orphan) {
		t.Fatalf("lost -o json: %v\n%s", err, out)
	}
}

// serveFake serves what register registers on 127.0.0.1, in process, for
// leadctl's side of a call; the real services have tests of their own.
func serveFake(t *testing.T, register func(*grpc.Server)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	register(s)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return l.Addr().String()
}

// fakeQualification answers ExplainScore as qualification does for a lead
// it has no score of (NotFound), after delay.
type fakeQualification struct {
	qualificationv1.UnimplementedQualificationServiceServer
	delay time.Duration
}

func (q *fakeQualification) ExplainScore(ctx context.Context, r *qualificationv1.ExplainScoreRequest) (*qualificationv1.ExplainScoreResponse, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(q.delay):
	}
	return nil, status.Errorf(codes.NotFound, "score of lead %s: not found", r.GetLeadId())
}

// fakeNurture lists lost as lost and re-drives each lead with its action
// in actions; it keeps the FindLostLeads request it got.
type fakeNurture struct {
	nurturev1.UnimplementedNurtureServiceServer
	lost    *nurturev1.FindLostLeadsResponse
	actions map[string]nurturev1.RedriveAction
	mu      sync.Mutex
	asked   *nurturev1.FindLostLeadsRequest
	// perCall, if set, is the most leads one RedriveLeads answers, as
	// nurture answers those it got to before the call's deadline.
	perCall int
	// failFrom, if set, is the first RedriveLeads call that fails.
	failFrom, calls int
	// unauthenticated: every call is refused as without a token.
	unauthenticated bool
}

func (n *fakeNurture) FindLostLeads(_ context.Context, r *nurturev1.FindLostLeadsRequest) (*nurturev1.FindLostLeadsResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.asked = r
	if n.unauthenticated {
		return nil, status.Error(codes.Unauthenticated, "a bearer token is required")
	}
	// A page: the leads after the cursor, at most limit of them, as
	// nurture pages them (its order is the fake's list).
	page := proto.Clone(n.lost).(*nurturev1.FindLostLeadsResponse)
	if a := r.GetAfter(); a != nil {
		i := slices.IndexFunc(page.Lost, func(l *nurturev1.LostLead) bool { return l.GetLeadId() == a.GetLeadId() })
		page.Lost = page.Lost[i+1:]
	}
	if r.GetLimit() > 0 && len(page.Lost) > int(r.GetLimit()) {
		page.Lost = page.Lost[:r.GetLimit()]
	}
	return page, nil
}

func (n *fakeNurture) RedriveLeads(_ context.Context, r *nurturev1.RedriveLeadsRequest) (*nurturev1.RedriveLeadsResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls++
	if n.failFrom > 0 && n.calls >= n.failFrom {
		return nil, status.Error(codes.DeadlineExceeded, "the first lead outlasted the deadline")
	}
	resp := &nurturev1.RedriveLeadsResponse{}
	ids := r.GetLeadIds()
	if n.perCall > 0 {
		ids = ids[:min(n.perCall, len(ids))]
	}
	for _, id := range ids {
		r := &nurturev1.Redriven{LeadId: id, Action: n.actions[id]}
		if r.Action == nurturev1.RedriveAction_REDRIVE_ACTION_FAILED {
			r.Error = "FailedPrecondition: names program \"nowhere\", which does not exist"
		}
		resp.Leads = append(resp.Leads, r)
	}
	return resp, nil
}

// A server that answers, only slower than --timeout, is not said to be
// unreachable: the fix is --timeout, not the address.
func TestSlowServiceIsNotUnreachable(t *testing.T) {
	w := newWorld(t)
	addr := serveFake(t, func(s *grpc.Server) {
		qualificationv1.RegisterQualificationServiceServer(s, &fakeQualification{delay: time.Minute})
	})
	_, err := w.leadctl(t, "--qualification", addr, "--timeout", "300ms", "explain", uuid.NewString())
	if err == nil || !strings.Contains(err.Error(), "qualification did not answer within --timeout (300ms)") || strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("a slow qualification: %v", err)
	}
}

// qualification answers NotFound for a lead it never saw and for one not
// scored yet; explain tells them apart from the stream.
func TestExplainWithoutScore(t *testing.T) {
	w := newWorld(t)
	addr := serveFake(t, func(s *grpc.Server) {
		qualificationv1.RegisterQualificationServiceServer(s, &fakeQualification{})
	})
	lead := uuid.NewString()
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", time.Now())
	_, err := w.leadctl(t, "--qualification", addr, "explain", lead)
	if err == nil || errors.Is(err, errUnknownLead) || !strings.Contains(err.Error(), "lead "+lead+" has no score yet") {
		t.Fatalf("explain of a captured lead without a score: %v", err)
	}
	if _, err := w.leadctl(t, "--qualification", addr, "explain", uuid.NewString()); !errors.Is(err, errUnknownLead) {
		t.Fatalf("explain of an unknown lead: %v", err)
	}
}

// lostNurture is a nurture that lists two lost leads: one it owes a
// step, one it owes nothing.
func lostNurture(t *testing.T, w *world) (n *fakeNurture, owed, notOwed string, ctl func(...string) (string, error)) {
	t.Helper()
	owed, notOwed = uuid.NewString(), uuid.NewString()
	n = &fakeNurture{
		lost: &nurturev1.FindLostLeadsResponse{LeadsChecked: 2, TotalLost: 2, Lost: []*nurturev1.LostLead{
			{LeadId: owed, Reason: nurturev1.LostReason_LOST_REASON_DROPPED},
			{LeadId: notOwed, Reason: nurturev1.LostReason_LOST_REASON_OVERDUE}}},
		actions: map[string]nurturev1.RedriveAction{owed: nurturev1.RedriveAction_REDRIVE_ACTION_WRITTEN, notOwed: nurturev1.RedriveAction_REDRIVE_ACTION_NONE},
	}
	addr := serveFake(t, func(s *grpc.Server) { nurturev1.RegisterNurtureServiceServer(s, n) })
	ctl = func(args ...string) (string, error) {
		return w.leadctl(t, append([]string{"--nurture", addr}, args...)...)
	}
	return n, owed, notOwed, ctl
}

// lost passes --as-of and --grace to nurture.
func TestLostAsOfAndGrace(t *testing.T) {
	n, owed, _, ctl := lostNurture(t, newWorld(t))
	asOf := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	if out, err := ctl("lost", "--as-of", asOf.Format(time.RFC3339), "--grace", "90s"); !found(err) || !strings.Contains(out, owed) {
		t.Fatalf("lost --as-of --grace: %v\n%s", err, out)
	}
	n.mu.Lock()
	asked := n.asked
	n.mu.Unlock()
	if !asked.GetAsOf().AsTime().Equal(asOf) || asked.GetOverdueGrace().AsDuration() != 90*time.Second {
		t.Fatalf("nurture was asked %v", asked)
	}
	for _, bad := range [][]string{{"--as-of", "yesterday"}, {"--grace", "-1s"}, {"--redrive", "--as-of", asOf.Format(time.RFC3339)}} {
		if _, err := ctl(append([]string{"lost"}, bad...)...); !errors.Is(err, errUsage) {
			t.Fatalf("lost %v: %v", bad, err)
		}
	}
}

// A call refused for want of a token says where leadctl takes one.
func TestAMissingTokenIsNamed(t *testing.T) {
	t.Setenv("LEADFLOW_TOKEN", "")
	n, _, _, ctl := lostNurture(t, newWorld(t))
	n.mu.Lock()
	n.unauthenticated = true
	n.mu.Unlock()
	if _, err := ctl("lost"); err == nil || !strings.Contains(err.Error(), "$LEADFLOW_TOKEN or --token") {
		t.Fatalf("lost without a token: %v, want $LEADFLOW_TOKEN named", err)
	}
}

// lost --redrive re-drives every page of the listing, each judged as the
// first was: with a page of one, both lost leads.
func TestLostRedriveTakesEveryPage(t *testing.T) {
	n, _, _, ctl := lostNurture(t, newWorld(t))
	asOf := timestamppb.New(time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC))
	n.mu.Lock()
	n.lost.AsOf = asOf
	n.mu.Unlock()
	out, _ := ctl("lost", "--redrive", "--limit", "1")
	if !strings.Contains(out, "re-drive requested for 2 lead(s)") {
		t.Fatalf("lost --redrive --limit 1 of 2 lost leads:\n%s", out)
	}
	n.mu.Lock()
	asked := n.asked
	n.mu.Unlock()
	if !proto.Equal(asked.GetAsOf(), asOf) || asked.GetAfter().GetLeadId() == "" {
		t.Fatalf("the last page was asked %v, want the first page's as_of and a cursor", asked)
	}
}

// lost --redrive says what is true of what was done: a lead owed nothing
// is not re-driven, so it will not be "clean".
func TestLostRedriveSaysWhatWasDone(t *testing.T) {
	n, _, _, ctl := lostNurture(t, newWorld(t))
	// Nurture goes on past a lead whose re-drive fails, and says so.
	failed, both := uuid.NewString(), uuid.NewString()
	n.mu.Lock()
	n.lost.Lost = append(n.lost.Lost, &nurturev1.LostLead{LeadId: failed, Reason: nurturev1.LostReason_LOST_REASON_DROPPED},
		&nurturev1.LostLead{LeadId: both, Reason: nurturev1.LostReason_LOST_REASON_DROPPED})
	n.lost.TotalLost = 4
	n.actions[failed] = nurturev1.RedriveAction_REDRIVE_ACTION_FAILED
	n.actions[both] = nurturev1.RedriveAction_REDRIVE_ACTION_REDRIVEN_AND_WRITTEN
	n.mu.Unlock()
	// A failed re-drive exits non-zero, after the whole summary.
	out, err := ctl("lost", "--redrive")
	out0 := out
	if err == nil || !strings.Contains(err.Error(), "re-drive failed for 1 of 4 lead(s)") {
		t.Fatalf("lost --redrive with a failed lead: %v, want an error naming it\n%s", err, out)
	}
	if strings.Contains(out, "see them clean") || !strings.Contains(out, "check the 2 re-driven lead(s)") ||
		!strings.Contains(out, "1 dead letters handed back, 2 written by nurture, 1 owed nothing, 0 unknown, 1 failed") ||
		!strings.Contains(out, failed+" failed: FailedPrecondition: names program") ||
		!strings.Contains(out, "1 lead(s) were owed nothing a re-drive gives, so it does not fix them") {
		t.Fatalf("lost --redrive, one lead written, one owed nothing, one failed, one re-driven and written:\n%s", out)
	}
	out, err = ctl("lost", "--redrive", "-o", "json")
	if err == nil || !strings.Contains(out, failed) || !strings.Contains(out, "REDRIVE_ACTION_FAILED") || !strings.Contains(out, both) {
		t.Fatalf("lost --redrive -o json with a failed lead: %v, want an error and every lead's answer\n%s", err, out)
	}
	// Nurture answering one lead a call (its deadline near): the rest are
	// asked for again, and the summary is the same.
	n.mu.Lock()
	n.perCall = 1
	n.mu.Unlock()
	again, _ := ctl("lost", "--redrive")
	if again != out0 {
		t.Fatalf("lost --redrive answered a lead a call:\n%s\nwant as in one call:\n%s", again, out0)
	}
	// A call that fails stops the asking; what was answered is told.
	n.mu.Lock()
	n.calls, n.failFrom = 0, 4
	n.mu.Unlock()
	out, err = ctl("lost", "--redrive")
	if err == nil || !strings.Contains(err.Error(), "re-drive stopped after 3 of 4 leads") || !strings.Contains(out, "1 lead(s) without an answer") ||
		!strings.Contains(out, failed+" failed: FailedPrecondition") {
		t.Fatalf("lost --redrive, the fourth call failing: %v\n%s", err, out)
	}
	n.mu.Lock()
	n.calls = 0
	n.mu.Unlock()
	out, err = ctl("lost", "--redrive", "-o", "json")
	if err == nil || !json.Valid([]byte(out)) || !strings.Contains(out, failed) {
		t.Fatalf("lost --redrive -o json, the fourth call failing: %v\n%s", err, out)
	}
}

// -o json is one style across commands: every field, zero ones too, under
// its proto name (snake_case, like dlq, replay and state), indented alike.
func TestProtoJSONLikeTheRest(t *testing.T) {
	var out bytes.Buffer
	if err := printProto(newRoot(&out), &nurturev1.FindLostLeadsResponse{LeadsChecked: 12, StreamSeq: 40}); err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"lost": "[]", "total_lost": `"0"`, "parked": "[]", "orphan_claims": "[]", "leads_checked": `"12"`, "as_of": "null"} {
		if got := string(m[k]); got != want {
			t.Errorf("%s is %s, want %s: %s", k, got, want, out.String())
		}
	}
	// Indented as writeJSON indents (protojson varies its spacing).
	var compact, want bytes.Buffer
	if err := json.Compact(&compact, out.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := json.Indent(&want, compact.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	if out.String() != want.String()+"\n" {
		t.Fatalf("not indented as the other commands' JSON:\n%s", out.String())
	}
}

// A cause outside the lead (a model's activation, a timer) is named
// whole: event ids are UUIDv7s, whose first digits are only the time, so
// two causes a minute apart once read alike.
func TestTimelineNamesAnOutsideCauseWhole(t *testing.T) {
	a, b := uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()
	var recs []eventstore.Record
	for i, cause := range []string{a, b} {
		recs = append(recs, eventstore.Record{Seq: uint64(i + 1), Event: &eventv1.Event{EventId: uuid.NewString(), EventType: "LeadScored",
			CausationId: cause, CorrelationId: "activation"}})
	}
	var out bytes.Buffer
	if err := writeTimeline(&out, recs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), a) || !strings.Contains(out.String(), b) {
		t.Fatalf("causes %s and %s not named whole:\n%s", a, b, out.String())
	}
}

// An overdue deal names its fixes: close it, or move its expected close
// (it named none, and a slipped deal stayed listed).
func TestLostNamesTheFixOfAnOverdueDeal(t *testing.T) {
	var out bytes.Buffer
	err := writeLost(&out, &nurturev1.FindLostLeadsResponse{TotalLost: 1, Lost: []*nurturev1.LostLead{{LeadId: "d", Reason: nurturev1.LostReason_LOST_REASON_OVERDUE,
		Status: eventv1.LeadStatus_LEAD_STATUS_OPPORTUNITY, Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"},
		LastEventType: "OpportunityCreated", MissingStep: "closing the opportunity, won or lost"}}})
	if err != nil || !strings.Contains(out.String(), "to fix:") || !strings.Contains(out.String(), "MoveOpportunityStage with expected_close") {
		t.Fatalf("%v\n%s", err, out.String())
	}
}

// An event a timer caused says so (it said "request"): the timer's name
// and the event whose step set it, or its whole id when that event is not
// the lead's.
func TestTimelineNamesTimers(t *testing.T) {
	step, other := uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()
	recs := []eventstore.Record{{Seq: 1, Event: &eventv1.Event{EventId: step, EventType: "LeadAssigned", CausationId: "req", CorrelationId: "req"}}}
	for i, cause := range []string{step + "-accept-warn", other + "-route-retry"} {
		recs = append(recs, eventstore.Record{Seq: uint64(i + 2), Event: &eventv1.Event{EventId: uuid.NewString(), EventType: "SLAWarned",
			CausationId: cause, CorrelationId: cause}})
	}
	var out bytes.Buffer
	if err := writeTimeline(&out, recs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if !strings.Contains(lines[1], "request") || !strings.Contains(lines[2], "timer accept-warn of #1") ||
		!strings.Contains(lines[3], "timer "+other+"-route-retry") {
		t.Fatalf("timers not named:\n%s", out.String())
	}
}

// state -o json says "no owner, no deadline" as empty strings, not the
// tables' "-", which a script would read as an owner or fail to parse as
// a time.
func TestStateJSONLeavesNoneEmpty(t *testing.T) {
	st, ok := stateAsOf([]eventstore.Record{{Seq: 1, Event: &eventv1.Event{LeadId: "l", EventType: "DealWon",
		Lifecycle: &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_WON}}}}, time.Now())
	if !ok || st.Owner != "" || st.Deadline != "" {
		t.Fatalf("state of a won lead: %+v", st)
	}
}

// found reports whether err is lost's "found some" (exit status 3): the
// check ran, and what it found is printed.
func found(err error) bool {
	var f *foundError
	return errors.As(err, &f)
}

// A re-drive waited for, of a dead event its stream no longer holds (a
// fired timer's copy expires), does not say it went through: the group
// drops what is gone unhandled, and leadctl says so and fails.
func TestARedriveOfMessagesGoneFromTheirStreamSaysSo(t *testing.T) {
	w := newWorld(t)
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	if _, err := w.nats.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "GONE", Subjects: []string{"gone.>"}, AllowMsgTTL: true}); err != nil {
		t.Fatal(err)
	}
	publish := func(data string) uint64 {
		ack, err := w.nats.JS.Publish(ctx, "gone.k1", []byte(data), jetstream.WithMsgTTL(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	poison := publish("poison")
	ack, err := w.nats.JS.Publish(ctx, "gone.k2", []byte("poison"), jetstream.WithMsgTTL(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	poison2 := ack.Sequence
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- consume.Run(rctx, w.nats.JS, consume.Config{Stream: "GONE", Group: "gone", Filter: func(int) []string { return []string{"gone.>"} },
			Key: func(s string) string { return strings.TrimPrefix(s, "gone.") }, Logger: slog.New(slog.DiscardHandler)},
			func(_ context.Context, m consume.Msg) error {
				if m.Seq == poison || m.Seq == poison2 {
					return consume.Permanent(errors.New("bad"))
				}
				return nil
			})
	}()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 15*time.Second, func() bool {
		out, _ := w.leadctl(t, "dlq", "list")
		return strings.Contains(out, "k1") && strings.Contains(out, "k2")
	}, "no dead letters")
	time.Sleep(3 * time.Second) // expired
	_, err = w.leadctl(t, "dlq", "redrive", "gone", "k1", "--seq", strconv.FormatUint(poison, 10), "--wait", "15s")
	if err == nil || !strings.Contains(err.Error(), "no longer holds seq "+strconv.FormatUint(poison, 10)) || !strings.Contains(err.Error(), "dropped unhandled") {
		t.Fatalf("redrive of an expired dead event: %v, want it said dropped unhandled", err)
	}
	// A script reading -o json is told too.
	out, err := w.leadctl(t, "-o", "json", "dlq", "redrive", "gone", "k2", "--seq", strconv.FormatUint(poison2, 10))
	if err != nil || !strings.Contains(out, `"gone":`) || !strings.Contains(out, "seq "+strconv.FormatUint(poison2, 10)) {
		t.Fatalf("redrive -o json of an expired dead event: %v\n%s\nwant a gone field naming its seq", err, out)
	}
}

// An answer past gRPC's default 4 MiB (thousands of parked leads, each
// with its error) is read whole: the check is needed most then.
func TestLostReadsALargeAnswer(t *testing.T) {
	n, owed, _, ctl := lostNurture(t, newWorld(t))
	n.mu.Lock()
	for i := range 3000 {
		n.lost.Parked = append(n.lost.Parked, &nurturev1.ParkedLead{Group: "handoff", LeadId: uuid.NewString(), DeadSeq: uint64(i + 1),
			Error: strings.Repeat("x", 2000)})
	}
	n.mu.Unlock()
	if out, err := ctl("lost"); !found(err) || !strings.Contains(out, owed) {
		t.Fatalf("lost with 3,000 parked leads (6 MB): %v", err)
	}
}

// A lead whose dead letter already has a request waiting is said to be
// left as it was, not counted as handed back.
func TestLostRedriveNamesAPendingRequest(t *testing.T) {
	n, owed, _, ctl := lostNurture(t, newWorld(t))
	n.mu.Lock()
	n.actions[owed] = nurturev1.RedriveAction_REDRIVE_ACTION_PENDING
	n.mu.Unlock()
	out, err := ctl("lost", "--redrive")
	if err != nil || !strings.Contains(out, "0 dead letters handed back") || !strings.Contains(out, "1 lead(s) left as they were: an operator's skip of their dead letter") {
		t.Fatalf("lost --redrive with a request pending: %v\n%s", err, out)
	}
}

// A time to the second, as timeline prints them, holds that whole second:
// the state as of the time timeline shows for a lead's first event is
// that event's, and a time before it says when the event was recorded,
// to the fraction, so the two times never read the same.
func TestStateAsOfASecondHoldsIt(t *testing.T) {
	w := newWorld(t)
	lead := uuid.NewString()
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", t0.Add(300*time.Millisecond))
	out, err := w.leadctl(t, "state", lead, "--as-of", "2026-11-30T09:00:00Z")
	if err != nil || !strings.Contains(out, "LeadCaptured") || !strings.Contains(out, "2026-11-30T09:00:00Z") {
		t.Fatalf("state as of the second its capture was recorded in: %v\n%s", err, out)
	}
	_, err = w.leadctl(t, "state", lead, "--as-of", "2026-11-30T08:59:59Z")
	if !errors.Is(err, errUnknownLead) || !strings.Contains(err.Error(), "recorded at 2026-11-30T09:00:00.3Z") {
		t.Fatalf("state as of the second before: %v", err)
	}
	if _, err := w.leadctl(t, "state", lead, "--as-of", "2026-11-30T09:00:00.2Z"); !errors.Is(err, errUnknownLead) {
		t.Fatalf("state as of a fraction before its capture: %v", err)
	}
}

// dlq list's error column shows an error's cause, which comes last, not
// the lead and sequence its row shows already.
func TestDeadLetterErrorShowsItsCause(t *testing.T) {
	key := uuid.NewString()
	for _, c := range []struct{ err, want string }{
		{"lead.12." + key + " seq 185: decode event: envelope: malformed event: ActivityRecorded without its payload",
			"decode event: envelope: malformed event: ActivityRecorded without its payload"},
		{"lead " + key + `: LeadRecycled 01a252ea-10a0-7699-b141-5e2f9c1d7a30: names program "spring-2027", which does not exist`,
			`LeadRecycled 01a252ea-10a0-7699-b141-5e2f9c1d7a30: names program "spring-2027", which does not exist`},
		{"3 handling(s) started on redeliveries and never ended: the process handling it died, froze or was cut off each time; re-drive it once the cause is fixed",
			"3 handling(s) started on redeliveries and never ended…re-drive it once the cause is fixed"},
		{"no route for this lead", "no route for this lead"},
	} {
		head, tail, _ := strings.Cut(c.want, "…")
		got := gist(c.err, key, 120)
		if !strings.HasPrefix(got, head) || !strings.HasSuffix(got, tail) || strings.Contains(c.want, "…") != strings.Contains(got, "…") ||
			utf8.RuneCountInString(got) > 120 || strings.Contains(got, key+" seq") {
			t.Errorf("gist(%q) = %q, want %q", c.err, got, c.want)
		}
	}
}

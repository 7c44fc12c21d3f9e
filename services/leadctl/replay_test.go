package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// ctlSplit runs a command line against w with stdout and stderr apart.
func (w *world) ctlSplit(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot(&out)
	root.SetErr(&errOut)
	root.SetArgs(append(w.natsFlags(), args...))
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// ran reports whether replay ran: it may have found broken leads.
func ran(err error) bool { return err == nil || found(err) }

// replayJSON runs replay -o json over the whole stream.
func (w *world) replayJSON(t *testing.T) (res replayResult, stderr string) {
	t.Helper()
	stdout, stderr, err := w.ctlSplit(t, "replay", "-o", "json")
	if err != nil && !found(err) {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	// Exit status 3 (found) exactly when a lead broke, as lost.
	if found(err) != (res.Broken > 0) {
		t.Fatalf("replay with %d broken leads ended with %v", res.Broken, err)
	}
	return res, stderr
}

// raw appends ev to the lead's subject as a writer that bypasses the
// event store would: no expected-sequence check, version_before as given.
func (w *world) raw(t *testing.T, lead string, ev *eventv1.Event) {
	t.Helper()
	b, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	w.rawBytes(t, lead, ev.GetEventType(), b)
}

func (w *world) rawBytes(t *testing.T, lead, typ string, data []byte) {
	t.Helper()
	m := nats.NewMsg(eventstore.LeadSubject(lead))
	m.Data = data
	m.Header.Set(eventstore.HeaderType, typ)
	if _, err := w.nats.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

func breaksOf(res replayResult, lead string) []string {
	var out []string
	for _, b := range res.Breaks {
		if b.Lead == lead {
			out = append(out, b.Kind+" "+b.EventType)
		}
	}
	return out
}

// Replay runs every lead event through pkg/lifecycle and names where each
// journey broke: an event the rules refuse, a version gap, a state
// stamped against the rules, a lead left overdue. Healthy leads are not
// named; --lead shows the state after each event; windows bound it.
func TestReplayFindsBrokenJourneys(t *testing.T) { testReplayFindsBrokenJourneys(t, newWorld) }

func testReplayFindsBrokenJourneys(t *testing.T, newWorld func(testing.TB) *world) {
	w := newWorld(t)
	now := time.Now()
	healthy, refused, gap, overdue := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()

	w.qualified(t, healthy, now)

	// A writer that skips the state machine accepts a lead nobody assigned.
	w.write(t, refused, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", now)
	bad, err := envelope.NewEvent(refused, &eventv1.LeadAccepted{RepId: "ann"}, envelope.Meta{CorrelationID: "x"}, now)
	if err != nil {
		t.Fatal(err)
	}
	bad.Lifecycle = lifecycle.ToProto(lifecycle.State{Status: lifecycle.StatusAccepted, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"},
		Deadline: now.Add(time.Hour), Cycle: 1})
	recs, err := w.store.Load(context.Background(), eventstore.LeadSubject(refused))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.Append(context.Background(), eventstore.LeadSubject(refused), recs[0].Seq, bad); err != nil {
		t.Fatal(err)
	}

	// A writer that bypasses the store appends at a version long gone.
	w.write(t, gap, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", now)
	act, st, err := lifecycle.NewEvent(gap, lifecycle.FromProto(w.last(t, gap).GetLifecycle()), lifecycle.Command{Name: lifecycle.RecordActivity},
		lifecycle.DefaultPolicy(), activity(eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK), envelope.Meta{CorrelationID: "y"}, now)
	if err != nil || st.Status != lifecycle.StatusNew {
		t.Fatal(err)
	}
	act.VersionBefore = 1
	w.raw(t, gap, act)

	// Captured three hours ago; scoring was due within one.
	w.write(t, overdue, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", now.Add(-3*time.Hour))

	res, stderr := w.replayJSON(t)
	if res.Events != 8 || res.Leads != 4 || res.Broken != 3 {
		t.Fatalf("replayed %d events of %d leads, %d broken; want 8, 4, 3: %+v", res.Events, res.Leads, res.Broken, res.Breaks)
	}
	for lead, want := range map[string]string{healthy: "", refused: "refused LeadAccepted", gap: "gap ActivityRecorded", overdue: "overdue LeadCaptured"} {
		if got := strings.Join(breaksOf(res, lead), ","); got != want {
			t.Fatalf("lead %s: breaks %q, want %q", lead, got, want)
		}
	}
	for _, b := range res.Breaks {
		if b.Lead == refused && !strings.Contains(b.Detail, "Accept refused in NEW: lead is not assigned") {
			t.Fatalf("refusal: %q", b.Detail)
		}
		if b.Lead == overdue && !strings.Contains(b.Detail, "scoring and qualification") {
			t.Fatalf("overdue: %q", b.Detail)
		}
	}
	if !strings.Contains(stderr, "replay: ") {
		t.Fatalf("no progress on stderr (not a terminal: plain lines):\n%s", stderr)
	}

	// People read the same, as a table.
	stdout, _, err := w.ctlSplit(t, "replay")
	if !found(err) || !strings.Contains(stdout, "replayed 8 events of 4 leads") || !strings.Contains(stdout, "3 leads broke") ||
		!strings.Contains(lineWith(stdout, gap), "bypassed the concurrency check") || strings.Contains(stdout, healthy) {
		t.Fatalf("replay: %v\n%s", err, stdout)
	}

	// One lead: its state after each event.
	stdout, _, err = w.ctlSplit(t, "replay", "--lead", refused)
	if !ran(err) {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) < 3 || !strings.Contains(lines[1], "LeadCaptured") || !strings.Contains(lines[1], "NEW") || !strings.Contains(lines[1], "ok") ||
		!strings.Contains(lines[2], "LeadAccepted") || !strings.Contains(lines[2], "refused") {
		t.Fatalf("replay --lead:\n%s", stdout)
	}

	// A window from the overdue lead's capture holds that lead only.
	stdout, _, err = w.ctlSplit(t, "replay", "--from-seq", strconv.FormatUint(w.version(t, overdue), 10), "-o", "json")
	if !ran(err) {
		t.Fatal(err)
	}
	res = replayResult{}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.Events != 1 || res.Leads != 1 || len(res.Breaks) != 1 {
		t.Fatalf("--from-seq: %v %+v", err, res)
	}
	// Until before it was overdue: judged then, it was not yet late.
	stdout, _, err = w.ctlSplit(t, "replay", "--lead", overdue, "--until", now.Add(-150*time.Minute).Format(time.RFC3339), "-o", "json")
	if err == nil || !strings.Contains(err.Error(), "no events in the window") {
		t.Fatalf("the lead's only event was stored now, after --until, so the window is empty: %v\n%s", err, stdout)
	}

	// Errors people can act on.
	if _, _, err := w.ctlSplit(t, "replay", "--lead", uuid.NewString()); !errors.Is(err, errUnknownLead) {
		t.Fatalf("unknown lead: %v", err)
	}
	if _, _, err := w.ctlSplit(t, "replay", "--lead", "lead.>"); !errors.Is(err, errUsage) {
		t.Fatalf("not a uuid: %v", err)
	}
	if _, _, err := w.ctlSplit(t, "replay", "--since", "yesterday"); !errors.Is(err, errUsage) {
		t.Fatalf("bad --since: %v", err)
	}
	if _, _, err := w.ctlSplit(t, "replay", "--from-seq", "1000000"); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "last message") {
		t.Fatalf("replay --from-seq past the stream's end: %v, want a usage error naming its last message", err)
	}
	// One past it is a chained replay's next run, with nothing new yet.
	stream, err := w.nats.JS.Stream(context.Background(), "LEADFLOW")
	if err != nil {
		t.Fatal(err)
	}
	next := strconv.FormatUint(stream.CachedInfo().State.LastSeq+1, 10)
	if out, _, err := w.ctlSplit(t, "replay", "--from-seq", next, "-o", "json"); err != nil || !strings.Contains(out, `"events": 0,`) {
		t.Fatalf("replay --from-seq one past the end: %v %s, want nothing replayed", err, out)
	}
	if _, _, err := w.ctlSplit(t, "replay", "--from-seq", "9", "--to-seq", "3"); !errors.Is(err, errUsage) {
		t.Fatalf("from after to: %v", err)
	}
	_, err = runCtl(context.Background(), "--nats", "nats://127.0.0.1:1", "--timeout", "500ms", "replay")
	if err == nil || !strings.Contains(err.Error(), "cannot reach NATS at nats://127.0.0.1:1") {
		t.Fatalf("unreachable server: %v", err)
	}
}

// A window cut at --to-seq is judged when that message was stored: a lead
// whose deadline passed since, but which moved on in time after the
// window, is not overdue in it.
func TestReplayToSeqJudgesWhenTheWindowEnds(t *testing.T) {
	w := newWorld(t)
	lead := uuid.NewString()
	// The capture's deadline (an hour from its time) falls 2 s from now.
	c := w.write(t, lead, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", time.Now().Add(-time.Hour+2*time.Second))
	capturedAt := w.version(t, lead)
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Score, Score: 80}, &eventv1.LeadScored{Total: 80, Threshold: 70}, c.GetEventId(), time.Now())
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Qualify}, &eventv1.LeadQualified{Score: 80, Threshold: 70}, c.GetEventId(), time.Now())
	time.Sleep(3 * time.Second)
	for _, args := range [][]string{{"replay"}, {"replay", "--lead", lead}} {
		stdout, _, err := w.ctlSplit(t, append(args, "--to-seq", strconv.FormatUint(capturedAt, 10), "-o", "json")...)
		if err != nil {
			t.Fatal(err)
		}
		var res replayResult
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatal(err)
		}
		if b := breaksOf(res, lead); len(b) != 0 || res.JudgedAt.After(time.Now().Add(-2*time.Second)) {
			t.Fatalf("%v --to-seq %d: breaks %v, judged at %s", args, capturedAt, b, res.JudgedAt)
		}
	}
	// Without a bound the lead is judged now: it is an MQL in time.
	res, _ := w.replayJSON(t)
	if b := breaksOf(res, lead); len(b) != 0 {
		t.Fatalf("whole replay: %v", b)
	}
}

// A replay that --until cuts before the stream's end ends its progress
// at what its window held, whole, not part of the way to the end.
func TestReplayUntilEndsItsProgressWhole(t *testing.T) {
	w := newWorld(t)
	w.write(t, uuid.NewString(), lifecycle.Command{Name: lifecycle.Capture}, captured(), "", time.Now())
	time.Sleep(1100 * time.Millisecond)
	until := time.Now().Format(time.RFC3339) // after the first capture was stored
	time.Sleep(1100 * time.Millisecond)
	for range 3 {
		w.write(t, uuid.NewString(), lifecycle.Command{Name: lifecycle.Capture}, captured(), "", time.Now())
	}
	_, stderr, err := w.ctlSplit(t, "replay", "--until", until)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if err != nil || !strings.Contains(lines[len(lines)-1], "1 of 1 (100%)") {
		t.Fatalf("replay --until: %v, progress ends %q, want 1 of 1 (100%%)", err, lines[len(lines)-1])
	}
}

// A queued lead and an unmerged lead are steps of the state machine, so
// replay checks them like any other: done by the rules they pass, and an
// unmerge stamped as still merged (a writer that never restored the lead)
// is named.
func TestReplayChecksQueuesAndUnmerges(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	queued, unmerged, stuck, survivor := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()

	w.qualified(t, queued, now)
	fallback := lifecycle.Owner{Kind: lifecycle.OwnerQueue, ID: "fallback-emea"}
	w.write(t, queued, lifecycle.Command{Name: lifecycle.Queue, Owner: fallback}, &eventv1.LeadQueued{Queue: fallback.ID}, "", now)

	for _, lead := range []string{unmerged, stuck} {
		w.write(t, lead, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", now)
		w.write(t, lead, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor}, &eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: lead}, "", now)
	}
	before := lifecycle.FromProto(w.write(t, survivor, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", now).GetLifecycle())
	unmerge := &eventv1.LeadUnmerged{SurvivorLeadId: survivor, Reason: "two people"}
	w.write(t, unmerged, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: before.Status, Owner: before.Owner, Due: before.Deadline}, unmerge, "", now)
	bad, err := envelope.NewEvent(stuck, unmerge, envelope.Meta{CorrelationID: "z"}, now)
	if err != nil {
		t.Fatal(err)
	}
	bad.Lifecycle = w.last(t, stuck).GetLifecycle() // still MERGED
	if _, err := w.store.Append(context.Background(), eventstore.LeadSubject(stuck), w.version(t, stuck), bad); err != nil {
		t.Fatal(err)
	}

	res, _ := w.replayJSON(t)
	for lead, want := range map[string]string{queued: "", unmerged: "", survivor: "", stuck: "refused LeadUnmerged"} {
		if got := strings.Join(breaksOf(res, lead), ","); got != want {
			t.Fatalf("lead %s: breaks %q, want %q: %+v", lead, got, want, res.Breaks)
		}
	}
	if res.Unchecked["LeadQueued"] != 0 || res.Unchecked["LeadUnmerged"] != 0 {
		t.Fatalf("taken as stamped, not checked: %v", res.Unchecked)
	}
}

// qualified captures a lead, scores it 80 and qualifies it, as the rules
// allow.
func (w *world) qualified(t *testing.T, lead string, at time.Time) {
	t.Helper()
	c := w.write(t, lead, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", at)
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Score, Score: 80}, &eventv1.LeadScored{Total: 80, Threshold: 70}, c.GetEventId(), at)
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Qualify}, &eventv1.LeadQualified{Score: 80, Threshold: 70}, c.GetEventId(), at)
}

// version is the stream sequence of the lead's last event.
func (w *world) version(t *testing.T, lead string) uint64 {
	t.Helper()
	v, err := w.store.Version(context.Background(), eventstore.LeadSubject(lead))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// last is the lead's last event.
func (w *world) last(t *testing.T, lead string) *eventv1.Event {
	t.Helper()
	recs, err := w.store.Load(context.Background(), eventstore.LeadSubject(lead))
	if err != nil || len(recs) == 0 {
		t.Fatalf("load %s: %v (%d events)", lead, err, len(recs))
	}
	return recs[len(recs)-1].Event
}

// rebuild against the real projector process (built from source) and a
// fresh PostgreSQL database: it follows the rebuild to the swap, with
// progress on stderr, and the new schema serves.
func TestRebuildFollowsTheProjector(t *testing.T) {
	w := newWorld(t)
	dsn := testenv.Postgres(t)
	addr := w.serve(t, "projector", "-postgres", dsn)
	for range 20 {
		lead := uuid.NewString()
		c := w.write(t, lead, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", time.Now())
		w.write(t, lead, lifecycle.Command{Name: lifecycle.Score, Score: 80}, &eventv1.LeadScored{Total: 80, Threshold: 70}, c.GetEventId(), time.Now())
	}
	p := projectorv1.NewProjectorServiceClient(dialT(t, addr))
	var st *projectorv1.GetProjectionStatusResponse
	eventually(t, 30*time.Second, func() bool {
		var err error
		st, err = p.GetProjectionStatus(context.Background(), &projectorv1.GetProjectionStatusRequest{})
		return err == nil && st.GetPosition() >= 40
	}, "the projector did not catch up: %v", func() any { return st })
	before := st.GetActiveSchema()

	stdout, stderr, err := w.ctlSplit(t, "--projector", addr, "rebuild")
	if err != nil {
		t.Fatalf("rebuild: %v\n%s\n%s", err, stdout, stderr)
	}
	if !strings.Contains(stdout, "rebuilt 40 events into schema ") || !strings.Contains(stdout, "replacing "+before) || !strings.Contains(stderr, "rebuild: ") {
		t.Fatalf("rebuild printed:\n%s\nstderr:\n%s", stdout, stderr)
	}
	st, err = p.GetProjectionStatus(context.Background(), &projectorv1.GetProjectionStatusRequest{})
	if err != nil || st.GetActiveSchema() == before || !st.GetRebuild().GetDone() {
		t.Fatalf("after rebuild: %v %v", err, st)
	}

	stdout, _, err = w.ctlSplit(t, "--projector", addr, "rebuild", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var res rebuildResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.Events != 40 || res.Replaced != st.GetActiveSchema() || res.Schema == res.Replaced {
		t.Fatalf("rebuild -o json: %v %s", err, stdout)
	}

	// A rebuild that has not recorded itself yet (held up here before it
	// drops the schema it replaced) is followed, not taken for the one
	// done before it.
	lock, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close(context.Background())
	if _, err := lock.Exec(context.Background(), `SELECT pg_advisory_lock(x'6c6561646670'::bigint)`); err != nil { // pkg/project's setup lock
		t.Fatal(err)
	}
	done := res.Schema // the last rebuild's, serving now
	// The start, not answered within --timeout, and a second call, told
	// one runs (ALREADY_EXISTS), both follow it to its swap.
	followed := make(chan error, 2)
	followOut := make([]string, 2)
	for i, args := range [][]string{{"--timeout", "300ms"}, nil} {
		go func() {
			var err error
			followOut[i], _, err = w.ctlSplit(t, append(append([]string{"--projector", addr}, args...), "rebuild", "-o", "json")...)
			followed <- err
		}()
		time.Sleep(500 * time.Millisecond) // the first start is under way
	}
	select {
	case err := <-followed:
		t.Fatalf("leadctl rebuild returned while the rebuild it follows is held up: %v %v", err, followOut)
	case <-time.After(1500 * time.Millisecond):
	}
	if _, err := lock.Exec(context.Background(), `SELECT pg_advisory_unlock(x'6c6561646670'::bigint)`); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-followed; err != nil {
			t.Fatal(err)
		}
	}
	for _, out := range followOut {
		res = rebuildResult{}
		if err := json.Unmarshal([]byte(out), &res); err != nil || !res.Followed || res.Schema == done || res.Replaced != done {
			t.Fatalf("followed rebuild: %v %s, want a new schema replacing %s", err, out, done)
		}
	}

	// One that stopped before it recorded itself (its process died, or
	// it failed to drop the schema before it): leadctl asks again rather
	// than follow it for ever.
	h := fnv.New64a()
	h.Write([]byte("leadflow.project.rebuild.leads"))
	rebuildLock := int64(h.Sum64() >> 1)
	if _, err := lock.Exec(context.Background(), `SELECT pg_advisory_lock($1)`, rebuildLock); err != nil {
		t.Fatal(err)
	}
	go func() {
		var err error
		followOut[0], _, err = w.ctlSplit(t, "--projector", addr, "rebuild", "-o", "json")
		followed <- err
	}()
	time.Sleep(time.Second)
	if _, err := lock.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, rebuildLock); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-followed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("leadctl rebuild still follows a rebuild that never recorded itself")
	}
	done, res = res.Schema, rebuildResult{}
	if err := json.Unmarshal([]byte(followOut[0]), &res); err != nil || res.Replaced != done || res.Schema == done {
		t.Fatalf("after asking again: %v %s, want a new schema replacing %s", err, followOut[0], done)
	}

	_, _, err = w.ctlSplit(t, "--projector", "127.0.0.1:1", "--timeout", "500ms", "rebuild")
	if err == nil || !strings.Contains(err.Error(), "cannot reach projector at 127.0.0.1:1 (set --projector)") {
		t.Fatalf("unreachable projector: %v", err)
	}
	if _, _, err := w.ctlSplit(t, "--projector", addr, "rebuild", "--poll", "0s"); !errors.Is(err, errUsage) {
		t.Fatalf("bad --poll: %v", err)
	}
}

// queues against the real projector: what the queues before a rep hold
// (an MQL overdue for routing, an escalation in a manager's queue), then
// one queue's leads.
func TestQueuesFromTheProjector(t *testing.T) {
	w := newWorld(t)
	addr := w.serve(t, "projector", "-postgres", testenv.Postgres(t))
	old, now := time.Now().Add(-48*time.Hour), time.Now()
	mql := uuid.NewString()
	c := w.write(t, mql, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", old)
	w.write(t, mql, lifecycle.Command{Name: lifecycle.Qualify}, &eventv1.LeadQualified{}, c.GetEventId(), old)
	escalated := func() string {
		esc := uuid.NewString()
		c := w.write(t, esc, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", now)
		q := w.write(t, esc, lifecycle.Command{Name: lifecycle.Qualify}, &eventv1.LeadQualified{}, c.GetEventId(), now)
		ann := &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}
		a := w.write(t, esc, lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}},
			&eventv1.LeadAssigned{Owner: ann, Segment: "emea"}, q.GetEventId(), now)
		queue := lifecycle.Owner{Kind: lifecycle.OwnerQueue, ID: "manager:emea"}
		w.write(t, esc, lifecycle.Command{Name: lifecycle.Reassign, Owner: queue},
			&eventv1.LeadReassigned{From: ann, To: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_QUEUE, Id: queue.ID}, Segment: "emea"}, a.GetEventId(), now)
		return esc
	}
	esc, esc2 := escalated(), escalated()

	var out string
	eventually(t, 30*time.Second, func() bool {
		var err error
		out, _, err = w.ctlSplit(t, "--projector", addr, "queues")
		// Partitions are projected each in its own order: wait for both.
		return err == nil && regexp.MustCompile(`(?m)^manager:emea +ASSIGNED +2 `).MatchString(out) &&
			regexp.MustCompile(`(?m)^routing +MQL +1 `).MatchString(out)
	}, "queues never showed the manager's queue with both leads and the routing queue:\n%s", func() any { return out })
	if !regexp.MustCompile(`(?m)^manager:emea +ASSIGNED +2 +0 `).MatchString(out) || !regexp.MustCompile(`(?m)^routing +MQL +1 +1 `).MatchString(out) {
		t.Fatalf("queues printed:\n%s", out)
	}
	queuePage = 1 // a queue longer than a page is listed whole
	t.Cleanup(func() { queuePage = 500 })
	out, _, err := w.ctlSplit(t, "--projector", addr, "queues", "manager:emea")
	if err != nil || !strings.Contains(out, esc) || !strings.Contains(out, esc2) || !strings.Contains(out, "ann") || strings.Contains(out, mql) {
		t.Fatalf("queues manager:emea: %v\n%s", err, out)
	}
	out, _, err = w.ctlSplit(t, "--projector", addr, "queues", "manager:emea", "--segment", "smb")
	if err != nil || !strings.Contains(out, "queue manager:emea holds no lead") {
		t.Fatalf("queues manager:emea --segment smb: %v\n%s", err, out)
	}
}

// Two leads found to hold one person's identities are listed by replay
// until an operator merges them (leadctl merge, against the real intake);
// an unmerge settles them too.
func TestMergeCandidatesAndMerge(t *testing.T) {
	w := newWorld(t)
	intakeAddr := w.serve(t, "intake", "-master-key", masterKey, "-blind-key", blindKey)
	conn, err := grpc.NewClient(intakeAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	intake := intakev1.NewIntakeServiceClient(conn)
	capture := func(email, crm string) string {
		t.Helper()
		r := &intakev1.CaptureLeadRequest{Contact: &eventv1.Contact{Email: email}, Attribution: &eventv1.Attribution{Source: "web-form"}}
		if crm != "" {
			r.ExternalId = &eventv1.ExternalId{System: "crm", Id: crm}
		}
		c, err := intake.CaptureLead(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		return c.GetLeadId()
	}
	a := capture("ada@analytical.example", "crm-7")
	b := capture("ada.lovelace@home.example", "")
	capture("ada.lovelace@home.example", "crm-7") // both identities, held by two leads
	candidates := func() []mergeCandidate {
		t.Helper()
		res, _ := w.replayJSON(t)
		return res.MergeCandidates
	}
	got := candidates()
	if len(got) != 1 || pairOf(got[0].Lead, got[0].Other) != pairOf(a, b) {
		t.Fatalf("merge candidates %+v, want the pair %s, %s", got, a, b)
	}
	if stdout, _, err := w.ctlSplit(t, "replay"); err != nil || !strings.Contains(stdout, "1 open merge candidate(s)") || !strings.Contains(stdout, "leadctl merge") {
		t.Fatalf("replay text: %v\n%s", err, stdout)
	}
	ctl := func(args ...string) string {
		t.Helper()
		out, err := w.leadctl(t, append([]string{"--intake", intakeAddr}, args...)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	if _, err := w.leadctl(t, "--intake", intakeAddr, "merge", a, b); !errors.Is(err, errUsage) {
		t.Fatalf("merge without a reason: %v", err)
	}
	if out := ctl("merge", a, b, "--reason", "ticket 9"); !strings.Contains(out, "merged: survivor "+a) {
		t.Fatalf("merge: %s", out)
	}
	if out := ctl("merge", a, b, "--reason", "ticket 9"); !strings.Contains(out, "already merged") {
		t.Fatalf("merge again: %s", out)
	}
	if got := candidates(); len(got) != 0 {
		t.Fatalf("candidates after the merge: %+v", got)
	}
	if out := ctl("timeline", b); !strings.Contains(out, "LeadMerged") || !strings.Contains(out, "MERGED") {
		t.Fatalf("absorbed lead's timeline:\n%s", out)
	}
	if out := ctl("unmerge", a, b, "--reason", "two people after all"); !strings.Contains(out, "unmerged: survivor "+a) {
		t.Fatalf("unmerge: %s", out)
	}
	if got := candidates(); len(got) != 0 {
		t.Fatalf("candidates after the unmerge, which decided them: %+v", got)
	}
	// The survivor's records of both stay as it was: no step of the state
	// machine, whose Merge and Unmerge are the absorbed lead's.
	res, _ := w.replayJSON(t)
	for _, lead := range []string{a, b} {
		if got := breaksOf(res, lead); len(got) != 0 {
			t.Fatalf("lead %s: breaks %q: %+v", lead, got, res.Breaks)
		}
	}
	if res.Unchecked["LeadMerged (survivor)"] != 1 || res.Unchecked["LeadUnmerged (survivor)"] != 1 || res.Unchecked["LeadMerged"] != 0 {
		t.Fatalf("unchecked %v: want the survivor's two records only", res.Unchecked)
	}
}

// An owner is taken from the event only where its command names one
// (Assign, Queue, Enroll, Reassign, Unmerge); elsewhere it is the rules':
// a rejection goes to the nurture queue, so one stamped as still the
// rep's is a stamp break, while the rules' own steps replay clean.
func TestReplayChecksStampedOwners(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	ana := lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ana"}
	assigned := func(lead string) {
		w.qualified(t, lead, now)
		w.write(t, lead, lifecycle.Command{Name: lifecycle.Assign, Owner: ana}, &eventv1.LeadAssigned{Rule: "manual"}, "", now)
	}
	kept, rejected, notNow := uuid.NewString(), uuid.NewString(), uuid.NewString()

	assigned(kept)
	bad, err := envelope.NewEvent(kept, &eventv1.LeadRejected{RepId: "ana", Reason: eventv1.RejectReason_REJECT_REASON_BAD_DATA},
		envelope.Meta{CorrelationID: "x"}, now)
	if err != nil {
		t.Fatal(err)
	}
	// RECYCLED as the rules say, but still the rep's.
	bad.Lifecycle = lifecycle.ToProto(lifecycle.State{Status: lifecycle.StatusRecycled, Owner: ana, Deadline: now.Add(time.Hour), Cycle: 1, Score: 80})
	if _, err := w.store.Append(context.Background(), eventstore.LeadSubject(kept), w.version(t, kept), bad); err != nil {
		t.Fatal(err)
	}

	assigned(rejected)
	w.write(t, rejected, lifecycle.Command{Name: lifecycle.Reject, Reason: "bad data"},
		&eventv1.LeadRejected{RepId: "ana", Reason: eventv1.RejectReason_REJECT_REASON_BAD_DATA}, "", now)
	w.qualified(t, notNow, now)
	w.write(t, notNow, lifecycle.Command{Name: lifecycle.Disqualify, Reason: "not yet", NotNow: true},
		&eventv1.LeadDisqualified{Reason: "not yet", NotNow: true}, "", now)

	res, _ := w.replayJSON(t)
	for lead, want := range map[string]string{kept: "stamp LeadRejected", rejected: "", notNow: ""} {
		if got := strings.Join(breaksOf(res, lead), ","); got != want {
			t.Fatalf("lead %s: breaks %q, want %q: %+v", lead, got, want, res.Breaks)
		}
	}
	for _, b := range res.Breaks {
		if b.Lead == kept && !strings.Contains(b.Detail, `stamped owner "rep ana", the rules make it "queue nurture"`) {
			t.Fatalf("stamp: %q", b.Detail)
		}
	}
}

// A lead's first event that names an earlier version is a gap when that
// sequence holds no event of the lead (here another lead's), in a replay
// of the whole stream and of the lead alone; a window that starts after
// a lead's real earlier event still starts from it.
func TestReplayFirstEventGap(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	other, lead, windowed := uuid.NewString(), uuid.NewString(), uuid.NewString()
	w.qualified(t, other, now)
	ev, _, err := lifecycle.NewEvent(lead, lifecycle.FromProto(w.last(t, other).GetLifecycle()),
		lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ana"}}, lifecycle.DefaultPolicy(),
		&eventv1.LeadAssigned{Rule: "manual"}, envelope.Meta{CorrelationID: "x"}, now)
	if err != nil {
		t.Fatal(err)
	}
	ev.VersionBefore = w.version(t, other) // after another lead's event
	w.raw(t, lead, ev)

	w.write(t, windowed, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", now)
	w.write(t, windowed, lifecycle.Command{Name: lifecycle.RecordActivity}, activity(eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK), "", now)

	res, _ := w.replayJSON(t)
	if got := strings.Join(breaksOf(res, lead), ","); got != "gap LeadAssigned" {
		t.Fatalf("whole stream: breaks %q, want the gap: %+v", got, res.Breaks)
	}
	stdout, _, err := w.ctlSplit(t, "replay", "--lead", lead, "-o", "json")
	if !ran(err) {
		t.Fatal(err)
	}
	res = replayResult{}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(breaksOf(res, lead), ","); got != "gap LeadAssigned" || !strings.Contains(res.Breaks[0].Detail, "holds no event of this lead") {
		t.Fatalf("--lead: breaks %q, want the gap: %+v", got, res.Breaks)
	}

	stdout, _, err = w.ctlSplit(t, "replay", "--from-seq", strconv.FormatUint(w.version(t, windowed), 10), "-o", "json")
	if !ran(err) {
		t.Fatal(err)
	}
	res = replayResult{}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.Events != 1 || len(res.Breaks) != 0 {
		t.Fatalf("a window from the lead's second event: %v %+v", err, res)
	}
}

// --since holds with --from-seq too: the replay starts from the later of
// the two, and events stored before --since are neither counted nor
// reported.
func TestReplaySinceWithFromSeq(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	a, b := uuid.NewString(), uuid.NewString()
	w.qualified(t, a, now)
	w.write(t, b, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", now)
	time.Sleep(5 * time.Millisecond)
	since := time.Now()
	time.Sleep(5 * time.Millisecond)
	w.write(t, a, lifecycle.Command{Name: lifecycle.RecordActivity}, activity(eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK), "", now)
	first := w.version(t, a)
	w.write(t, b, lifecycle.Command{Name: lifecycle.RecordActivity}, activity(eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK), "", now)

	replay := func(fromSeq uint64) replayResult {
		t.Helper()
		stdout, _, err := w.ctlSplit(t, "replay", "--from-seq", strconv.FormatUint(fromSeq, 10), "--since", since.Format(time.RFC3339Nano), "-o", "json")
		if !ran(err) {
			t.Fatal(err)
		}
		var res replayResult
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("%v: %s", err, stdout)
		}
		return res
	}
	if res := replay(1); res.Events != 2 || res.Leads != 2 || res.FromSeq != first || res.ToSeq != w.version(t, b) || len(res.Breaks) != 0 {
		t.Fatalf("--from-seq 1 --since T: want the 2 events stored after T, from seq %d, clean: %+v", first, res)
	}
	// --from-seq after --since: it is the later bound.
	if res := replay(w.version(t, b)); res.Events != 1 || res.Leads != 1 || res.FromSeq != w.version(t, b) {
		t.Fatalf("--from-seq after --since: want b's last event only: %+v", res)
	}
}

// An event a write that bypassed the concurrency check stepped over (the
// next one names the version before it) is in the lead's timeline, and
// the lead's replay finds the gap as the whole stream's does: read along
// the version chain, it would be missing with no trace.
func TestALeadsReadShowsAnEventSteppedOver(t *testing.T) {
	w := newWorld(t)
	lead, now := uuid.NewString(), time.Now()
	capture := w.write(t, lead, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", now)
	w.write(t, lead, lifecycle.Command{Name: lifecycle.RecordActivity}, activity(eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK), "", now)
	recs, err := w.store.Load(context.Background(), eventstore.LeadSubject(lead))
	if err != nil || len(recs) != 2 || recs[0].Event.GetEventId() != capture.GetEventId() {
		t.Fatalf("the lead before: %v %v", recs, err)
	}
	act, _, err := lifecycle.NewEvent(lead, lifecycle.FromProto(recs[1].Event.GetLifecycle()), lifecycle.Command{Name: lifecycle.RecordActivity},
		lifecycle.DefaultPolicy(), activity(eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT), envelope.Meta{CorrelationID: "y"}, now)
	if err != nil {
		t.Fatal(err)
	}
	act.VersionBefore = recs[0].Seq
	w.raw(t, lead, act)

	out, err := w.leadctl(t, "timeline", lead, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, `"ActivityRecorded"`); n != 2 {
		t.Fatalf("timeline: %d activities, want both: %s", n, out)
	}
	stdout, _, err := w.ctlSplit(t, "replay", "--lead", lead, "-o", "json")
	if !found(err) {
		t.Fatalf("replay --lead: %v, want exit 3", err)
	}
	var res replayResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if got := strings.Join(breaksOf(res, lead), ","); res.Events != 3 || got != "gap ActivityRecorded" {
		t.Fatalf("replay --lead: %d events, breaks %q; want 3 and the gap", res.Events, got)
	}
}

// A lead's replay in a window counts only what the window holds: a merge
// candidate found before it is neither an unchecked event nor an open
// candidate of the window.
func TestALeadsReplayCountsOnlyItsWindow(t *testing.T) {
	w := newWorld(t)
	lead, other, now := uuid.NewString(), uuid.NewString(), time.Now()
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", now)
	w.write(t, other, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", now)
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Resubmit}, &eventv1.MergeCandidateFound{OtherLeadId: other,
		Identity: "email"}, "", now)
	act := w.write(t, lead, lifecycle.Command{Name: lifecycle.RecordActivity}, activity(eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK), "", now)
	recs, err := w.store.Load(context.Background(), eventstore.LeadSubject(lead))
	if err != nil || len(recs) != 3 || recs[2].Event.GetEventId() != act.GetEventId() {
		t.Fatalf("the lead: %v %v", recs, err)
	}
	for _, window := range [][]string{nil, {"--from-seq", fmt.Sprint(recs[2].Seq)}} {
		stdout, _, err := w.ctlSplit(t, append([]string{"replay", "--lead", lead, "-o", "json"}, window...)...)
		if err != nil {
			t.Fatal(err)
		}
		var res replayResult
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("%v: %s", err, stdout)
		}
		whole := window == nil
		if whole != (res.Unchecked["MergeCandidateFound"] == 1) || whole != (len(res.MergeCandidates) == 1) {
			t.Errorf("replay --lead %v: unchecked %v, candidates %v; want the candidate only without a window", window, res.Unchecked, res.MergeCandidates)
		}
	}
}

// An event stored under a lead that does not fit it (another lead's id,
// a type without its payload, bytes that are no event), which every
// consumer dead-letters and parks the lead for, breaks the journey of
// the lead it is stored under, and no other's: that is the lead to look
// at. Its stamp stands, as it does for the services' readers.
func TestReplayBlamesTheLeadAnEventIsStoredUnder(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	stuck, named, garbled := uuid.NewString(), uuid.NewString(), uuid.NewString()
	for _, l := range []string{named, stuck, garbled} {
		w.write(t, l, lifecycle.Command{Name: lifecycle.Capture}, captured(), "", now)
	}
	bad := func(lead string) *eventv1.Event {
		t.Helper()
		ev, _, err := lifecycle.NewEvent(stuck, lifecycle.FromProto(w.last(t, stuck).GetLifecycle()), lifecycle.Command{Name: lifecycle.RecordActivity},
			lifecycle.DefaultPolicy(), activity(eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED), envelope.Meta{CorrelationID: "x"}, now)
		if err != nil {
			t.Fatal(err)
		}
		ev.LeadId, ev.VersionBefore = lead, w.version(t, stuck)
		return ev
	}
	w.raw(t, stuck, bad(named)) // another lead's id
	bare := bad(stuck)
	bare.Payload = nil // a known type without its payload
	w.raw(t, stuck, bare)
	mislabelled, err := proto.Marshal(bad(stuck))
	if err != nil {
		t.Fatal(err)
	}
	w.rawBytes(t, stuck, "LeadScored", mislabelled) // its header names another type
	w.write(t, stuck, lifecycle.Command{Name: lifecycle.RecordActivity}, activity(eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK), "", now)
	w.rawBytes(t, garbled, "ActivityRecorded", []byte{0xff, 0xff, 0xff})

	res, _ := w.replayJSON(t)
	want := "malformed ActivityRecorded,malformed ActivityRecorded,malformed ActivityRecorded"
	if got := strings.Join(breaksOf(res, stuck), ","); got != want {
		t.Fatalf("whole stream: %s's breaks %q, want both malformed events: %+v", stuck, got, res.Breaks)
	}
	if got := breaksOf(res, named); len(got) != 0 {
		t.Fatalf("whole stream: the lead the event names, stored elsewhere, broke: %v", got)
	}
	if got := strings.Join(breaksOf(res, garbled), ","); got != "malformed ActivityRecorded" {
		t.Fatalf("whole stream: the undecodable event's lead: breaks %q: %+v", got, res.Breaks)
	}
	if res.Leads != 3 || res.Broken != 2 || res.Events != 8 {
		t.Fatalf("whole stream: %d events of %d leads, %d broke; want 8 of 3, 2 broke", res.Events, res.Leads, res.Broken)
	}

	stdout, _, err := w.ctlSplit(t, "replay", "--lead", stuck, "-o", "json")
	if !found(err) {
		t.Fatalf("replay --lead: %v, want exit 3", err)
	}
	res = replayResult{}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if got := strings.Join(breaksOf(res, stuck), ","); res.Leads != 1 || res.Events != 5 || got != want || len(res.Breaks) != 3 {
		t.Fatalf("replay --lead: %d events of %d leads, breaks %+v; want 5 of 1 and the three malformed events", res.Events, res.Leads, res.Breaks)
	}
}

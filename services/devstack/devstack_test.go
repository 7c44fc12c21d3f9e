package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	"github.com/leadflow/leadflow/pkg/natsserver"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// make run as a new user meets it: built from the checkout, every service
// up, the demo through the public APIs showing what the README promises
// (routing by territory and pool and by account owner, a lead worked to a
// won deal, a rejection back to nurture, an SLA breach escalating), the
// read side agreeing, Ctrl-C stopping everything, and a second run
// replaying the demo instead of adding to it.
func TestMakeRun(t *testing.T) {
	t.Parallel()
	p := newPlace(t)
	at := p.at

	start := time.Now()
	first := p.start(t)
	out := first.waitFor(t, "go run ./services/leadctl token revoke", 4*time.Minute)
	for _, want := range []string{
		"rule europe matched; round robin of pool emea chose",      // territory, then pool
		"account orbital (domain orbit.example) is owned by dev",   // account owner
		"meeting booked, opportunity, negotiation, won EUR 45,000", // worked to a won deal
		"rejected by", "LeadRecycled: recycled: rejected by rep", // back to nurture
		"ACCEPT breached → NEXT_REP; owners dev → ",       // the breach escalating
		"left unaccepted on purpose", "leadctl reassign ", // and what clears it
		"contact.email: must be a plain email address",                            // bad input, by field
		"LEADFLOW_INTAKE_ADDR=" + at(7101), "LEADFLOW_NATS_URL=nats://127.0.0.1:", // where leadctl must look
		"http://" + at(7180) + "/",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("make run's output lacks %q", want)
		}
	}
	for _, bad := range []string{"not scored yet", "not routed yet", "no escalation yet", "(replayed)"} {
		if strings.Contains(out, bad) {
			t.Errorf("make run's first output says %q", bad)
		}
	}
	leads := demoLeadLines(out)
	if len(leads) != len(demoLeads)+1 {
		t.Fatalf("demo leads printed: %v", leads)
	}
	ada := leads["ada@analytical.example"]
	if again := leads["ADA@Analytical.Example"]; again != ada {
		t.Errorf("the same person typed differently: lead %s, not ada's %s", again, ada)
	}
	checkAsOf(t, out, ada, start)
	auth := []string{"Authorization", "Bearer " + printedToken(t, out)}
	routingVersion := func() any {
		code, body := testenv.HTTPJSON(t, "POST", "http://"+at(7203)+"/leadflow.handoff.v1.HandoffService/GetRouting", "{}", auth...)
		if code != 200 {
			t.Fatalf("GetRouting: %d %v", code, body)
		}
		return testenv.JSONField(body, "version")
	}
	version := routingVersion()

	// The read side tells the same story, through the printed addresses.
	testenv.Eventually(t, 30*time.Second, func() bool {
		code, body := testenv.HTTPJSON(t, "GET", "http://"+at(7205)+"/v1/leads/"+ada, "", auth...)
		return code == 200 && testenv.JSONField(body, "lead", "status") == "LEAD_STATUS_WON"
	}, "ada's lead is not WON in the projector")
	if code, page := testenv.HTTP(t, "GET", "http://"+at(7180)+"/", ""); code != 200 || !strings.Contains(page, "Leadflow") {
		t.Errorf("the dashboard: %d %.200q", code, page)
	}
	checkReportCommand(t, p, out, auth)
	checkNATSCommands(t, p, out, ada)
	first.stop(t)
	for _, port := range []int{7101, 7105, 7205, 7180} {
		if c, err := net.DialTimeout("tcp", at(port), time.Second); err == nil {
			c.Close()
			t.Errorf("%s still listens after Ctrl-C", at(port))
		}
	}

	// Again on the same data: the demo replays.
	second := p.start(t)
	out = second.waitFor(t, "go run ./services/leadctl token revoke", 2*time.Minute)
	again := demoLeadLines(out)
	for email, id := range leads {
		if again[email] != id {
			t.Errorf("second run: %s is lead %s, was %s", email, again[email], id)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "CAPTURE_OUTCOME_") && !strings.Contains(line, "(replayed)") {
			t.Errorf("second run captured anew: %s", line)
		}
	}
	// Replayed, the demo still finds what it reports (TestDemoTwice checks more).
	for _, bad := range []string{"not scored yet", "not routed yet", "no escalation yet", "arning"} {
		if strings.Contains(out, bad) {
			t.Errorf("make run's second output says %q", bad)
		}
	}
	checkAsOf(t, out, ada, start)
	// The same routing data again writes no routing version.
	if again := routingVersion(); again != version {
		t.Errorf("second run: routing version %v, was %v", again, version)
	}
	// A service killed (kill -9) is started again, and the stack runs on.
	nurture := filepath.Join(p.data, "bin", "nurture")
	killed := pidsOf(t, nurture)
	if len(killed) != 1 {
		t.Fatalf("nurture processes: %v, want one", killed)
	}
	if err := syscall.Kill(killed[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, func() bool {
		pids := pidsOf(t, nurture)
		res, err := http.Get("http://" + at(7204) + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return len(pids) == 1 && pids[0] != killed[0] && res.StatusCode == 200
	}, "nurture was not started again after a kill -9")
	// devstack killed leaves no service behind.
	second.stopped = true
	if err := second.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = second.cmd.Wait()
	testenv.Eventually(t, 30*time.Second, func() bool { return len(pidsOf(t, filepath.Join(p.data, "bin"))) == 0 },
		"services outlived their devstack's kill -9: %v", func() any { return pidsOf(t, filepath.Join(p.data, "bin")) })

	// The launcher killed (make, go run), the stack stops: devstack, its
	// services and its NATS port.
	third := p.launch(t, true, "-seed=false")
	third.waitFor(t, "go run ./services/leadctl token revoke", 2*time.Minute)
	third.stopped = true
	if err := third.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = third.cmd.Wait()
	testenv.Eventually(t, 60*time.Second, func() bool {
		if len(pidsOf(t, p.bin)) > 0 || len(pidsOf(t, filepath.Join(p.data, "bin"))) > 0 {
			return false
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.natsPort), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, "the stack outlived its launcher's kill -9: devstack %v, services %v", func() any { return pidsOf(t, p.bin) },
		func() any { return pidsOf(t, filepath.Join(p.data, "bin")) })
}

// pidsOf are the processes whose program is path, or under path (a
// directory).
func pidsOf(t *testing.T, path string) []int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue // gone meanwhile
		}
		prog, _, _ := strings.Cut(string(b), "\x00")
		if prog == path || strings.HasPrefix(prog, path+"/") {
			out = append(out, pid)
		}
	}
	return out
}

// A run stopped before its demo accepted Ada's lead, which then moved on
// to another rep (as an SLA breach moves it): the next run works it as
// that rep, and Ctrl-C while its demo still runs stops it cleanly.
func TestMakeRunAfterTheOwnerChanged(t *testing.T) {
	t.Parallel()
	p := newPlace(t)

	first := p.start(t, "-seed=false")
	out := first.waitFor(t, "go run ./services/leadctl token revoke", 2*time.Minute)
	_, signer, _, err := loadKeys(filepath.Join(p.data, "keys.env"))
	if err != nil {
		t.Fatal(err)
	}
	conns := p.dial(t, "intake", "qualification", "handoff")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+printedToken(t, out)))
	if err := seedSetup(ctx, conns, callerAs(signer), io.Discard); err != nil {
		t.Fatal(err)
	}
	ada, err := captureDemo(ctx, intakev1.NewIntakeServiceClient(conns["intake"]), 0)
	if err != nil {
		t.Fatal(err)
	}
	h := handoffv1.NewHandoffServiceClient(conns["handoff"])
	var routed string
	testenv.Eventually(t, 30*time.Second, func() bool {
		b, err := h.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: ada.GetLeadId()})
		routed = b.GetBrief().GetOwner().GetId()
		return err == nil && b.GetBrief().GetOwner().GetKind() == eventv1.OwnerKind_OWNER_KIND_REP
	}, "ada's lead was not routed to a rep")
	to := map[string]string{"ana": "ben", "ben": "ana"}[routed]
	if to == "" {
		t.Fatalf("ada's lead went to %q, not to pool emea", routed)
	}
	if _, err := h.ReassignLead(ctx, &handoffv1.ReassignLeadRequest{LeadId: ada.GetLeadId(), ToRepId: to, RequestId: "test-reassign",
		Reason: routed + " is away", ReassignedBy: salesOps}); err != nil {
		t.Fatal(err)
	}
	first.stop(t)

	second := p.start(t)
	// Katherine's line comes after Ada's and Barbara's, before her SLA's 20s.
	out = second.waitFor(t, "nobody does. Waiting for the breach", 3*time.Minute)
	if want := "accepted by " + to + ", meeting booked"; !strings.Contains(out, want) {
		t.Errorf("the second run's output lacks %q", want)
	}
	if strings.Contains(out, "arning") {
		t.Errorf("the second run warns")
	}
	second.stop(t)
	if out := second.output(); strings.Contains(out, "Leadflow is running") {
		t.Errorf("Ctrl-C during the demo printed the help")
	}
}

// The demo run again on the same stack and data, as every restart runs
// it, replays its commands and tells a story as true as the first: what
// it says of a lead is the lead's state now, not a replayed answer's.
func TestDemoTwice(t *testing.T) {
	t.Parallel()
	p := newPlace(t)
	s := p.start(t, "-seed=false")
	out := s.waitFor(t, "go run ./services/leadctl token revoke", 2*time.Minute)
	_, signer, _, err := loadKeys(filepath.Join(p.data, "keys.env"))
	if err != nil {
		t.Fatal(err)
	}
	conns := p.dial(t, "intake", "qualification", "handoff", "nurture")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+printedToken(t, out)))
	var stories [2]string
	for i := range stories {
		if i == 1 {
			// A version signed off since the first run re-scores every
			// lead: the second tells that, and waits for no other score.
			v2 := signOffAnotherModel(ctx, t, conns["qualification"], callerAs(signer))
			if !strings.Contains(stories[0], "approved by marketing and sales: active.") {
				t.Fatalf("the first story does not tell the demo model active:\n%s", stories[0])
			}
			defer func() {
				if want := fmt.Sprintf("v%d, signed off since, is active.", v2); !strings.Contains(stories[1], want) {
					t.Errorf("the second story does not say %q", want)
				}
			}()
		}
		var b strings.Builder
		if _, _, err := seedDemo(ctx, conns, callerAs(signer), &b); err != nil {
			t.Fatalf("demo run %d: %v\n%s", i+1, err, b.String())
		}
		stories[i] = b.String()
	}
	first, second := stories[0], stories[1]
	defer func() {
		if t.Failed() {
			t.Logf("the first story:\n%s\nthe second:\n%s", first, second)
		}
	}()
	for i, story := range stories {
		for _, bad := range []string{"not scored yet", "not routed yet", "no escalation yet", "arning"} {
			if strings.Contains(story, bad) {
				t.Errorf("story %d says %q", i+1, bad)
			}
		}
		for _, l := range strings.Split(story, "\n") {
			if l = strings.TrimSpace(l); strings.HasSuffix(l, "owner") || strings.HasSuffix(l, "owners") || strings.HasSuffix(l, ",") {
				t.Errorf("story %d names nobody: %q", i+1, l)
			}
		}
	}
	// What the demo did is told alike: the same reps, the same breach.
	for _, re := range []string{`accepted by \S+`, `rejected by \S+ \(\w+\)`, `.*breached → NEXT_REP; owners dev → \S+`, `MQL again in journey cycle 2`} {
		m := regexp.MustCompile(re)
		if a, b := m.FindString(first), m.FindString(second); a == "" || a != b {
			t.Errorf("the first story tells %q, the second %q", a, b)
		}
	}

	// What the second says of each lead is so now. Katherine's SLA timers
	// may move her meanwhile: her breaches are checked above.
	leads := demoLeadLines(second)
	intake := intakev1.NewIntakeServiceClient(conns["intake"])
	scores := scoreLines(second)
	for _, d := range demoLeads {
		got, ok := scores[d.email]
		if !ok {
			t.Errorf("second story: no score for %s", d.email)
			continue
		}
		if d.email == "katherine@orbit.example" {
			continue
		}
		res, err := intake.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: leads[d.email]})
		if err != nil {
			t.Fatal(err)
		}
		lc := res.GetLead().GetLifecycle()
		if want := [2]string{strings.TrimPrefix(lc.GetStatus().String(), "LEAD_STATUS_"), lc.GetOwner().GetId()}; got != want {
			t.Errorf("second story: %s %s, owner %q; the lead is %s, owner %q", d.email, got[0], got[1], want[0], want[1])
		}
	}
	m := regexp.MustCompile(`MQL again in journey cycle 2; now (\w+)(?:, owner (\S+))?\n`).FindStringSubmatch(second)
	if m == nil {
		t.Fatal("second story: no line for Barbara's second journey")
	}
	r, err := nurturev1.NewNurtureServiceClient(conns["nurture"]).GetLeadNurture(ctx, &nurturev1.GetLeadNurtureRequest{LeadId: leads["barbara@clu.example"]})
	if err != nil {
		t.Fatal(err)
	}
	if status := strings.TrimPrefix(r.GetStatus().String(), "LEAD_STATUS_"); m[1] != status || m[2] != r.GetOwner().GetId() || r.GetCycle() != 2 {
		t.Errorf("second story: Barbara now %s, owner %q; she is %s, owner %q, in cycle %d", m[1], m[2], status, r.GetOwner().GetId(), r.GetCycle())
	}
}

// signOffAnotherModel proposes the demo model with another description,
// has both teams approve it, and waits for its re-score to finish; it
// returns the version.
func signOffAnotherModel(ctx context.Context, t *testing.T, conn *grpc.ClientConn, as asCaller) uint32 {
	t.Helper()
	q := qualificationv1.NewQualificationServiceClient(conn)
	maria := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "maria.marketing-ops", Team: eventv1.Team_TEAM_MARKETING}
	sam := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "sam.sales-lead", Team: eventv1.Team_TEAM_SALES}
	m := scoring.Default()
	m.Description += " Reworded."
	pctx, err := as(ctx, maria, "models:propose")
	if err != nil {
		t.Fatal(err)
	}
	prop, err := q.ProposeModel(pctx, &qualificationv1.ProposeModelRequest{Model: scoring.ToProto(m), ProposedBy: maria, IdempotencyKey: "test-model-2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []*eventv1.Actor{maria, sam} {
		actx, err := as(ctx, who, "models:approve")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.ApproveModel(actx, &qualificationv1.ApproveModelRequest{Version: prop.GetVersion(), Approver: who}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, time.Minute, func() bool {
		p, err := q.GetRescoreProgress(ctx, &qualificationv1.GetRescoreProgressRequest{Version: prop.GetVersion()})
		return err == nil && p.GetState() == qualificationv1.RescoreState_RESCORE_STATE_COMPLETED
	}, "the re-score of v%d did not finish", prop.GetVersion())
	return prop.GetVersion()
}

// A later run finds Katherine moved on: each breach is told with where it
// took her, and a queue's, which escalates nothing, with who keeps her.
func TestSLAStory(t *testing.T) {
	rep := func(id string) *eventv1.Owner { return &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: id} }
	queue := &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_QUEUE, Id: "manager:americas"}
	accept := eventv1.SLAKind_SLA_KIND_ACCEPT
	b := &handoffv1.HandoffBrief{
		Owner: queue,
		Owners: []*handoffv1.Ownership{{Owner: rep("dev"), How: "routed", Ended: "escalated"}, {Owner: rep("carla"), How: "escalated", Ended: "escalated"},
			{Owner: queue, How: "escalated"}},
		Sla: []*handoffv1.SLAEntry{{Sla: accept, Owner: rep("dev")}, {Sla: accept, Breached: true, Owner: rep("dev"), Escalation: eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP},
			{Sla: accept, Owner: rep("carla")}, {Sla: accept, Breached: true, Owner: rep("carla"), Escalation: eventv1.SLAEscalation_SLA_ESCALATION_MANAGER},
			{Sla: accept, Breached: true, Owner: queue, Escalation: eventv1.SLAEscalation_SLA_ESCALATION_NONE}, {Sla: accept, Owner: queue}},
	}
	want := []string{
		"ACCEPT warned, ACCEPT breached → NEXT_REP; owners dev → carla",
		"ACCEPT warned, ACCEPT breached → MANAGER; owners carla → manager:americas",
		"ACCEPT breached, not escalated: it stays with manager:americas",
		"ACCEPT warned; owner manager:americas",
	}
	if got := slaStory(b); !slices.Equal(got, want) {
		t.Errorf("slaStory:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// An operator hands her back to carla, and she breaches again: the
	// hand-back is told where it came.
	at := func(m int) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(2026, 12, 1, 9, m, 0, 0, time.UTC))
	}
	b = &handoffv1.HandoffBrief{
		Owner: queue,
		Owners: []*handoffv1.Ownership{{Owner: rep("dev"), How: "routed", From: at(0)}, {Owner: rep("carla"), How: "escalated", From: at(1)},
			{Owner: queue, How: "escalated", From: at(2)}, {Owner: rep("carla"), How: "reassigned", From: at(3)}, {Owner: queue, How: "escalated", From: at(4)}},
		Sla: []*handoffv1.SLAEntry{{At: at(1), Sla: accept, Breached: true, Owner: rep("dev"), Escalation: eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP},
			{At: at(2), Sla: accept, Breached: true, Owner: rep("carla"), Escalation: eventv1.SLAEscalation_SLA_ESCALATION_MANAGER},
			{At: at(4), Sla: accept, Breached: true, Owner: rep("carla"), Escalation: eventv1.SLAEscalation_SLA_ESCALATION_MANAGER}},
	}
	want = []string{
		"ACCEPT breached → NEXT_REP; owners dev → carla",
		"ACCEPT breached → MANAGER; owners carla → manager:americas",
		"reassigned: owner carla",
		"ACCEPT breached → MANAGER; owners carla → manager:americas",
	}
	if got := slaStory(b); !slices.Equal(got, want) {
		t.Errorf("slaStory after a hand-back:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

var scoreLine = regexp.MustCompile(`(?m)^\s+(\S+@\S+)\s+\d+ / \d+ → (\w+)(?:, owner (\S+))?$`)

// scoreLines are the printed scores: email to status and owner.
func scoreLines(out string) map[string][2]string {
	lines := map[string][2]string{}
	for _, m := range scoreLine.FindAllStringSubmatch(out, -1) {
		lines[m[1]] = [2]string{m[2], m[3]}
	}
	return lines
}

// A busy port stops devstack at once, saying which port and what to do.
func TestBusyPort(t *testing.T) {
	t.Parallel()
	root, bin := buildDevstack(t)
	offset := freeOffset(t)
	busy := func(t *testing.T, addr string) {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lis.Close() })
	}
	run := func(t *testing.T, natsPort int, db ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		defer cancel()
		database := testenv.DatabaseName(t, "leadflow_devstack")
		if len(db) > 0 {
			database = db[0]
		}
		cmd := exec.CommandContext(ctx, bin, "-data", t.TempDir(), "-nats-port", strconv.Itoa(natsPort), "-port-offset", strconv.Itoa(offset),
			"-database", database, "-seed=false")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "LEADFLOW_POSTGRES_ADMIN_URL="+testenv.PostgresAdmin())
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("devstack still runs after 25s on a busy port:\n%s", out)
		}
		if err == nil {
			t.Fatalf("devstack on a busy port exited cleanly:\n%s", out)
		}
		return string(out)
	}
	t.Run("nats", func(t *testing.T) {
		port := testenv.FreePort(t)
		busy(t, fmt.Sprintf("127.0.0.1:%d", port))
		out := run(t, port)
		for _, want := range []string{fmt.Sprintf("NATS port %d is taken", port), "-nats-port", "make run"} {
			if !strings.Contains(out, want) {
				t.Errorf("devstack's output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("api", func(t *testing.T) {
		addr := fmt.Sprintf("127.0.0.1:%d", 7203+offset) // handoff's HTTP/JSON
		busy(t, addr)
		out := run(t, testenv.FreePort(t))
		for _, want := range []string{"handoff's port " + addr + " is taken", "-port-offset", "make run"} {
			if !strings.Contains(out, want) {
				t.Errorf("devstack's output lacks %q:\n%s", want, out)
			}
		}
	})
	// The dashboard's port taken, by a stack running with its own data
	// but the same database: refused before anything starts, that
	// stack's read model (which a fresh -data would drop) left alone.
	t.Run("dashboard", func(t *testing.T) {
		ctx := context.Background()
		db := testenv.DatabaseName(t, "leadflow_devstack_kept")
		admin, err := pgx.Connect(ctx, testenv.PostgresAdmin())
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)")
		})
		dsn, err := databaseURL(testenv.PostgresAdmin(), db)
		if err != nil {
			t.Fatal(err)
		}
		kept := func() bool {
			t.Helper()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var ok bool
			if err := conn.QueryRow(ctx, "SELECT to_regclass('running_stack') IS NOT NULL").Scan(&ok); err != nil {
				t.Fatal(err)
			}
			return ok
		}
		if conn, err := pgx.Connect(ctx, dsn); err != nil {
			t.Fatal(err)
		} else if _, err := conn.Exec(ctx, "CREATE TABLE running_stack (x int)"); err != nil {
			t.Fatal(err)
		} else {
			conn.Close(ctx)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", 7180+offset)
		busy(t, addr)
		out := run(t, testenv.FreePort(t), db)
		if !strings.Contains(out, "projector's port "+addr+" is taken") {
			t.Errorf("devstack's output lacks the dashboard's port:\n%s", out)
		}
		if !kept() {
			t.Errorf("the running stack's read model was dropped by a start refused for a busy port")
		}
	})
}

// The projector's database URL is the admin URL with another database.
func TestDatabaseURL(t *testing.T) {
	for admin, want := range map[string]string{
		"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable":     "postgres://postgres@127.0.0.1:5432/leadflow?sslmode=disable",
		"postgres://app:s%40cret@[::1]:5433/postgres?sslmode=require":     "postgres://app:s%40cret@[::1]:5433/leadflow?sslmode=require",
		"postgres:///postgres?host=/var/run/postgresql&user=postgres":     "postgres:///leadflow?host=/var/run/postgresql&user=postgres",
		"postgresql://postgres@db.example:5432?application_name=devstack": "postgresql://postgres@db.example:5432/leadflow?application_name=devstack",
	} {
		got, err := databaseURL(admin, "leadflow")
		if err != nil || got != want {
			t.Errorf("databaseURL(%q) = %q, %v; want %q", admin, got, err, want)
		}
	}
	if got, err := databaseURL("host=127.0.0.1 port=5433 user=app password=pw", "leadflow"); err != nil || got != "postgres://app:pw@127.0.0.1:5433/leadflow" {
		t.Errorf("a keyword/value DSN: %q, %v", got, err)
	}
	if _, err := databaseURL("mysql://root@db/x", "leadflow"); err == nil {
		t.Error("a MySQL URL: no error")
	}
}

// The admin URL's password reaches the projector (a trust-auth server
// ignores it, but one with passwords would refuse the projector).
func TestReadModelDatabaseKeepsThePassword(t *testing.T) {
	admin, err := url.Parse(testenv.PostgresAdmin())
	if err != nil {
		t.Fatal(err)
	}
	admin.User = url.UserPassword(admin.User.Username(), "s3cret")
	t.Setenv("LEADFLOW_POSTGRES_ADMIN_URL", admin.String())
	name := testenv.DatabaseName(t, "leadflow_devstack")
	dsn, err := readModelDatabase(context.Background(), true, name)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if pw, _ := u.User.Password(); pw != "s3cret" || u.Host != admin.Host || u.Path != "/"+name {
		t.Errorf("read models' URL %s, from admin URL %s", u.Redacted(), admin.Redacted())
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
}

// A service that exits is not waited for, and its clean exit reads well.
func TestWaitHealthyStopsAtExit(t *testing.T) {
	p := &proc{done: make(chan struct{}), err: errors.New("exit status 1")}
	close(p.done)
	// Waiting out its deadline would answer "not healthy", not the exit.
	err := waitHealthy(context.Background(), fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), p)
	if err == nil || !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("waitHealthy on an exited process: %v", err)
	}
	if got := exitError("intake exited", nil).Error(); got != "intake exited" {
		t.Errorf("a clean exit reads %q", got)
	}
}

// checkReportCommand runs the printed campaign report once the data
// holds a second currency, as soon as anyone records a cost or deal in
// one: it must still answer.
func checkReportCommand(t *testing.T, p place, out string, auth []string) {
	t.Helper()
	m := regexp.MustCompile(`'(http://\S+/v1/reports/campaigns\?\S+)'`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("no campaign report printed")
	}
	intake := "http://" + p.at(7201) + "/leadflow.intake.v1.IntakeService/"
	for _, call := range [][2]string{
		{"RegisterCampaign", `{"campaign_id":"test-usd","name":"US trade show","channel":"CHANNEL_EVENT","budget":{"currency":"USD","minor_units":100000}}`},
		{"RecordCampaignCost", `{"campaign_id":"test-usd","cost_id":"test-usd-1","amount":{"currency":"USD","minor_units":50000}}`},
	} {
		if code, res := testenv.HTTPJSON(t, "POST", intake+call[0], call[1], auth...); code != 200 {
			t.Fatalf("%s: %d %v", call[0], code, res)
		}
	}
	report := "http://" + p.at(7205) + "/v1/reports/campaigns?attribution=ATTRIBUTION_MODEL_FIRST_TOUCH&currency=USD"
	testenv.Eventually(t, 30*time.Second, func() bool {
		code, body := testenv.HTTPJSON(t, "GET", report, "", auth...)
		rows, _ := testenv.JSONField(body, "campaigns").([]any)
		for _, r := range rows {
			if testenv.JSONField(r, "campaignId") == "test-usd" && testenv.JSONField(r, "spend", "value") == 50000.0 {
				return code == 200
			}
		}
		return false
	}, "the projector has not the USD cost")
	if code, body := testenv.HTTP(t, "GET", m[1], "", auth...); code != 200 {
		t.Errorf("the printed report %s: %d %.300s", m[1], code, body)
	}
}

// checkNATSCommands runs each printed nats command that ends by itself as
// a user would, without a terminal, as the operator: each must succeed
// without a permissions violation, and the one for a lead show its events.
func checkNATSCommands(t *testing.T, p place, out, lead string) {
	t.Helper()
	password := regexp.MustCompile(`LEADFLOW_NATS_PASSWORD=(\S+)`).FindStringSubmatch(out)
	if password == nil {
		t.Fatal("no NATS password printed")
	}
	leadEvents := false
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "scripts/gotool nats ") || strings.Contains(l, "sub 'lead.>'") { // that one watches until Ctrl-C
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // the first builds natscli
		cmd := exec.CommandContext(ctx, "bash", "-c", l)
		cmd.Dir = p.root
		cmd.Env = append(os.Environ(), "LEADFLOW_NATS_PASSWORD="+password[1])
		b, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s: %v\n%s", l, err, b)
			continue
		}
		if strings.Contains(l, lead) {
			leadEvents = true
			for _, want := range []string{"Lf-Type: LeadCaptured", "Lf-Type: DealWon"} {
				if !strings.Contains(string(b), want) {
					t.Errorf("%s shows no %q:\n%s", l, want, b)
				}
			}
		}
	}
	if !leadEvents {
		t.Errorf("no nats command for lead %s printed", lead)
	}
	logs, err := os.ReadFile(filepath.Join(p.data, "nats.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range natsserver.Violations(string(logs)) {
		if strings.Contains(v, "user:operator") {
			t.Errorf("nats: %s", v)
		}
	}
}

// buildDevstack builds devstack from the checkout: the repository's root
// and the binary.
func buildDevstack(t *testing.T) (string, string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "devstack")
	build := exec.Command("go", "build", "-o", bin, "./services/devstack")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build devstack: %v\n%s", err, out)
	}
	return root, bin
}

func printedToken(t *testing.T, out string) string {
	t.Helper()
	token := regexp.MustCompile(`export LEADFLOW_TOKEN=(\S+)`).FindStringSubmatch(out)
	if token == nil {
		t.Fatal("no token printed")
	}
	return token[1]
}

// checkAsOf checks that the printed `leadctl state` example asks about
// lead at a time it existed: after the test began, not after now.
func checkAsOf(t *testing.T, out, lead string, began time.Time) {
	t.Helper()
	m := regexp.MustCompile(`leadctl state (\S+) --as-of (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("no leadctl state example printed")
	}
	at, err := time.Parse(time.RFC3339, m[2])
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != lead || at.Before(began.Truncate(time.Second)) || at.After(time.Now()) {
		t.Errorf("leadctl state %s --as-of %s: lead %s was captured after %s", m[1], m[2], lead, began.UTC().Format(time.RFC3339))
	}
}

// stack is one devstack process.
type stack struct {
	cmd     *exec.Cmd
	stopped bool
	logs    string
	mu      sync.Mutex
	out     strings.Builder
	seen    chan struct{} // a line was read
	done    chan struct{} // stdout ended
}

// place is where a test's stacks run, again and again: one checkout's
// build, one data directory, ports and read-model database.
type place struct {
	root, bin, data, database string
	natsPort, offset          int
}

func newPlace(t *testing.T) place {
	root, bin := buildDevstack(t)
	return place{root: root, bin: bin, data: t.TempDir(), database: testenv.DatabaseName(t, "leadflow_devstack"),
		natsPort: testenv.FreePort(t), offset: freeOffset(t)}
}

// at is the address of a default port moved by the place's offset.
func (p place) at(port int) string { return fmt.Sprintf("127.0.0.1:%d", port+p.offset) }

// dial connects to the place's services by name, as the demo does.
func (p place) dial(t *testing.T, names ...string) map[string]*grpc.ClientConn {
	t.Helper()
	port := map[string]int{"intake": 7101, "qualification": 7102, "handoff": 7103, "nurture": 7104, "projector": 7105}
	conns := map[string]*grpc.ClientConn{}
	for _, name := range names {
		c, err := grpc.NewClient(p.at(port[name]), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[name] = c
	}
	return conns
}

// start runs devstack at the place with flags, stopped (Ctrl-C) when the
// test ends if the test did not stop it.
func (p place) start(t *testing.T, flags ...string) *stack {
	t.Helper()
	return p.launch(t, false, flags...)
}

// launch starts devstack, as start does; launched, under a shell of its
// own, as `make run` and `go run` start it.
func (p place) launch(t *testing.T, launched bool, flags ...string) *stack {
	t.Helper()
	s := &stack{seen: make(chan struct{}, 1), done: make(chan struct{}), logs: filepath.Join(t.TempDir(), "devstack.log")}
	logs, err := os.Create(s.logs)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-data", p.data, "-nats-port", strconv.Itoa(p.natsPort), "-port-offset", strconv.Itoa(p.offset),
		"-database", p.database}, flags...)
	s.cmd = exec.Command(p.bin, args...)
	if launched {
		// "; true": the shell waits for devstack rather than becoming it.
		s.cmd = exec.Command("sh", append([]string{"-c", `"$0" "$@"; true`, p.bin}, args...)...)
	}
	s.cmd.Dir = p.root
	s.cmd.Env = append(os.Environ(), "LEADFLOW_POSTGRES_ADMIN_URL="+testenv.PostgresAdmin())
	s.cmd.Stderr = logs
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !s.stopped {
			_ = s.cmd.Process.Signal(os.Interrupt)
			_ = s.cmd.Wait()
		}
		logs.Close()
		if t.Failed() {
			b, _ := os.ReadFile(s.logs)
			t.Logf("devstack's stdout:\n%s\nits log (last 4 KB):\n%s", s.output(), b[max(0, len(b)-4096):])
		}
	})
	go func() {
		defer close(s.done)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			s.mu.Lock()
			s.out.WriteString(line)
			s.mu.Unlock()
			select {
			case s.seen <- struct{}{}:
			default:
			}
			if err != nil {
				_, _ = io.Copy(io.Discard, r)
				return
			}
		}
	}()
	return s
}

func (s *stack) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// waitFor returns the output once it holds marker.
func (s *stack) waitFor(t *testing.T, marker string, d time.Duration) string {
	t.Helper()
	timeout := time.After(d)
	for {
		if out := s.output(); strings.Contains(out, marker) {
			return out
		}
		select {
		case <-s.seen:
		case <-s.done:
			if out := s.output(); strings.Contains(out, marker) {
				return out
			}
			t.Fatalf("devstack ended before printing %q", marker)
		case <-timeout:
			t.Fatalf("devstack printed no %q in %s", marker, d)
		}
	}
}

// stop is Ctrl-C: everything stops, and devstack says it went well.
func (s *stack) stop(t *testing.T) {
	t.Helper()
	s.stopped = true
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("devstack after Ctrl-C: %v", err)
		}
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		t.Fatal("devstack did not stop within 60s of Ctrl-C")
	}
}

var demoLine = regexp.MustCompile(`^\s+(\S+@\S+)\s+([0-9a-f-]{36})\s+CAPTURE_OUTCOME_`)

// demoLeadLines are the printed demo leads: email to lead id.
func demoLeadLines(out string) map[string]string {
	leads := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if m := demoLine.FindStringSubmatch(line); m != nil {
			leads[m[1]] = m[2]
		}
	}
	return leads
}

// freeOffset is a port offset that leaves every port devstack serves
// free now.
// offsetsTaken are the offsets this package's parallel tests hold: a
// range checked free is not bound until its stack starts, so another
// test could pick it meanwhile.
var offsetsTaken sync.Map

func freeOffset(t *testing.T) int {
	t.Helper()
	for range 50 {
		// Ports 17101 to 32005: below Linux's ephemeral range (32768 on),
		// where other tests' client sockets come from.
		// Steps of 200: a stack spans ports 7101 to 7205, more than 100.
		n, err := rand.Int(rand.Reader, big.NewInt(75))
		if err != nil {
			t.Fatal(err)
		}
		offset := 10000 + int(n.Int64())*200
		if _, taken := offsetsTaken.LoadOrStore(offset, true); taken {
			continue
		}
		t.Cleanup(func() { offsetsTaken.Delete(offset) })
		free := true
		for _, port := range []int{7101, 7102, 7103, 7104, 7105, 7201, 7202, 7203, 7204, 7205, 7180} {
			lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+offset))
			if err != nil {
				free = false
				break
			}
			lis.Close()
		}
		if free {
			return offset
		}
	}
	t.Fatal("no free port range for devstack")
	return 0
}

// A second stack on the data directory of a running one is refused,
// naming the directory and the first one's pid: two servers on one
// JetStream directory corrupt its files.
func TestASecondStackOnTheSameDataIsRefused(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Fatal("the lock is Linux's (flock); this test runs where make test runs")
	}
	dir := t.TempDir()
	if err := lockData(dir); err != nil {
		t.Fatal(err)
	}
	err := lockData(dir)
	if err == nil || !strings.Contains(err.Error(), "another stack uses "+dir) || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Fatalf("a second lock of %s: %v, want a refusal naming it and pid %d", dir, err, os.Getpid())
	}
}

package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// result is one timed run: operations, wall time and latencies.
type result struct {
	ops      int
	errors   int
	elapsed  time.Duration
	p50, p99 time.Duration
}

func newResult(lat []time.Duration, elapsed time.Duration, errs int) result {
	slices.Sort(lat)
	r := result{ops: len(lat), errors: errs, elapsed: elapsed}
	if len(lat) > 0 {
		r.p50 = lat[len(lat)/2]
		r.p99 = lat[len(lat)*99/100]
	}
	return r
}

func (r result) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }

func protoSize(m proto.Message) int { return proto.Size(m) }

func sampleCaptured() *eventv1.LeadCaptured {
	return &eventv1.LeadCaptured{
		SealedContact: make([]byte, 1+12+16+60),
		Profile:       &eventv1.Profile{Company: "Analytical Engines", Title: "VP Engineering", Seniority: eventv1.Seniority_SENIORITY_VP, Employees: 250, Country: "GB", EmailDomain: "example.com"},
		Attribution:   &eventv1.Attribution{Source: "web-form", CampaignId: "webinar-q4"},
	}
}

func report(w io.Writer, payload int, raw rawFigures, lf intakeFigures) {
	fmt.Fprintf(w, "Raw JetStream, %d-byte messages (the size of a LeadCaptured event), one subject per message:\n", payload)
	for _, c := range concurrencies {
		r := raw.sync[c]
		fmt.Fprintf(w, "  sync publish   c=%-3d %9.0f msg/s   p50 %s   p99 %s\n", c, r.rate(), ms(r.p50), ms(r.p99))
	}
	fmt.Fprintf(w, "  sync publish c=16 with expected last subject seq, to existing subjects spread over the stream:\n")
	fmt.Fprintf(w, "                 c=16  %9.0f msg/s   p50 %s   p99 %s   (what every event-store append pays)\n", raw.occ.rate(), ms(raw.occ.p50), ms(raw.occ.p99))
	fmt.Fprintf(w, "  async publish        %9.0f msg/s\n", raw.async.rate())
	fmt.Fprintf(w, "  atomic batch (%d)   %9.0f msg/s\n", batchSize, raw.batchMsgs.rate())
	fmt.Fprintf(w, "  fast batch (%d)    %9.0f msg/s\n", fastBatchSize, raw.fastMsgs.rate())
	fmt.Fprintf(w, "  import row floor     %9.0f rows/s  (one create-only async publish a row: its event)\n", raw.importRows.rate())
	fmt.Fprintf(w, "  fetch+ack            %9.0f msg/s\n\n", raw.fetchAck.rate())

	fmt.Fprintf(w, "gRPC floor: an empty unary call (health check) to the intake process:\n")
	for _, c := range concurrencies {
		r := lf.grpcFloor[c]
		fmt.Fprintf(w, "  health check   c=%-3d %9.0f calls/s p50 %s   p99 %s\n", c, r.rate(), ms(r.p50), ms(r.p99))
	}
	fmt.Fprintf(w, "\nLeadflow intake over gRPC (separate process, same server):\n")
	fmt.Fprintf(w, "  %-22s %10s %9s %9s   %-36s %s\n", "", "leads/s", "p50", "p99", "throughput ratio", "p99 ratio")
	for _, c := range concurrencies {
		r, s, fl := lf.capture[c], raw.sync[c], lf.captureFloor[c]
		fmt.Fprintf(w, "  CaptureLead c=%-3d      %10.0f %9s %9s   %-36s %s\n", c, r.rate(), ms(r.p50), ms(r.p99),
			ratio(r.rate(), fl.rate())+" of the capture floor (same c)",
			ratio(float64(r.p99), float64(fl.p99))+"x the capture floor's p99")
		fmt.Fprintf(w, "    the capture floor: a gRPC service doing one append of a LeadCaptured's size per call, %.0f calls/s, p99 %s\n",
			fl.rate(), ms(fl.p99))
		fmt.Fprintf(w, "    %s of the gRPC floor at c=%d, %s of async publish, p99 %sx sync publish's at c=%d; a new lead is 1 JetStream write\n",
			ratio(r.rate(), lf.grpcFloor[c].rate()), c, ratio(r.rate(), raw.async.rate()), ratio(float64(r.p99), float64(s.p99)), c)
		for _, e := range []struct {
			what string
			n    int
		}{{"CaptureLead", r.errors}, {"capture floor", fl.errors}, {"gRPC floor", lf.grpcFloor[c].errors}, {"sync publish", s.errors}} {
			if e.n > 0 {
				fmt.Fprintf(w, "    (%s: %d errors; its rate counts only successes)\n", e.what, e.n)
			}
		}
	}
	k := lf.knownCapture
	fmt.Fprintf(w, "  CaptureLead c=16 known  %10.0f %9s %9s   %s of a new person's rate at c=16 (each a LeadResubmitted on its lead)\n",
		k.rate(), ms(k.p50), ms(k.p99), ratio(k.rate(), lf.capture[16].rate()))
	if k.errors > 0 {
		fmt.Fprintf(w, "    (%d errors)\n", k.errors)
	}
	b := lf.bulk
	fmt.Fprintf(w, "  ImportLeads (%d rows)  %8.0f rows/s  %s of atomic batch msg/s; each row stores %.2f messages (events, claims, key blocks)\n",
		b.ops, b.rate(), ratio(b.rate(), raw.batchMsgs.rate()), lf.msgsPerRow)
	fmt.Fprintf(w, "                                        %s of atomic batch msg/s counted in stored messages\n",
		ratio(b.rate()*lf.msgsPerRow, raw.batchMsgs.rate()))
	fmt.Fprintf(w, "                                        %s of async publish, %s of fast batch msg/s (one message a row)\n",
		ratio(b.rate(), raw.async.rate()), ratio(b.rate(), raw.fastMsgs.rate()))
	fmt.Fprintf(w, "                                        %s of the import row floor (%.0f rows/s)\n",
		ratio(b.rate(), raw.importRows.rate()), raw.importRows.rate())
	kb := lf.knownBulk
	fmt.Fprintf(w, "  ImportLeads known (%d rows) %6.0f rows/s  %s of the new rows' rate (the same people again: each a LeadResubmitted)\n\n",
		kb.ops, kb.rate(), ratio(kb.rate(), b.rate()))
}

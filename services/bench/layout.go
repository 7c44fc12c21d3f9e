package main

// The subject-layout benchmark: the same leads and events written to one
// fresh stream per layout, measured with raw JetStream (not the event
// store), so the choice of partition count rests on numbers.
//
//	A0     lead.<uuid>
//	A<P>   lead.<p>.<uuid>   p = FNV-1a 32 of the uuid string mod P, decimal
//
// Every layout keeps the event type in the Lf-Type header and one literal
// subject per lead, so per-lead OCC is ExpectLastSequencePerSubject and a
// lead's history is a direct-get batch on that literal subject. Each lead
// has one event of each of the eight types, written round by round across
// all leads, so one lead's events lie far apart in the stream, as they do
// in production. Consumers: one durable on lead.> against P durables on
// lead.<p>.>, which is what the partition token is for.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

var (
	layoutOn    = flag.Bool("layout", true, "run the subject-layout benchmark before the rest")
	layoutOnly  = flag.Bool("layout-only", false, "run only the subject-layout benchmark")
	layoutLeads = flag.Int("layout-leads", 20_000, "leads in the subject-layout benchmark (8 events each)")

	layoutParts  = flag.String("layout-parts", "8,16,32,64", "partition counts P compared with A0 (comma-separated)")
	layoutAppend = flag.Duration("layout-append", 3*time.Second, "timed OCC append window per layout; the rest is loaded untimed")
	layoutRead   = flag.Duration("layout-read", 1500*time.Millisecond, "each timed history-load run")
	layoutDrain  = flag.Duration("layout-drain", 3*time.Second, "bound on each drain run")
)

const (
	layPayload       = 335 // bytes, about a stored LeadCaptured event
	layWriters       = 16
	layReaders       = 8
	layFetch         = 256
	layMaxAckPending = 512 // every durable here, the single one too
	layLoadBatch     = 256 // as the event store's Load asks
	layConcParts     = 16  // the partition count of test 4
	layConcFetch     = 64  // test 4's batch
	layAsyncChunk    = 2000
	layOpTimeout     = 5 * time.Second
	layFetchWait     = 2 * time.Second
)

// layTypes are the eight event types; event k of a lead has type k.
var layTypes = []string{"LeadCaptured", "ActivityRecorded", "LeadScored", "LeadQualified",
	"LeadAssigned", "LeadAccepted", "ContactAttempted", "LeadRecycled"}

// layStage is the set of types a stage acts on; consumers filter by the
// Lf-Type header after fetch.
var layStage = map[string]bool{"LeadCaptured": true, "ActivityRecorded": true, "LeadRecycled": true}

type layLead struct {
	id   string
	hash uint32 // FNV-1a 32 of id
}

// layLayout is A0 (parts 0) or A<parts>.
type layLayout struct{ parts int }

func (l layLayout) name() string {
	if l.parts == 0 {
		return "A0"
	}
	return "A" + strconv.Itoa(l.parts)
}

func (l layLayout) stream() string { return "LAYOUT_" + l.name() }

func (l layLayout) part(ld layLead) int {
	if l.parts == 0 {
		return 0
	}
	return int(ld.hash % uint32(l.parts))
}

func (l layLayout) subject(ld layLead) string {
	if l.parts == 0 {
		return "lead." + ld.id
	}
	return "lead." + strconv.Itoa(l.part(ld)) + "." + ld.id
}

// layRes is one measured run.
type layRes struct {
	ops, errs int
	firstErr  error
	elapsed   time.Duration
	p99       time.Duration
}

func (r layRes) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ops) / r.elapsed.Seconds()
}

// errLayDone ends one goroutine of layTimed: its fixed work is done.
var errLayDone = errors.New("done")

// layTimed runs c goroutines, goroutine g repeating mk(g) until d has
// passed or it returns errLayDone, and records every latency.
func layTimed(d time.Duration, c int, mk func(g int) func() error) layRes {
	var mu sync.Mutex
	var all []time.Duration
	var r layRes
	stop := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for g := range c {
		op := mk(g)
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1<<12)
			var errs int
			var first error
			for time.Now().Before(stop) {
				t := time.Now()
				err := op()
				if errors.Is(err, errLayDone) {
					break
				}
				if err != nil {
					if first == nil {
						first = err
					}
					errs++
					continue
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			all = append(all, lat...)
			r.errs += errs
			if r.firstErr == nil {
				r.firstErr = first
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	slices.Sort(all)
	r.ops = len(all)
	if len(all) > 0 {
		r.p99 = all[len(all)*99/100]
	}
	return r
}

// layDrainRes is one drain run over one or more durables.
type layDrainRes struct {
	durables, perDurable, batch int
	want, delivered, relevant   int
	elapsed, create             time.Duration
	slowest                     time.Duration // the longest single fetch
	err                         error
}

func (d layDrainRes) rate() float64 { return layPer(d.delivered, d.elapsed) }

// layFigures are one layout's measurements.
type layFigures struct {
	l        layLayout
	append16 layRes
	untimed  int // events loaded without OCC after the append window
	load     map[int]layRes
	single   layDrainRes
	parts    layDrainRes            // P durables, one goroutine each, batch 256
	conc     map[string]layDrainRes // test 4, A16 only
}

type layoutReport struct {
	leads int
	figs  []layFigures
	notes []string
	wall  time.Duration
}

// measureLayout runs the subject-layout benchmark on the server at url.
func measureLayout(ctx context.Context, url string, leads int) (*layoutReport, error) {
	began := time.Now()
	parts, err := layParseParts(*layoutParts)
	if err != nil {
		return nil, err
	}
	nc, js, err := eventstore.Dial(url, "bench-layout")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	ls := make([]layLead, leads)
	for i := range ls {
		id := uuid.Must(uuid.NewV7()).String()
		h := fnv.New32a()
		h.Write([]byte(id))
		ls[i] = layLead{id: id, hash: h.Sum32()}
	}
	rep := &layoutReport{leads: leads}
	data := make([]byte, layPayload)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	// A short untimed warm-up on a small stream, so A0, measured first,
	// does not pay for the process and server warming up.
	if _, _, err := measureOneLayout(ctx, js, layLayout{parts: 8}, ls[:min(len(ls), 2000)], data); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	for _, p := range append([]int{0}, parts...) {
		l := layLayout{parts: p}
		runtime.GC()
		time.Sleep(200 * time.Millisecond) // let the last stream's deletion settle
		f, notes, err := measureOneLayout(ctx, js, l, ls, data)
		rep.notes = append(rep.notes, notes...)
		if err != nil {
			return nil, fmt.Errorf("layout %s: %w", l.name(), err)
		}
		rep.figs = append(rep.figs, f)
	}
	rep.wall = time.Since(began)
	return rep, nil
}

func layParseParts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 {
			return nil, fmt.Errorf("-layout-parts: bad partition count %q", f)
		}
		out = append(out, p)
	}
	return out, nil
}

func measureOneLayout(ctx context.Context, js jetstream.JetStream, l layLayout, ls []layLead, data []byte) (f layFigures, notes []string, err error) {
	f.l = l
	// A fresh stream each; all layouts use lead.>, so each is deleted
	// after its run (deleting a stream is allowed, deleting messages not).
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: l.stream(), Subjects: []string{"lead.>"},
		Storage: jetstream.FileStorage, AllowDirect: true, AllowAtomicPublish: true, DenyDelete: true, DenyPurge: true})
	if err != nil {
		return f, nil, err
	}
	defer func() {
		if derr := js.DeleteStream(context.WithoutCancel(ctx), l.stream()); derr != nil && err == nil {
			err = derr
		}
	}()
	n := len(ls)
	subj := make([]string, n)
	for i, ld := range ls {
		subj[i] = l.subject(ld)
	}
	msg := func(i, k int) *nats.Msg {
		return &nats.Msg{Subject: subj[i], Data: data, Header: nats.Header{"Lf-Type": []string{layTypes[k]}}}
	}

	// 1. Appends with per-lead OCC, 16 writers; writer w owns the leads
	// i with i%16 == w and writes them round by round, for the append
	// window; whatever is left is then loaded untimed, still round by
	// round across all leads.
	last := make([]uint64, n)
	done := make([]int, n) // events of lead i written
	f.append16 = layTimed(*layoutAppend, layWriters, func(w int) func() error {
		k, i := 0, w
		return func() error {
			if i >= n {
				k, i = k+1, w
			}
			if k >= len(layTypes) {
				return errLayDone
			}
			c, cancel := context.WithTimeout(ctx, layOpTimeout)
			defer cancel()
			ack, err := js.PublishMsg(c, msg(i, k), jetstream.WithExpectLastSequencePerSubject(last[i]))
			if err != nil {
				return err
			}
			last[i] = ack.Sequence
			done[i]++
			i += layWriters
			return nil
		}
	})
	if r := f.append16; r.errs > 0 {
		return f, nil, fmt.Errorf("appends failed (%d errors): %v", r.errs, r.firstErr)
	}
	var futs []jetstream.PubAckFuture
	flush := func() error {
		if len(futs) == 0 {
			return nil
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(30 * time.Second):
			return errors.New("untimed load timed out")
		}
		for _, fut := range futs {
			select {
			case <-fut.Ok():
			case err := <-fut.Err():
				return err
			}
		}
		futs = futs[:0]
		return nil
	}
	for k := range layTypes {
		for i := range n {
			if done[i] > k {
				continue
			}
			fut, err := js.PublishMsgAsync(msg(i, k))
			if err != nil {
				return f, nil, err
			}
			futs = append(futs, fut)
			f.untimed++
			if len(futs) >= layAsyncChunk {
				if err := flush(); err != nil {
					return f, nil, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return f, nil, err
	}
	st, err := js.Stream(ctx, l.stream())
	if err != nil {
		return f, nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return f, nil, err
	}
	want := n * len(layTypes)
	if info.State.Msgs != uint64(want) {
		return f, nil, fmt.Errorf("stream holds %d messages, want %d", info.State.Msgs, want)
	}

	// 2. One lead's whole history by direct-get batch on its literal
	// subject, random leads.
	f.load = map[int]layRes{}
	for _, c := range []int{1, layReaders} {
		f.load[c] = layTimed(*layoutRead, c, func(int) func() error {
			return func() error {
				i := rand.IntN(n)
				cctx, cancel := context.WithTimeout(ctx, layOpTimeout)
				defer cancel()
				it, err := jetstreamext.GetBatch(cctx, js, l.stream(), layLoadBatch, jetstreamext.GetBatchSubject(subj[i]))
				if err != nil {
					return err
				}
				got := 0
				for _, err := range it {
					if err != nil {
						return err
					}
					got++
				}
				if got != len(layTypes) {
					return fmt.Errorf("lead %d: %d events, want %d", i, got, len(layTypes))
				}
				return nil
			}
		})
		if r := f.load[c]; r.errs > 0 {
			notes = append(notes, fmt.Sprintf("%s load c=%d: %d errors, first: %v", l.name(), c, r.errs, r.firstErr))
		}
	}

	// 3. Drain: one durable on lead.>, then (partitioned layouts) P
	// durables on lead.<p>.>, one goroutine each.
	f.single = layDrainSet(ctx, js, l.stream(), "all", []string{"lead.>"}, []int{want}, 1, layFetch)
	if l.parts == 0 {
		return f, notes, nil
	}
	perPart := make([]int, l.parts)
	for _, ld := range ls {
		perPart[l.part(ld)] += len(layTypes)
	}
	filters := make([]string, l.parts)
	for p := range filters {
		filters[p] = "lead." + strconv.Itoa(p) + ".>"
	}
	f.parts = layDrainSet(ctx, js, l.stream(), "p", filters, perPart, 1, layFetch)

	// 4. A16 only: fresh durables, batch 64, served by 1 and by 2
	// goroutines each, to separate the batch size from the concurrency.
	if l.parts == layConcParts {
		f.conc = map[string]layDrainRes{
			"1x64": layDrainSet(ctx, js, l.stream(), "c1-", filters, perPart, 1, layConcFetch),
			"2x64": layDrainSet(ctx, js, l.stream(), "c2-", filters, perPart, 2, layConcFetch),
		}
	}
	return f, notes, nil
}

// layDrainSet creates one durable per filter (explicit ack, MaxAckPending
// 512) and drains them all at once, per goroutines on each, fetching
// batches of batch and acking each message, until each has delivered its
// want or -layout-drain has passed. The type is read from the Lf-Type
// header of every message, as a stage filtering by type would.
func layDrainSet(ctx context.Context, js jetstream.JetStream, stream, prefix string, filters []string, want []int, per, batch int) (r layDrainRes) {
	r = layDrainRes{durables: len(filters), perDurable: per, batch: batch}
	for _, w := range want {
		r.want += w
	}
	start := time.Now()
	conss := make([]jetstream.Consumer, len(filters))
	for i, flt := range filters {
		name := prefix
		if len(filters) > 1 {
			name += strconv.Itoa(i)
		}
		var err error
		conss[i], err = js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: name,
			FilterSubject: flt, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: layMaxAckPending})
		if err != nil {
			r.err = err
			return r
		}
	}
	r.create = time.Since(start)

	var delivered, relevant, slowest atomic.Int64
	var first atomic.Pointer[error]
	start = time.Now()
	deadline := start.Add(*layoutDrain)
	var wg sync.WaitGroup
	for i, cons := range conss {
		// remaining is what may still be asked for, so no fetch waits
		// for messages that are not there.
		var remaining atomic.Int64
		remaining.Store(int64(want[i]))
		for range per {
			wg.Go(func() {
				for time.Now().Before(deadline) && first.Load() == nil {
					ask := int64(batch)
					if left := remaining.Add(-ask); left < 0 {
						ask += left // left is what this goroutine over-claimed
						remaining.Add(-left)
						if ask <= 0 {
							return
						}
					}
					t := time.Now()
					got, rel, err := layFetchOnce(cons, int(ask))
					for d := int64(time.Since(t)); ; {
						if s := slowest.Load(); d <= s || slowest.CompareAndSwap(s, d) {
							break
						}
					}
					delivered.Add(int64(got))
					relevant.Add(int64(rel))
					if err == nil && got == 0 {
						err = errors.New("fetch returned nothing before all were delivered")
					}
					if err != nil {
						first.CompareAndSwap(nil, &err)
						return
					}
					remaining.Add(ask - int64(got))
				}
			})
		}
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	r.delivered, r.relevant = int(delivered.Load()), int(relevant.Load())
	r.slowest = time.Duration(slowest.Load())
	if e := first.Load(); e != nil {
		r.err = *e
	}
	return r
}

// layFetchOnce fetches up to n messages and acks each, counting those of
// a stage type as handled.
func layFetchOnce(cons jetstream.Consumer, n int) (got, relevant int, err error) {
	b, err := cons.Fetch(n, jetstream.FetchMaxWait(layFetchWait))
	if err != nil {
		return 0, 0, err
	}
	for m := range b.Messages() {
		if layStage[m.Headers().Get("Lf-Type")] {
			relevant++ // handling is counting: the figure is delivery cost
		}
		if err := m.Ack(); err != nil {
			return got, relevant, err
		}
		got++
	}
	return got, relevant, b.Error()
}

func layPer(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// print writes the layout report as a compact table.
func (r *layoutReport) print(w io.Writer) {
	if len(r.figs) == 0 {
		return
	}
	ev := r.leads * len(layTypes)
	fmt.Fprintf(w, "Subject layout: %d leads x %d events = %d events, %d-byte payload, file storage, AllowDirect, GOMAXPROCS=%d, took %s\n",
		r.leads, len(layTypes), ev, layPayload, runtime.GOMAXPROCS(0), r.wall.Round(100*time.Millisecond))
	fmt.Fprintf(w, "  A0 = lead.<uuid>; A<P> = lead.<p>.<uuid>, p = fnv1a32(uuid)%%P; type in header Lf-Type; OCC ExpectLastSequencePerSubject\n")
	fmt.Fprintf(w, "  durables: explicit ack, MaxAckPending %d, each message acked; drains bounded at %s; cell = value [ratio]\n",
		layMaxAckPending, *layoutDrain)
	const lw = 36
	fmt.Fprintf(w, "  %-*s", lw, "")
	for _, f := range r.figs {
		fmt.Fprintf(w, " %15s", f.l.name())
	}
	fmt.Fprintln(w)
	a0 := r.figs[0]
	row := func(label string, val func(layFigures) float64, base func(layFigures) float64, fmtv func(float64) string) {
		fmt.Fprintf(w, "  %-*s", lw, label)
		for _, f := range r.figs {
			v := val(f)
			if v < 0 {
				fmt.Fprintf(w, " %15s", "-")
				continue
			}
			fmt.Fprintf(w, " %15s", fmtv(v)+" ["+layRatio(v, base(f))+"]")
		}
		fmt.Fprintln(w)
	}
	num := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	ms := func(v float64) string { return fmt.Sprintf("%.2fms", v/float64(time.Millisecond)) }
	vsA0 := func(val func(layFigures) float64) func(layFigures) float64 {
		return func(layFigures) float64 { return val(a0) }
	}
	rate := func(get func(layFigures) layRes) func(layFigures) float64 {
		return func(f layFigures) float64 { return get(f).rate() }
	}
	p99 := func(get func(layFigures) layRes) func(layFigures) float64 {
		return func(f layFigures) float64 { return float64(get(f).p99) }
	}
	app := func(f layFigures) layRes { return f.append16 }
	row("1 append OCC c=16          ev/s", rate(app), vsA0(rate(app)), num)
	row("                            p99", p99(app), vsA0(p99(app)), ms)
	for _, c := range []int{1, layReaders} {
		ld := func(f layFigures) layRes { return f.load[c] }
		row(fmt.Sprintf("2 load history c=%d      loads/s", c), rate(ld), vsA0(rate(ld)), num)
		row("                            p99", p99(ld), vsA0(p99(ld)), ms)
	}
	single := func(f layFigures) float64 { return f.single.rate() }
	row("3 drain 1 durable lead.>  msg/s", single, vsA0(single), num)
	part := func(f layFigures) float64 {
		if f.l.parts == 0 {
			return -1
		}
		return f.parts.rate()
	}
	row("  P durables, 1 gor each  msg/s", part, vsA0(single), num)
	fmt.Fprintf(w, "  %-*s", lw, "    ratio to own single durable")
	for _, f := range r.figs {
		if f.l.parts == 0 {
			fmt.Fprintf(w, " %15s", "-")
			continue
		}
		fmt.Fprintf(w, " %15s", layRatio(f.parts.rate(), f.single.rate()))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  %-*s", lw, "    slowest fetch: single/P dur.")
	for _, f := range r.figs {
		cell := f.single.slowest.Round(time.Millisecond).String()
		if f.l.parts != 0 {
			cell += "/" + f.parts.slowest.Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, " %15s", cell)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  %-*s", lw, "    create P durables")
	for _, f := range r.figs {
		if f.l.parts == 0 {
			fmt.Fprintf(w, " %15s", "-")
			continue
		}
		fmt.Fprintf(w, " %15s", f.parts.create.Round(time.Millisecond).String())
	}
	fmt.Fprintln(w)
	for _, f := range r.figs {
		if f.conc == nil {
			continue
		}
		fmt.Fprintf(w, "4 %s drain, %d durables (total msg/s, ratio to the single durable / to 1 gor x %d):\n", f.l.name(), f.l.parts, layFetch)
		for _, c := range []struct {
			label string
			d     layDrainRes
		}{{fmt.Sprintf("1 gor x fetch %d", layFetch), f.parts}, {fmt.Sprintf("1 gor x fetch %d", layConcFetch), f.conc["1x64"]},
			{fmt.Sprintf("2 gor x fetch %d", layConcFetch), f.conc["2x64"]}} {
			fmt.Fprintf(w, "    %-18s %8.0f msg/s  [%s / %s]  %d/%d in %s, slowest fetch %s\n", c.label, c.d.rate(),
				layRatio(c.d.rate(), f.single.rate()), layRatio(c.d.rate(), f.parts.rate()),
				c.d.delivered, c.d.want, c.d.elapsed.Round(time.Millisecond), c.d.slowest.Round(time.Millisecond))
		}
	}
	// What each drain covered, and anything that went wrong.
	var cut []string
	for _, f := range r.figs {
		for _, d := range []struct {
			what string
			d    layDrainRes
		}{{"single", f.single}, {"partitions", f.parts}, {"1x64", f.conc["1x64"]}, {"2x64", f.conc["2x64"]}} {
			if d.d.durables == 0 {
				continue
			}
			if d.d.err != nil {
				r.notes = append(r.notes, fmt.Sprintf("%s %s drain: %v", f.l.name(), d.what, d.d.err))
			}
			if d.d.delivered < d.d.want {
				cut = append(cut, fmt.Sprintf("%s %s %d/%d", f.l.name(), d.what, d.d.delivered, d.d.want))
			}
		}
		if f.untimed > 0 {
			r.notes = append(r.notes, fmt.Sprintf("%s: %d of %d events past the %s append window loaded untimed without OCC",
				f.l.name(), f.untimed, ev, *layoutAppend))
		}
	}
	if len(cut) > 0 {
		fmt.Fprintf(w, "  drains cut at %s (delivered/all): %s\n", *layoutDrain, strings.Join(cut, ", "))
	}
	for _, n := range r.notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	fmt.Fprintln(w)
}

func layRatio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

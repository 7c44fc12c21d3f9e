package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/services/qualification/registry"
)

// Rescore is the re-scoring of every open lead under a newly active
// version, as of its activation.
type Rescore struct {
	Version    uint32
	Model      scoring.Model
	Activation registry.Activation
	// Scan is the durable name of the read of every lead event.
	Scan string
	// End is the stream sequence the scan has read every lead by; set by
	// StartRescore. Later messages (new events, the re-score's own
	// writes) are not the scan's business.
	End uint64
}

// Past reports whether stream sequence seq is after the scan's end.
func (r Rescore) Past(seq uint64) bool { return r.End > 0 && seq > r.End }

// PendingRescore returns the active version's re-score if it has not
// completed: after an activation, and after a crash part way through.
func (a *App) PendingRescore(ctx context.Context) (Rescore, bool, error) {
	reg, err := a.fresh(ctx)
	if err != nil {
		return Rescore{}, false, err
	}
	v, ok := reg.Get(reg.Active)
	if !ok || v.Activation == nil || v.Rescore.Completed {
		return Rescore{}, false, nil
	}
	return Rescore{Version: reg.Active, Model: v.Model, Activation: *v.Activation, Scan: a.scans.Name(reg.Active)}, true, nil
}

// StartRescore opens the version's scan (every lead event) and records
// ScoringModelRescoreStarted once, with how many events it reads and the stream sequence it has read up to once it has read
// them all. Several replicas may call it; the first record wins. It
// returns job with End set from that record.
func (a *App) StartRescore(ctx context.Context, job Rescore) (Rescore, error) {
	scan, err := a.scans.Open(ctx, job.Version)
	if err != nil {
		return job, err
	}
	// Read after the scan exists: every lead event the scan counted is at
	// or below this sequence. The scan goes on to deliver later
	// events too (this re-score's own writes among them); RescoreLead
	// acknowledges those unread.
	end, err := a.models.LastSeq(ctx)
	if err != nil {
		return job, err
	}
	meta := envelope.Meta{Actor: Actor, CorrelationID: job.Activation.CorrelationID, CausationID: job.Activation.EventID}
	for attempt := range maxRaces {
		reg, err := a.fresh(ctx)
		if err != nil {
			return job, err
		}
		if v, _ := reg.Get(job.Version); v.Rescore.Started {
			job.End = v.Rescore.End
			return job, nil
		}
		// On a fresh scan Unacked and Acked are 0; after a crash between
		// opening and recording they make the total approximate.
		total := scan.Pending + scan.Unacked + scan.Acked
		ev, err := envelope.NewEvent("", &eventv1.ScoringModelRescoreStarted{Version: job.Version, Total: total, EndSequence: end}, meta, a.now())
		if err != nil {
			return job, err
		}
		_, err = a.models.Append(ctx, reg.Seq, ev)
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return job, err
			}
			continue
		}
		if err != nil {
			return job, err
		}
		a.log.InfoContext(ctx, "re-scoring open leads", "version", job.Version, "events", total)
		job.End = end
		return job, nil
	}
	return job, fmt.Errorf("start re-score: %w after %d races", eventstore.ErrConflict, maxRaces)
}

// RescoreLead re-scores one lead, read by the scan at stream sequence
// seq, under job's version, as of the activation, caused by it. The scan
// reads every lead event; a lead's turn is its first one (versionBefore
// 0, the start of its history; the caller passes 0 too for an event
// released from behind a dead letter, which may have been the first), so
// the rest cost no I/O. It skips a
// message after the scan's end (the lead is new), and a lead that is
// finished, that was captured after the activation or scored under the
// version since (the live path scored it already), or that has this
// re-score's LeadScored (a resumed scan does no work twice).
// LeadQualified follows only where the lifecycle allows, so an MQL is
// never qualified twice. It writes nothing once job's version is no longer
// active.
func (a *App) RescoreLead(ctx context.Context, job Rescore, leadID string, seq, versionBefore uint64) error {
	if versionBefore != 0 || job.Past(seq) {
		return nil
	}
	meta := envelope.Meta{CorrelationID: job.Activation.CorrelationID, CausationID: job.Activation.EventID}
	return a.writeOwn(ctx, leadID, "re-score", func() (*lead, []*eventv1.Event, error) {
		// A replica still scanning after a later activation would score,
		// even qualify, under rules no longer in force. As stale as the
		// live scorer's model at most: maxAge.
		reg, err := a.registry(ctx, 0, a.maxAge)
		if err != nil {
			return nil, nil, err
		}
		if reg.Active != job.Version {
			return nil, nil, nil // abandoned: FinishRescore ends the scan
		}
		recs, err := a.leads.Load(ctx, leadID)
		if err != nil {
			return nil, nil, err
		}
		if len(recs) == 0 || recs[0].Seq > job.Activation.Seq {
			return nil, nil, nil
		}
		l := foldLead(leadID, recs, ^uint64(0))
		var events []*eventv1.Event
		switch {
		case l.hasScore && l.lastScore.modelVersion > job.Version:
			// Scored under a later version: this one is superseded,
			// however old this replica's model history.
			return nil, nil, nil
		case l.scored(job.Activation.EventID):
			// Resumed: finish a verdict the crash cut off, if any.
			owed, err := a.owedVerdict(l, job.Activation.EventID, "")
			if err != nil || owed == nil {
				return nil, nil, err
			}
			events = []*eventv1.Event{owed}
		case l.reengaged != "" && l.scoredSince(job.Version, job.Activation.Seq) && l.lastScore.causationID == keyOf(l.reengaged):
			// Resumed after answering the re-engagement (below), or the live
			// scorer answered it under this version: the verdict either cut
			// off is owed all the same, and the re-engagement may not be
			// delivered again.
			owed, err := a.owedVerdict(l, l.reengaged, string(lifecycle.KindReengaged))
			if err != nil || owed == nil {
				return nil, nil, err
			}
			events = []*eventv1.Event{owed}
		case l.scoredSince(job.Version, job.Activation.Seq):
			return nil, nil, nil
		default:
			// A re-score qualifies a nurtured lead only as the score its
			// re-engagement awaits, and then is caused by it: nurture waits
			// for that score, and the live consumer finds it there.
			m, qualify := meta, mayQualify(l.state, "")
			if l.awaitsReengagedScore() || l.awaitsReengagedVerdict() {
				m.CausationID, qualify = l.reengaged, true
			}
			// A lead never scored before gets its first score here, and
			// with it the wait for engagement a first score starts; so does
			// one with triggers since its last score: the live scorer skips
			// what this score covers, and that engagement must still count.
			// Scored as of the activation, or of the lead's last trigger
			// if that came after it: the score rests on that trigger's
			// facts, and an MQL must not be dated before them.
			at := job.Activation.At
			if l.lastTriggerAt.After(at) {
				at = l.lastTriggerAt
			}
			if events, err = a.scoreEvents(l, job.Version, job.Model, at, qualify, !l.triggeredSinceScore(), m); err != nil || len(events) == 0 {
				return nil, nil, err
			}
		}
		return l, events, nil
	})
}

// FinishRescore reports whether job is over, and if it is, records
// ScoringModelRescoreCompleted (once). It is over when the scan has
// acknowledged every lead it read, or when the version is no longer
// active (a later activation re-scores everyone anyway). Once it is over,
// stop reading the scan and CloseRescore.
func (a *App) FinishRescore(ctx context.Context, job Rescore) (bool, error) {
	reg, err := a.fresh(ctx)
	if err != nil {
		return false, err
	}
	v, _ := reg.Get(job.Version)
	if v.Rescore.Completed || reg.Active != job.Version {
		return true, nil
	}
	scan, ok, err := a.scans.Position(ctx, job.Version)
	if err != nil || !ok || !v.Rescore.Started {
		return false, err
	}
	if _, done := progress(v.Rescore, scan); !done || scan.HeldBack > 0 {
		// A lead behind a dead letter is not re-scored yet: the group
		// must live to serve its re-drive (its removal drops them).
		return false, nil
	}
	meta := envelope.Meta{Actor: Actor, CorrelationID: job.Activation.CorrelationID, CausationID: job.Activation.EventID}
	ev, err := envelope.NewEvent("", &eventv1.ScoringModelRescoreCompleted{Version: job.Version, Total: v.Rescore.Total}, meta, a.now())
	if err != nil {
		return false, err
	}
	_, err = a.models.Append(ctx, reg.Seq, ev)
	if errors.Is(err, eventstore.ErrConflict) {
		return false, nil // the model moved (another replica finished?): look again next time
	}
	if err != nil {
		return false, err
	}
	a.log.InfoContext(ctx, "re-scored open leads", "version", job.Version, "events", v.Rescore.Total)
	return true, nil
}

// CloseRescore deletes a finished re-score's scan.
func (a *App) CloseRescore(ctx context.Context, job Rescore) error {
	return a.scans.Close(ctx, job.Version)
}

// CloseFinishedRescores deletes the scans of every version whose re-score
// completed or was abandoned, started or not: a replica killed between
// opening a scan and recording ScoringModelRescoreStarted leaves the scan
// of a version that may be superseded before any replica starts it.
func (a *App) CloseFinishedRescores(ctx context.Context) error {
	reg, err := a.fresh(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for i, v := range reg.Versions {
		if n := uint32(i + 1); v.Activation != nil && (v.Rescore.Completed || n != reg.Active) {
			errs = append(errs, a.scans.Close(ctx, n))
		}
	}
	return errors.Join(errs...)
}

// progress is how many of the leads a re-score reads it has done, and
// whether it has done them all: everything up to the end sequence
// acknowledged (what the scan holds past it is live traffic, which may
// never pause), or nothing pending or unacknowledged. While it runs, done
// is a lower bound: events arriving meanwhile count as pending.
func progress(r registry.Rescore, s Scan) (done uint64, finished bool) {
	if (r.End > 0 && s.AckFloor >= r.End) || (s.Unacked == 0 && s.Pending == 0) {
		return r.Total, true
	}
	if left := s.Pending + s.Unacked; left < r.Total {
		return r.Total - left, false
	}
	return 0, false
}

// RescoreState is how far re-scoring under a version has got.
type RescoreState int

// The re-score states.
const (
	RescorePending      RescoreState = iota + 1 // active, not started yet
	RescoreRunning                              // started
	RescoreCompleted                            // every open lead re-scored
	RescoreAbandoned                            // superseded before it completed
	RescoreNotActivated                         // the version never activated
)

// Progress is a re-score's state and count of lead events read.
type Progress struct {
	Version     uint32
	State       RescoreState
	Done, Total uint64
	HeldBack    int // leads behind a dead letter of the scan's group
}

// RescoreProgress reports on re-scoring under version n, or the active
// version for 0, from the registry and the scan's consumer.
//
// Errors: ErrNotFound (unknown version, or none active).
func (a *App) RescoreProgress(ctx context.Context, n uint32) (Progress, error) {
	reg, err := a.fresh(ctx)
	if err != nil {
		return Progress{}, err
	}
	vv, err := lookup(reg, n)
	if err != nil {
		return Progress{}, err
	}
	p := Progress{Version: vv.Number, Total: vv.Rescore.Total}
	switch r := vv.Rescore; {
	case r.Completed:
		p.State, p.Done = RescoreCompleted, r.Total
	case vv.Activation == nil:
		p.State = RescoreNotActivated
	case vv.State != registry.Active:
		p.State = RescoreAbandoned
	case !r.Started:
		p.State = RescorePending
	default:
		p.State = RescoreRunning
		scan, ok, err := a.scans.Position(ctx, vv.Number)
		if err != nil {
			return Progress{}, err
		}
		if ok {
			p.Done, _ = progress(r, scan)
			p.HeldBack = scan.HeldBack
		}
	}
	return p, nil
}

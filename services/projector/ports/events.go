package ports

import (
	"log/slog"
	"time"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/services/projector/adapters"
)

// Groups are the projector's consumer groups: every replica joins both.
const (
	// LeadGroup reads the lead partitions: one lead's events in order.
	LeadGroup = "projector"
	// ReferenceGroup reads campaigns, routing data and marketing targets,
	// in one partition (they are few): one subject's events in order.
	ReferenceGroup = "projector-ref"
)

// GroupConfig says how the groups consume.
type GroupConfig struct {
	Stream string
	// Workers is how many leads are in flight at once in this process:
	// the most messages one projection batch holds.
	Workers       int
	AckWait       time.Duration
	ShutdownGrace time.Duration
	Logger        *slog.Logger
}

// LeadGroupConfig is the lead partitions' group.
func LeadGroupConfig(c GroupConfig) consume.Config {
	return consume.Config{Stream: c.Stream, Group: LeadGroup, Partitions: eventstore.Partitions, Filter: eventstore.PartitionSubjects,
		Key: eventstore.LeadID, Workers: c.Workers, AckWait: c.AckWait, ShutdownGrace: c.ShutdownGrace, Logger: c.Logger}
}

// ReferenceGroupConfig is the reference data's group: everything the
// read model reads but lead subjects.
func ReferenceGroupConfig(c GroupConfig) consume.Config {
	var filter []string
	for _, s := range adapters.Subjects {
		if s != eventstore.LeadSubjects {
			filter = append(filter, s)
		}
	}
	return consume.Config{Stream: c.Stream, Group: ReferenceGroup, Filter: func(int) []string { return filter },
		Workers: 4, AckWait: c.AckWait, ShutdownGrace: c.ShutdownGrace, Logger: c.Logger}
}

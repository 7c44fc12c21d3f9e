// Package natsauth is the one table of what each Leadflow process may do on
// NATS: a user per role with explicit publish and subscribe allow lists,
// built from the real stream, bucket, subject and consumer names. The
// embedded servers (make run, make chaos, tests) load it through Users, and
// deploy/k8s/nats.yaml holds the same table rendered by Conf (a test keeps
// the two equal).
//
// No service may create a stream or change one's settings: a stream can
// republish to the JetStream API or source another stream, which the
// server checks against nobody's permissions. The provisioner role
// (pkg/provision) makes them all; services only look them up.
//
// NATS matches permissions by whole subject tokens and a consumer's name is
// one token, so a role that reads with ordered consumers (names the client
// library makes up) or runs groups named at run time (qualification's
// re-scores) is allowed that consumer API for every name on the stream;
// docs/operations.md ("NATS users") lists what that leaves open.
package natsauth

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/natsserver"
	"github.com/leadflow/leadflow/pkg/provision"
	"github.com/leadflow/leadflow/pkg/timer"
	"github.com/leadflow/leadflow/pkg/vault"
)

// The roles: one NATS user each. Operator is leadctl's (and the nats CLI's).
const (
	Intake        = "intake"
	Qualification = "qualification"
	Handoff       = "handoff"
	Nurture       = "nurture"
	Projector     = "projector"
	Operator      = "operator"
	Provisioner   = "provisioner"
)

// Names the table is built from that live in services/ (pkg cannot import
// them); each service's tests check that its own constants agree.
const (
	IntakeTimerGroup     = "intake-timers"
	QualificationGroup   = "qualification"
	HandoffGroup         = "handoff"
	HandoffTimerGroup    = "handoff-timers"
	HandoffRoutingGroup  = "handoff-routing"
	NurtureGroup         = "nurture"
	NurtureTimerGroup    = "nurture-timers"
	ProjectorGroup       = "projector"
	ProjectorRefGroup    = "projector-ref"
	ProjectorLiveSubject = "leadflow.projector.live." + eventstore.DefaultStream
)

// Role is one NATS user's permissions: allow lists only, sorted.
type Role struct {
	Name      string
	Publish   []string
	Subscribe []string
}

// Roles is the table, one entry per role, in a fixed order.
func Roles() []Role {
	return []Role{intake(), qualification(), handoff(), nurture(), projector(), operator(), provisioner()}
}

// Lookup returns the role named name.
func Lookup(name string) (Role, bool) {
	for _, r := range Roles() {
		if r.Name == name {
			return r, true
		}
	}
	return Role{}, false
}

// PasswordEnv is the environment variable holding role's password, for
// the servers (nats.conf reads it as $NATS_<ROLE>_PASSWORD) and for the
// launchers that start them.
func PasswordEnv(role string) string {
	return "NATS_" + strings.ToUpper(strings.ReplaceAll(role, "-", "_")) + "_PASSWORD"
}

// Users turns the table into the embedded server's users, with the
// passwords given by role name; a role without a password is left out.
func Users(passwords map[string]string) []natsserver.User {
	var out []natsserver.User
	for _, r := range Roles() {
		if pw := passwords[r.Name]; pw != "" {
			out = append(out, natsserver.User{Name: r.Name, Password: pw, Publish: r.Publish, Subscribe: r.Subscribe})
		}
	}
	return out
}

// PasswordsFromEnv reads every role's password from PasswordEnv; roles
// without one are absent from the map.
func PasswordsFromEnv() map[string]string {
	out := map[string]string{}
	for _, r := range Roles() {
		if pw := os.Getenv(PasswordEnv(r.Name)); pw != "" {
			out[r.Name] = pw
		}
	}
	return out
}

// perms collects one role's allow lists.
type perms struct {
	name     string
	pub, sub []string
}

func newRole(name string) *perms {
	p := &perms{name: name}
	// Replies come to the role's own inbox prefix (eventstore.WithUser sets
	// it), so no role can read another's answers.
	p.sub = append(p.sub, eventstore.InboxPrefix(name)+".>")
	// The account's JetStream usage and limits, which clients ask for
	// when they probe whether JetStream answers.
	p.pub = append(p.pub, api+"INFO")
	return p
}

func (p *perms) publish(s ...string)   { p.pub = append(p.pub, s...) }
func (p *perms) subscribe(s ...string) { p.sub = append(p.sub, s...) }

func (p *perms) role() Role {
	clean := func(s []string) []string {
		slices.Sort(s)
		return slices.Compact(s)
	}
	return Role{Name: p.name, Publish: clean(p.pub), Subscribe: clean(p.sub)}
}

const api = "$JS.API."

// info: look a stream up (its settings and state).
func (p *perms) info(stream string) { p.publish(api + "STREAM.INFO." + stream) }

// read: single and batched direct gets, and the stream API's get, which
// only the stream's leader answers (eventstore reads a replicated
// stream's newest message there).
func (p *perms) read(stream string) {
	p.publish(api+"DIRECT.GET."+stream, api+"DIRECT.GET."+stream+".>", api+"STREAM.MSG.GET."+stream)
}

// scan: ordered consumers, which the client names at random and deletes
// when it resets one, so the consumer token is a wildcard.
func (p *perms) scan(stream string) {
	c := stream + ".*"
	p.publish(api+"CONSUMER.CREATE."+c, api+"CONSUMER.CREATE."+c+".>", api+"CONSUMER.INFO."+c,
		api+"CONSUMER.MSG.NEXT."+c, api+"CONSUMER.DELETE."+c)
}

// durable: create or update (a filtered create carries the filter in the
// subject), look up, pull, unpin, and ack one named consumer.
func (p *perms) durable(stream, name string) {
	c := stream + "." + name
	p.publish(api+"CONSUMER.CREATE."+c, api+"CONSUMER.CREATE."+c+".>", api+"CONSUMER.INFO."+c,
		api+"CONSUMER.MSG.NEXT."+c, api+"CONSUMER.UNPIN."+c, "$JS.ACK."+c+".>")
}

// kv: a bucket opened, its keys written and read, and watched (push
// consumers: ephemeral, deleted on stop, flow controlled).
func (p *perms) kv(bucket string, write bool) {
	s := "KV_" + bucket
	p.info(s)
	p.read(s)
	p.publish(api+"CONSUMER.CREATE."+s+".*.>", api+"CONSUMER.DELETE."+s+".*", "$JS.FC."+s+".>")
	if write {
		p.publish("$KV." + bucket + ".>")
	}
}

// group: a pkg/consume group of partitions durables on stream: its
// durables, its re-drive consumer, and dead letters and records of
// unfinished handlings in DEADLETTER (stored, deleted and purged by
// subject when released), and its key in the members bucket.
// group "*" is any group (names chosen at run time).
func (p *perms) group(stream, group string, partitions int) {
	for n := range max(partitions, 1) {
		d := "*"
		if group != "*" {
			d = consume.Durable(group, n, partitions)
		}
		p.durable(stream, d)
	}
	dl := consume.DefaultDeadLetterStream
	redrive := "*"
	if group != "*" {
		redrive = group + "_redrive"
	}
	p.durable(dl, redrive)
	p.info(dl)
	p.read(dl)
	p.publish(api+"STREAM.MSG.DELETE."+dl, api+"STREAM.PURGE."+dl)
	for _, kind := range []string{"entry", "parked", "request", "started"} {
		p.publish("deadletter." + kind + "." + group + ".>")
	}
	m := consume.DefaultMembersBucket
	p.info("KV_" + m)
	p.read("KV_" + m)
	p.publish("$KV."+m+"."+group+".*", api+"CONSUMER.CREATE.KV_"+m+".*.$KV."+m+"."+group+".*",
		api+"CONSUMER.DELETE.KV_"+m+".*", "$JS.FC.KV_"+m+".>")
}

// leadStream: the lead stream opened and read.
func (p *perms) leadStream() {
	p.info(eventstore.DefaultStream)
	p.read(eventstore.DefaultStream)
}

// vault: the key bucket opened and watched for erasures; write adds
// storing keys and shredding them (message delete).
func (p *perms) vault(write bool) {
	s := "KV_" + vault.DefaultBucket
	p.info(s)
	p.read(s)
	p.scan(s)
	if write {
		p.publish("$KV."+vault.DefaultBucket+".>", api+"STREAM.MSG.DELETE."+s)
	}
}

// revocations: the bucket of revoked API tokens followed (an ordered
// consumer); writer adds storing revocations.
func (p *perms) revocations(writer bool) {
	s := "KV_" + auth.RevokedBucket
	p.info(s)
	p.scan(s)
	if writer {
		p.publish("$KV." + auth.RevokedBucket + ".>")
	}
}

// timers: a pkg/timer stream: schedules published (not fired copies,
// which only the server writes), fired copies consumed by the service's
// timer group of partitions durables and deleted once handled.
func (p *perms) timers(s timer.Stream, group string, partitions int) {
	p.info(s.Name)
	p.read(s.Name)
	p.publish(s.Prefix+".at.>", api+"STREAM.MSG.DELETE."+s.Name)
	p.group(s.Name, group, partitions)
}

func intake() Role {
	p := newRole(Intake)
	p.leadStream()
	p.publish("lead.>", "claim.>", "campaign.>")
	p.vault(true)
	p.timers(provision.IntakeTimers, IntakeTimerGroup, 1)
	p.revocations(false)
	return p.role()
}

// commandRecords are the request-id records a service writes
// (eventstore.CommandKeySubject); the other claims are intake's.
var commandRecords = eventstore.ClaimSubject("command", "*")

func qualification() Role {
	p := newRole(Qualification)
	p.leadStream()
	// Its model subject and its request records only: the scoring model's
	// activation is the co-signed proposal's, not another writer's.
	p.publish("lead.>", eventstore.ModelSubject("scoring"), commandRecords)
	p.group(eventstore.DefaultStream, QualificationGroup, eventstore.Partitions)
	// Re-scores: a group and durable per model version (rescore-v<n>),
	// removed once done.
	p.group(eventstore.DefaultStream, "*", 1)
	p.publish(api+"CONSUMER.DELETE."+eventstore.DefaultStream+".*", api+"CONSUMER.DELETE."+consume.DefaultDeadLetterStream+".*")
	p.revocations(false)
	return p.role()
}

func handoff() Role {
	p := newRole(Handoff)
	p.leadStream()
	// model.*: routing, its targets and a subject per pool, named by the
	// pool (one token, which a wildcard cannot narrow).
	p.publish("lead.>", "model.*", commandRecords)
	p.group(eventstore.DefaultStream, HandoffGroup, eventstore.Partitions)
	p.group(eventstore.DefaultStream, HandoffRoutingGroup, 1)
	p.timers(provision.HandoffTimers, HandoffTimerGroup, eventstore.Partitions)
	p.kv(provision.LoadsBucket, true)
	// The handoff brief opens the lead's sealed contact data: read only.
	p.vault(false)
	p.revocations(false)
	return p.role()
}

func nurture() Role {
	p := newRole(Nurture)
	p.leadStream()
	p.scan(eventstore.DefaultStream) // the lost-lead index reads the whole stream
	p.publish("lead.>", eventstore.ModelSubject("nurture-programs"), commandRecords)
	p.group(eventstore.DefaultStream, NurtureGroup, eventstore.Partitions)
	p.timers(provision.NurtureTimers, NurtureTimerGroup, eventstore.Partitions)
	// The no-lost-lead check reads every group's progress, members and
	// dead letters, and re-drives them.
	m := consume.DefaultMembersBucket
	p.publish(api+"CONSUMER.CREATE.KV_"+m+".*.$KV."+m+".>", "deadletter.request.>")
	p.revocations(false)
	return p.role()
}

func projector() Role {
	p := newRole(Projector)
	p.leadStream()
	p.scan(eventstore.DefaultStream) // rebuilds, what-if replays
	p.group(eventstore.DefaultStream, ProjectorGroup, eventstore.Partitions)
	p.group(eventstore.DefaultStream, ProjectorRefGroup, 1)
	// Dashboards: the replicas' commit notices, and scoring model changes.
	p.publish(ProjectorLiveSubject)
	p.subscribe(ProjectorLiveSubject, eventstore.ModelSubject("scoring"))
	p.revocations(false)
	return p.role()
}

// operator reads everything but the key vault, re-drives dead letters
// and revokes API tokens; it changes no stream and writes no event.
func operator() Role {
	p := newRole(Operator)
	p.publish(api+"STREAM.NAMES", api+"STREAM.LIST", "deadletter.request.>")
	for _, s := range []string{eventstore.DefaultStream, consume.DefaultDeadLetterStream, provision.HandoffTimers.Name,
		provision.NurtureTimers.Name, provision.IntakeTimers.Name, "KV_" + consume.DefaultMembersBucket, "KV_" + provision.LoadsBucket} {
		p.publish(api+"STREAM.INFO."+s, api+"CONSUMER.NAMES."+s, api+"CONSUMER.LIST."+s)
		p.read(s)
		p.scan(s)
		p.publish("$JS.FC." + s + ".>")
	}
	p.subscribe(eventstore.LeadSubjects, eventstore.CampaignSubjects, eventstore.ModelSubjects, eventstore.ClaimSubjects)
	p.revocations(true) // leadctl token revoke
	return p.role()
}

// provisioner makes every stream and bucket and brings them to their
// settings (pkg/provision); it may not delete, purge or read one. It is a
// deploy step's user, not a running service's.
func provisioner() Role {
	p := newRole(Provisioner)
	for _, s := range provision.Streams() {
		p.publish(api+"STREAM.INFO."+s, api+"STREAM.CREATE."+s, api+"STREAM.UPDATE."+s)
	}
	return p.role()
}

// Conf renders the table as a nats.conf authorization block, indented by
// indent; passwords are $NATS_<ROLE>_PASSWORD variables, which the server
// resolves from its environment.
func Conf(indent string) string {
	var b strings.Builder
	w := func(depth int, format string, args ...any) {
		b.WriteString(indent + strings.Repeat("  ", depth) + fmt.Sprintf(format, args...) + "\n")
	}
	list := func(depth int, key string, subjects []string) {
		w(depth, "%s: {allow: [", key)
		for _, s := range subjects {
			w(depth+1, "%q", s)
		}
		w(depth, "]}")
	}
	w(0, "authorization {")
	w(1, "users: [")
	for _, r := range Roles() {
		w(2, "{")
		w(3, "user: %s", r.Name)
		w(3, "password: $%s", PasswordEnv(r.Name))
		w(3, "permissions: {")
		list(4, "publish", r.Publish)
		list(4, "subscribe", r.Subscribe)
		w(3, "}")
		w(2, "}")
	}
	w(1, "]")
	w(0, "}")
	return b.String()
}

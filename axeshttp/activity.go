package axeshttp

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/axes-go/axes"
)

// ActivityMinutes is how many minutes of counts an Activity keeps: the last
// hour.
const ActivityMinutes = 60

// DefaultActivityRecent is how many recent events an Activity keeps unless
// ActivityRecent says otherwise.
const DefaultActivityRecent = 100

// maxActivityRecent bounds ActivityRecent.
const maxActivityRecent = 10000

// Activity is a bounded recent history of a limiter's events, for the
// admin page's chart and its "Recent events" table (see AdminActivity):
// per-minute counts of failed attempts, locks and refusals over the last
// ActivityMinutes minutes, in a fixed ring of one bucket per minute keyed by
// each event's Time (the limiter's clock, so a fake clock makes it
// deterministic), and a fixed ring of the most recent lockouts, refusals and
// resets (DefaultActivityRecent of them, see ActivityRecent and
// ActivityFailures). Its memory does not grow with traffic.
//
// Feed it by chaining its OnEvent into the policy:
//
//	activity, err := axeshttp.NewActivity()
//	...
//	policy.OnEvent = activity.OnEvent
//
// or, with another OnEvent func such as axes.LogEvents,
//
//	logEvent := axes.LogEvents(logger)
//	policy.OnEvent = func(e axes.Event) {
//		activity.OnEvent(e)
//		logEvent(e)
//	}
//
// Identities in the recent events are masked as axes.LogEvents masks them
// (an IP keeps its first half, a username or user agent becomes "sha256:"
// and 12 hex digits) unless ActivityRawIdentity is given.
//
// An Activity is safe for concurrent use. OnEvent holds a mutex for a few
// assignments only (the hashing of masked identities happens before) and,
// with masked identities, allocates nothing.
type Activity struct {
	raw      bool // keep identities as they are
	failures bool // keep failures among the recent events

	mu      sync.Mutex // protects minutes, recent, next and n
	minutes [ActivityMinutes]activityBucket
	recent  []activityRecord // ring; next is the slot written next
	next    int
	n       int // records held, at most len(recent)
}

// activityBucket counts the events of one minute.
type activityBucket struct {
	minute   int64 // Unix minute counted; buckets are reused 60 minutes later
	failures [8]uint32
	lockouts uint32
	refused  uint32
}

// activityRecord is one recent event as kept: fixed-size unless identities
// are raw.
type activityRecord struct {
	time      time.Time
	until     time.Time
	kind      axes.EventKind
	by        axes.Fields
	reason    axes.Reason
	failures  int
	count     int
	ip        netip.Prefix // masked to its first half unless raw
	hasUser   bool
	hasUA     bool
	userSum   [6]byte // masked: the first 6 bytes of the SHA-256
	uaSum     [6]byte
	user, ua  string // raw only
	rawIdents bool
}

// An ActivityOption configures NewActivity.
type ActivityOption func(*activityConfig)

type activityConfig struct {
	recent   int
	raw      bool
	failures bool
	errs     []string
}

// ActivityRecent sets how many recent events an Activity keeps (default
// DefaultActivityRecent, at most 10000; 0 keeps none and only counts).
func ActivityRecent(n int) ActivityOption {
	return func(c *activityConfig) {
		if n < 0 || n > maxActivityRecent {
			c.errs = append(c.errs, fmt.Sprintf("ActivityRecent(%d) must be between 0 and %d", n, maxActivityRecent))
		}
		c.recent = n
	}
}

// ActivityRawIdentity makes an Activity keep usernames, IPs and user agents
// as they are (cut to axes.MaxIdentityBytes) instead of masked. Each kept
// event then allocates its copies.
func ActivityRawIdentity() ActivityOption { return func(c *activityConfig) { c.raw = true } }

// ActivityFailures makes an Activity keep failures among its recent events
// too, one per counted dimension; by default it keeps lockouts, refusals
// and resets, as axes.LogEvents logs them. Failures are counted in the
// per-minute history either way.
func ActivityFailures() ActivityOption { return func(c *activityConfig) { c.failures = true } }

// NewActivity returns an empty Activity. It returns an error prefixed
// "axes:" if an option is invalid.
func NewActivity(opts ...ActivityOption) (*Activity, error) {
	c := activityConfig{recent: DefaultActivityRecent}
	for _, o := range opts {
		o(&c)
	}
	if len(c.errs) > 0 {
		return nil, fmt.Errorf("axes: %s", strings.Join(c.errs, "; "))
	}
	return &Activity{raw: c.raw, failures: c.failures, recent: make([]activityRecord, c.recent)}, nil
}

// unixMinute returns the minute t falls in, counted from the Unix epoch.
func unixMinute(t time.Time) int64 {
	s := t.Unix()
	m := s / 60
	if s%60 < 0 {
		m--
	}
	return m
}

// slot returns the bucket of minute m.
func slot(m int64) int {
	return int((m%ActivityMinutes + ActivityMinutes) % ActivityMinutes)
}

// OnEvent records e: a Policy.OnEvent func, or part of one. Failures,
// lockouts and refusals are counted in the minute of e.Time; lockouts,
// refusals and resets (and failures, with ActivityFailures) are kept among
// the recent events. Successes are ignored. Events more than an hour older
// than the newest counted are not counted.
func (a *Activity) OnEvent(e axes.Event) {
	var keep bool
	switch e.Kind {
	case axes.EventFailure:
		keep = a.failures
	case axes.EventLockout, axes.EventRefused, axes.EventReset:
		keep = true
	default:
		return
	}
	keep = keep && len(a.recent) > 0
	var rec activityRecord
	if keep {
		a.record(&rec, &e)
	}
	m := unixMinute(e.Time)

	a.mu.Lock()
	if e.Kind != axes.EventReset {
		b := &a.minutes[slot(m)]
		if b.minute < m {
			*b = activityBucket{minute: m}
		}
		if b.minute == m {
			switch e.Kind {
			case axes.EventFailure:
				b.failures[e.By&7]++
			case axes.EventLockout:
				b.lockouts++
			case axes.EventRefused:
				b.refused++
			}
		}
	}
	if keep {
		a.recent[a.next] = rec
		a.next = (a.next + 1) % len(a.recent)
		a.n = min(a.n+1, len(a.recent))
	}
	a.mu.Unlock()
}

// record fills r from e, masking its identities unless a is raw.
func (a *Activity) record(r *activityRecord, e *axes.Event) {
	*r = activityRecord{time: e.Time, until: e.Until, kind: e.Kind, by: e.By, reason: e.Reason, failures: e.Failures, count: e.Count}
	k := &e.Key
	r.hasUser, r.hasUA = k.Username != "", k.UserAgent != ""
	if a.raw {
		r.rawIdents = true
		if k.IP.IsValid() {
			ip := k.IP.Unmap().WithZone("")
			r.ip = netip.PrefixFrom(ip, ip.BitLen())
		}
		r.user, r.ua = strings.Clone(cut(k.Username)), strings.Clone(cut(k.UserAgent))
		return
	}
	if k.IP.IsValid() {
		ip := k.IP.Unmap().WithZone("")
		bits := 16
		if ip.Is6() {
			bits = 64
		}
		r.ip, _ = ip.Prefix(bits)
	}
	if r.hasUser {
		r.userSum = maskSum(k.Username)
	}
	if r.hasUA {
		r.uaSum = maskSum(k.UserAgent)
	}
}

// cut shortens s to at most axes.MaxIdentityBytes, at a rune boundary when
// s is UTF-8.
func cut(s string) string {
	if len(s) <= axes.MaxIdentityBytes {
		return s
	}
	n := axes.MaxIdentityBytes
	for n > axes.MaxIdentityBytes-4 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// sumState hashes masked identities without allocating.
type sumState struct {
	h   hash.Hash
	buf [256]byte
	sum [sha256.Size]byte
}

var sumPool = sync.Pool{New: func() any { return &sumState{h: sha256.New()} }}

// maskSum returns the first 6 bytes of the SHA-256 of s.
func maskSum(s string) [6]byte {
	st := sumPool.Get().(*sumState)
	st.h.Reset()
	for len(s) > 0 {
		n := copy(st.buf[:], s)
		st.h.Write(st.buf[:n])
		s = s[n:]
	}
	var out [6]byte
	copy(out[:], st.h.Sum(st.sum[:0]))
	sumPool.Put(st)
	return out
}

// ActivityMinute is the count of one minute of an Activity.
type ActivityMinute struct {
	Start    time.Time // the minute's first instant, in UTC
	Failures int       // failed attempts counted (each counts once in every dimension; this is the most any dimension counted)
	Lockouts int       // locks started (one per dimension locked)
	Refused  int       // attempts refused
}

// Minutes returns the counts of the ActivityMinutes minutes that end with
// the minute of now, oldest first.
func (a *Activity) Minutes(now time.Time) []ActivityMinute {
	out := make([]ActivityMinute, ActivityMinutes)
	last := unixMinute(now)
	first := last - ActivityMinutes + 1
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range out {
		m := first + int64(i)
		out[i].Start = time.Unix(m*60, 0).UTC()
		b := &a.minutes[slot(m)]
		if b.minute != m {
			continue
		}
		for _, f := range b.failures {
			out[i].Failures = max(out[i].Failures, int(f))
		}
		out[i].Lockouts, out[i].Refused = int(b.lockouts), int(b.refused)
	}
	return out
}

// ActivityEvent is one recent event of an Activity. IP, Username and
// UserAgent are masked unless the Activity keeps raw identities; they are
// empty when the event had none.
type ActivityEvent struct {
	Time      time.Time
	Kind      axes.EventKind
	By        axes.Fields // the dimension concerned; 0 for a reset
	Reason    axes.Reason // for a refusal: why
	IP        string      // "192.0.*.*" or "2001:db8:1:2::/64" when masked
	Username  string      // "sha256:" and 12 hex digits when masked
	UserAgent string
	Failures  int       // the dimension's failures after the event
	Until     time.Time // for a lockout or refusal: when the lock ends; zero for no end
	Count     int       // for a reset: entries forgotten
}

// Recent returns the recent events kept, newest first.
func (a *Activity) Recent() []ActivityEvent {
	a.mu.Lock()
	recs := make([]activityRecord, a.n)
	for i := range recs {
		recs[i] = a.recent[(a.next-1-i+2*len(a.recent))%len(a.recent)]
	}
	a.mu.Unlock()
	out := make([]ActivityEvent, len(recs))
	for i := range recs {
		out[i] = recs[i].event()
	}
	return out
}

// Masked reports whether a masks identities.
func (a *Activity) Masked() bool { return !a.raw }

func (r *activityRecord) event() ActivityEvent {
	e := ActivityEvent{Time: r.time, Kind: r.kind, By: r.by, Reason: r.reason, Failures: r.failures, Until: r.until, Count: r.count}
	if r.rawIdents {
		if r.ip.IsValid() {
			e.IP = r.ip.Addr().String()
		}
		e.Username, e.UserAgent = r.user, r.ua
		return e
	}
	if r.ip.IsValid() {
		if r.ip.Addr().Is4() {
			b := r.ip.Addr().As4()
			e.IP = fmt.Sprintf("%d.%d.*.*", b[0], b[1])
		} else {
			e.IP = r.ip.String()
		}
	}
	if r.hasUser {
		e.Username = "sha256:" + hex.EncodeToString(r.userSum[:])
	}
	if r.hasUA {
		e.UserAgent = "sha256:" + hex.EncodeToString(r.uaSum[:])
	}
	return e
}

package axeshttp

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/axes-go/axes"
)

// The page shows every time in one format, in UTC.
const (
	pageTimeFormat = "2006-01-02 15:04:05 UTC"
	isoFormat      = "2006-01-02T15:04:05Z07:00"
	clockFormat    = "15:04 UTC"
)

// pageData is what the page's template shows.
type pageData struct {
	Token     string
	Stats     statsView
	Rows      []rowView
	Locks     int // current locks
	Clients   int // rows, one per locked client
	Shown     int // rows shown
	Flash     string
	Now       string
	NowISO    string
	Activity  *chartView // nil without AdminActivity
	Recent    []eventRow
	Events    int  // recent events held
	MaskNotes bool // the recent events' identities are masked

	HistoryOn     bool // AdminHistory was given
	HistorySearch historySearch
	History       []eventRow
	HistoryError  string
}

// rowView is one locked client on the page: every current lock of the same
// IP (or IPv6 prefix), username and user agent.
type rowView struct {
	IP        string
	Username  string
	UserAgent string
	By        []string // the dimensions locked, such as "ip" and "ip+username"
	Failures  int      // the most failures of any of its locks
	Until     string   // the end of its longest lock; "" for no end
	UntilISO  string
	Left      string // in words: "14 minutes", "indefinite"
	Row       string // the signed reset-row token
}

// clientKey groups the locks of one client. A lock kept without its
// identity (the identity budget was spent) is a client of its own, by its
// digest: such locks are not known to be one client's.
type clientKey struct {
	ip        netip.Prefix
	username  string
	userAgent string
	digest    axes.Digest
}

// groupLockouts groups locks by client, keeping the order of their longest
// lock: soonest end first, no end last.
func groupLockouts(locks []axes.Lockout) [][]axes.Lockout {
	idx := make(map[clientKey]int, len(locks))
	var groups [][]axes.Lockout
	for _, l := range locks {
		k := clientKey{ip: l.IP, username: l.Username, userAgent: l.UserAgent}
		if !l.IP.IsValid() && l.Username == "" && l.UserAgent == "" {
			k.digest = l.Digest
		}
		i, ok := idx[k]
		if !ok {
			i = len(groups)
			idx[k] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], l)
	}
	slices.SortStableFunc(groups, func(a, b []axes.Lockout) int {
		ua, ub := longest(a), longest(b)
		switch {
		case ua.IsZero() != ub.IsZero():
			if ua.IsZero() {
				return 1
			}
			return -1
		}
		return ua.Compare(ub)
	})
	return groups
}

// longest returns the end of the longest of locks, zero for one with no end.
func longest(locks []axes.Lockout) time.Time {
	var end time.Time
	for _, l := range locks {
		if l.Until.IsZero() {
			return time.Time{}
		}
		if l.Until.After(end) {
			end = l.Until
		}
	}
	return end
}

// rows returns the page's rows for the locks, at most limit of them, and how
// many there are in all.
func (a *admin) rows(locks []axes.Lockout, limit int) ([]rowView, int) {
	groups := groupLockouts(locks)
	now := a.now()
	out := make([]rowView, 0, min(len(groups), limit))
	for _, g := range groups[:min(len(groups), limit)] {
		slices.SortFunc(g, func(x, y axes.Lockout) int { return cmp.Compare(x.By, y.By) })
		first := g[0]
		v := rowView{
			Username:  printable(first.Username),
			UserAgent: printable(first.UserAgent),
			Row:       a.encodeRow(g),
		}
		if first.IP.IsValid() {
			v.IP = first.IP.String()
			if first.IP.IsSingleIP() {
				v.IP = first.IP.Addr().String()
			}
		}
		for _, l := range g {
			v.By = append(v.By, l.By.String())
			v.Failures = max(v.Failures, l.Failures)
		}
		if end := longest(g); end.IsZero() {
			v.Left = "indefinite"
		} else {
			v.Until, v.UntilISO = end.UTC().Format(pageTimeFormat), end.UTC().Format(isoFormat)
			v.Left = inWords(end.Sub(now))
		}
		out = append(out, v)
	}
	return out, len(groups)
}

// inWords says how long d is, rounded up: "45 seconds", "14 minutes" (under
// two hours), "5 hours" (under two days), "3 days".
func inWords(d time.Duration) string {
	unit := func(n int64, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.FormatInt(n, 10) + " " + one + "s"
	}
	s := max(ceilSeconds(d), 0)
	switch {
	case s < 60:
		return unit(s, "second")
	case s < 2*3600:
		return unit((s+59)/60, "minute")
	case s < 48*3600:
		return unit((s+3599)/3600, "hour")
	default:
		return unit((s+86399)/86400, "day")
	}
}

// The chart's geometry, in the units of its viewBox: one column per minute,
// bars up to chartBarTop, the locks' lane below the baseline.
const (
	chartColumn = 10
	chartBase   = 100
	chartBarTop = 4
	chartLaneY  = 104
	chartLaneH  = 8
	chartWidth  = ActivityMinutes * chartColumn
	chartHeight = chartLaneY + chartLaneH
)

// chartView is the last hour drawn as inline SVG: for each minute a bar of
// failures with the refusals stacked on it, and a mark in the lane below for
// the minutes that started locks.
type chartView struct {
	ViewBox   string
	Width     int
	Base      int
	Bars      []barView
	Scale     int    // the count at the top of the bars' area
	HalfY     string // the y of the half-scale grid line
	Failures  int    // totals over the hour
	Lockouts  int
	Refused   int
	From, Mid string // axis labels
	To        string
}

type barView struct {
	X, W         string
	FailY, FailH string
	RefY, RefH   string
	Lock         bool
	LaneY, LaneH string
	Title        string
}

func (a *admin) chart(now time.Time) *chartView {
	mins := a.activity.Minutes(now)
	c := &chartView{
		ViewBox: "0 0 " + strconv.Itoa(chartWidth) + " " + strconv.Itoa(chartHeight),
		Width:   chartWidth,
		Base:    chartBase,
		From:    mins[0].Start.Format(clockFormat),
		Mid:     mins[len(mins)/2].Start.Format(clockFormat),
		To:      mins[len(mins)-1].Start.Format(clockFormat),
	}
	peak := 0
	for _, m := range mins {
		peak = max(peak, m.Failures+m.Refused)
		c.Failures += m.Failures
		c.Lockouts += m.Lockouts
		c.Refused += m.Refused
	}
	c.Scale = niceCeil(peak)
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }
	height := func(n int) float64 { return float64(n) * (chartBase - chartBarTop) / float64(c.Scale) }
	c.HalfY = f(chartBase - height(c.Scale)/2)
	for i, m := range mins {
		hf, hr := height(m.Failures), height(m.Refused)
		b := barView{
			X: f(float64(i*chartColumn) + 1), W: f(chartColumn - 2),
			FailY: f(chartBase - hf), FailH: f(hf),
			RefY: f(chartBase - hf - hr), RefH: f(hr),
			Lock:  m.Lockouts > 0,
			LaneY: f(chartLaneY), LaneH: f(chartLaneH),
			Title: m.Start.Format(clockFormat) + ": " + count(m.Failures, "failure") + ", " +
				count(m.Lockouts, "lock") + ", " + strconv.Itoa(m.Refused) + " refused",
		}
		c.Bars = append(c.Bars, b)
	}
	return c
}

// niceCeil returns the smallest of 1, 2, 5, 10, 20, 50… at least n.
func niceCeil(n int) int {
	for p := 1; ; p *= 10 {
		for _, m := range [...]int{1, 2, 5} {
			if m*p >= n {
				return m * p
			}
		}
	}
}

func count(n int, one string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + one + "s"
}

// eventRow is one recent event on the page.
type eventRow struct {
	Time, TimeISO string
	Kind          string
	By            string
	IP            string
	Username      string
	UserAgent     string
	Detail        string
	Masked        bool // the identities are digests: shown in monospace
}

// pageRecent is how many recent events the page shows; the API lists all.
const pageRecent = 25

// recentRows returns the page's rows for the most recent events, and how
// many events the Activity holds.
func (a *admin) recentRows() ([]eventRow, int) {
	evs := a.activity.Recent()
	all := len(evs)
	evs = evs[:min(len(evs), pageRecent)]
	out := make([]eventRow, 0, len(evs))
	for _, e := range evs {
		r := eventRow{
			Time:      e.Time.UTC().Format(pageTimeFormat),
			TimeISO:   e.Time.UTC().Format(isoFormat),
			Kind:      e.Kind.String(),
			IP:        e.IP,
			Username:  printable(e.Username),
			UserAgent: printable(e.UserAgent),
			Masked:    a.activity.Masked(),
		}
		if e.By != 0 {
			r.By = e.By.String()
		}
		switch e.Kind {
		case axes.EventFailure:
			r.Detail = strconv.Itoa(e.Failures) + " failures"
		case axes.EventLockout:
			r.Detail = "indefinite lock"
			if !e.Until.IsZero() {
				r.Detail = "lock for " + inWords(e.Until.Sub(e.Time))
			}
		case axes.EventRefused:
			r.Detail = e.Reason.String()
			if e.Until.IsZero() {
				r.Detail += ", indefinite"
			} else {
				r.Detail += ", " + inWords(e.Until.Sub(e.Time)) + " left"
			}
		case axes.EventReset:
			r.Detail = strconv.Itoa(e.Count) + " entries forgotten"
			if e.Count == 1 {
				r.Detail = "1 entry forgotten"
			}
		}
		out = append(out, r)
	}
	return out, all
}

package axeshttp

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/axes-go/axes"
)

// t0 is the start of a minute; the steps below are at named instants from it.
var t0 = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)

func mustActivity(t testing.TB, opts ...ActivityOption) *Activity {
	t.Helper()
	a, err := NewActivity(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ev(kind axes.EventKind, at time.Time, by axes.Fields) axes.Event {
	return axes.Event{Kind: kind, Time: at, By: by, Key: axes.Key{IP: netip.MustParseAddr("192.0.2.7"), Username: "alice", UserAgent: "curl/8"}}
}

// TestActivityMinutes feeds events at named instants and checks, after
// each step, the minutes the Activity reports: an event of minute n lands
// in minute n, a failed attempt counts once however many dimensions count
// it, minutes older than an hour roll off, and late events for a minute
// whose bucket moved on are dropped.
func TestActivityMinutes(t *testing.T) {
	a := mustActivity(t)
	type count struct{ min, failures, lockouts, refused int }
	steps := []struct {
		events []axes.Event
		now    time.Time
		want   []count // the non-zero minutes, as offsets from t0
	}{
		0: {nil, t0, nil},
		1: {[]axes.Event{ // one failed attempt, counted in two dimensions
			ev(axes.EventFailure, t0.Add(30*time.Second), axes.IP),
			ev(axes.EventFailure, t0.Add(30*time.Second), axes.IP|axes.Username),
		}, t0.Add(59 * time.Second), []count{{0, 1, 0, 0}}},
		2: {[]axes.Event{
			ev(axes.EventFailure, t0.Add(5*time.Minute), axes.IP),
			ev(axes.EventFailure, t0.Add(5*time.Minute), axes.IP|axes.Username),
			ev(axes.EventFailure, t0.Add(5*time.Minute+time.Second), axes.IP),
			ev(axes.EventLockout, t0.Add(5*time.Minute+time.Second), axes.IP),
			ev(axes.EventRefused, t0.Add(59*time.Minute+59*time.Second), axes.IP),
			ev(axes.EventRefused, t0.Add(59*time.Minute+59*time.Second), axes.IP),
			ev(axes.EventSuccess, t0.Add(59*time.Minute), 0),
			ev(axes.EventReset, t0.Add(59*time.Minute), 0),
		}, t0.Add(59 * time.Minute), []count{{0, 1, 0, 0}, {5, 2, 1, 0}, {59, 0, 0, 2}}},
		3: {[]axes.Event{ // minute 61 takes the bucket of minute 1
			ev(axes.EventRefused, t0.Add(61*time.Minute), axes.IP),
		}, t0.Add(61 * time.Minute), []count{{5, 2, 1, 0}, {59, 0, 0, 2}, {61, 0, 0, 1}}},
		4: {[]axes.Event{ // late: minute 1's bucket now holds minute 61
			ev(axes.EventRefused, t0.Add(time.Minute), axes.IP),
		}, t0.Add(61 * time.Minute), []count{{5, 2, 1, 0}, {59, 0, 0, 2}, {61, 0, 0, 1}}},
		5: {nil, t0.Add(65 * time.Minute), []count{{59, 0, 0, 2}, {61, 0, 0, 1}}},
		6: {nil, t0.Add(200 * time.Minute), nil},
	}
	for i, st := range steps {
		for _, e := range st.events {
			a.OnEvent(e)
		}
		mins := a.Minutes(st.now)
		if len(mins) != ActivityMinutes {
			t.Fatalf("step %d: %d minutes", i, len(mins))
		}
		first := st.now.Truncate(time.Minute).Add(-(ActivityMinutes - 1) * time.Minute)
		var got []count
		for j, m := range mins {
			if !m.Start.Equal(first.Add(time.Duration(j) * time.Minute)) {
				t.Fatalf("step %d: minute %d starts at %v", i, j, m.Start)
			}
			if m.Failures|m.Lockouts|m.Refused != 0 {
				got = append(got, count{int(m.Start.Sub(t0) / time.Minute), m.Failures, m.Lockouts, m.Refused})
			}
		}
		if !slicesEqual(got, st.want) {
			t.Errorf("step %d: got %v want %v", i, got, st.want)
		}
	}
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestActivityConcurrent counts exactly under concurrent OnEvent (run with
// -race).
func TestActivityConcurrent(t *testing.T) {
	a := mustActivity(t, ActivityRecent(50), ActivityFailures())
	const workers, per = 8, 600
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				at := t0.Add(time.Duration(i%3) * time.Minute)
				switch i % 3 {
				case 0:
					a.OnEvent(ev(axes.EventFailure, at, axes.Fields(1+w%3)))
				case 1:
					a.OnEvent(ev(axes.EventLockout, at, axes.IP))
				case 2:
					a.OnEvent(ev(axes.EventRefused, at, axes.IP))
				}
				if i%100 == 0 {
					_ = a.Minutes(at)
					_ = a.Recent()
				}
			}
		})
	}
	wg.Wait()
	mins := a.Minutes(t0.Add(2 * time.Minute))
	got := mins[len(mins)-3:]
	// Failures: workers 0..7 use dimensions 1,2,3,1,2,3,1,2: dimension 1
	// and 2 are counted by three workers each, the most of any.
	if got[0].Failures != 3*per/3 || got[1].Lockouts != workers*per/3 || got[2].Refused != workers*per/3 {
		t.Errorf("counts %+v", got)
	}
	if n := len(a.Recent()); n != 50 {
		t.Errorf("%d recent events, want 50", n)
	}
}

// TestActivityMasking masks as axes.LogEvents does: the same strings for
// the same event, IPv4 and IPv6; with ActivityRawIdentity, identities as
// they are, cut to axes.MaxIdentityBytes.
func TestActivityMasking(t *testing.T) {
	var buf bytes.Buffer
	logEvent := axes.LogEvents(slog.New(slog.NewJSONHandler(&buf, nil)))
	a := mustActivity(t)
	raw := mustActivity(t, ActivityRawIdentity())
	long := strings.Repeat("é", 300)
	keys := []axes.Key{
		{IP: netip.MustParseAddr("192.0.2.7"), Username: "alice", UserAgent: "curl/8"},
		{IP: netip.MustParseAddr("2001:db8:1:2:3:4:5:6"), Username: long},
		{IP: netip.MustParseAddr("::ffff:198.51.100.9")},
	}
	for i, k := range keys {
		e := axes.Event{Kind: axes.EventLockout, Time: t0, Key: k, By: axes.IP, Failures: 3, Limit: 3, Until: t0.Add(time.Hour)}
		buf.Reset()
		logEvent(e)
		a.OnEvent(e)
		raw.OnEvent(e)
		var logged struct {
			IP        string `json:"ip"`
			Username  string `json:"username"`
			UserAgent string `json:"user_agent"`
		}
		if err := json.Unmarshal(buf.Bytes(), &logged); err != nil {
			t.Fatal(err)
		}
		got := a.Recent()[0]
		if got.IP != logged.IP || got.Username != logged.Username || got.UserAgent != logged.UserAgent {
			t.Errorf("key %d: masked %q %q %q, LogEvents %q %q %q", i, got.IP, got.Username, got.UserAgent, logged.IP, logged.Username, logged.UserAgent)
		}
		r := raw.Recent()[0]
		if r.IP != k.IP.Unmap().String() || r.UserAgent != k.UserAgent || len(r.Username) > axes.MaxIdentityBytes || !strings.HasPrefix(k.Username, r.Username) {
			t.Errorf("key %d: raw %+v", i, r)
		}
	}
	got := a.Recent()
	sum := sha256.Sum256([]byte("alice"))
	if got[2].IP != "192.0.*.*" || got[2].Username != "sha256:"+hex.EncodeToString(sum[:6]) || got[1].IP != "2001:db8:1:2::/64" || got[0].IP != "198.51.*.*" {
		t.Errorf("masked: %+v", got)
	}
	if !a.Masked() || raw.Masked() {
		t.Error("Masked")
	}
	if strings.Contains(raw.Recent()[1].Username, "\uFFFD") || len(raw.Recent()[1].Username) != axes.MaxIdentityBytes {
		t.Errorf("raw username cut mid-rune or not at the bound: %d bytes", len(raw.Recent()[1].Username))
	}
}

// TestActivityRecent keeps the newest events, newest first, of the kinds
// it keeps.
func TestActivityRecent(t *testing.T) {
	a := mustActivity(t, ActivityRecent(3))
	for i := range 5 {
		e := ev(axes.EventLockout, t0.Add(time.Duration(i)*time.Second), axes.IP)
		e.Failures = i
		a.OnEvent(e)
		a.OnEvent(ev(axes.EventFailure, t0, axes.IP)) // not kept by default
		a.OnEvent(ev(axes.EventSuccess, t0, 0))       // never kept
	}
	got := a.Recent()
	if len(got) != 3 || got[0].Failures != 4 || got[1].Failures != 3 || got[2].Failures != 2 || got[0].Kind != axes.EventLockout {
		t.Errorf("recent %+v", got)
	}
	f := mustActivity(t, ActivityFailures(), ActivityRecent(2))
	f.OnEvent(ev(axes.EventFailure, t0, axes.IP))
	f.OnEvent(ev(axes.EventReset, t0, 0))
	if got := f.Recent(); len(got) != 2 || got[0].Kind != axes.EventReset || got[1].Kind != axes.EventFailure {
		t.Errorf("with failures: %+v", got)
	}
	none := mustActivity(t, ActivityRecent(0))
	none.OnEvent(ev(axes.EventLockout, t0, axes.IP))
	if len(none.Recent()) != 0 || none.Minutes(t0)[ActivityMinutes-1].Lockouts != 1 {
		t.Error("ActivityRecent(0)")
	}
	for _, n := range []int{-1, maxActivityRecent + 1} {
		if _, err := NewActivity(ActivityRecent(n)); err == nil || !strings.HasPrefix(err.Error(), "axes: ") {
			t.Errorf("ActivityRecent(%d): %v", n, err)
		}
	}
}

var sinkActivity *Activity

// TestActivityOnEventAllocs: with masked identities, recording an event
// allocates nothing, whatever the length of its identities.
func TestActivityOnEventAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	a := mustActivity(t)
	sinkActivity = a
	e := axes.Event{Kind: axes.EventLockout, Time: t0, By: axes.IP, Key: axes.Key{
		IP: netip.MustParseAddr("2001:db8::1"), Username: strings.Repeat("u", 1000), UserAgent: strings.Repeat("Mozilla ", 40)}}
	f := ev(axes.EventFailure, t0, axes.IP)
	if n := testing.AllocsPerRun(200, func() { sinkActivity.OnEvent(e); sinkActivity.OnEvent(f) }); n != 0 {
		t.Errorf("OnEvent allocates %.1f times", n)
	}
}

// activityFixture is a limiter whose events feed an Activity, chained with
// another OnEvent func, and its admin.
func activityFixture(t *testing.T) (*adminFixture, *Activity, *int) {
	t.Helper()
	clk := newClock()
	act := mustActivity(t)
	other := 0
	var mu sync.Mutex
	lim := newLimiter(t, axes.Policy{
		Limit:     2,
		LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username},
		OnEvent: func(e axes.Event) {
			act.OnEvent(e)
			mu.Lock()
			other++
			mu.Unlock()
		},
	}, clk)
	k := axes.Key{IP: netip.MustParseAddr("192.0.2.1"), Username: "alice", UserAgent: "hydra"}
	lim.Fail(k)
	clk.Advance(time.Minute)
	lim.Fail(k) // locks by ip and by ip+username
	lim.Fail(k) // refused
	h := mustAdmin(t, lim, AdminToken(testAdminToken), AdminClock(clk.Now), AdminActivity(act))
	return &adminFixture{clk: clk, lim: lim, h: mountAdmin(h)}, act, &other
}

func TestAdminAPIActivity(t *testing.T) {
	f, _, other := activityFixture(t)
	if *other == 0 {
		t.Fatal("the chained OnEvent was not called")
	}
	w := f.do("GET", "/axes/api/activity", "")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	var resp struct {
		Masked  bool `json:"masked"`
		Minutes []struct {
			Start    time.Time `json:"start"`
			Failures int       `json:"failures"`
			Lockouts int       `json:"lockouts"`
			Refused  int       `json:"refused"`
		} `json:"minutes"`
		Recent []map[string]any `json:"recent"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	last, prev := resp.Minutes[len(resp.Minutes)-1], resp.Minutes[len(resp.Minutes)-2]
	if !resp.Masked || len(resp.Minutes) != 60 || !last.Start.Equal(time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC)) ||
		prev.Failures != 1 || last.Failures != 1 || last.Lockouts != 2 || last.Refused != 1 {
		t.Errorf("%s", w.Body)
	}
	// Newest first: the refusal, then the two locks.
	if len(resp.Recent) != 3 || resp.Recent[0]["kind"] != "refused" || resp.Recent[0]["reason"] != "lockout" ||
		resp.Recent[1]["kind"] != "lockout" || resp.Recent[1]["ip"] != "192.0.*.*" ||
		!strings.HasPrefix(resp.Recent[1]["username"].(string), "sha256:") || resp.Recent[1]["until"] != "2026-01-02T03:20:05Z" {
		t.Errorf("recent: %v", resp.Recent)
	}
	if strings.Contains(w.Body.String(), "alice") || strings.Contains(w.Body.String(), "hydra") {
		t.Error("the API shows a raw identity")
	}

	// Without an Activity: 404, saying how to get one.
	plain := newAdminFixture(t)
	if w := plain.do("GET", "/axes/api/activity", ""); w.Code != 404 || !strings.Contains(w.Body.String(), "AdminActivity") {
		t.Errorf("no activity: %d %s", w.Code, w.Body)
	}
	if _, err := NewAdmin(f.lim, AdminToken(testAdminToken), AdminActivity(nil)); err == nil || !strings.HasPrefix(err.Error(), "axes: ") {
		t.Errorf("AdminActivity(nil): %v", err)
	}
}

// TestAdminPageActivity draws the chart and lists the recent events,
// masked, in the page's one time format.
func TestAdminPageActivity(t *testing.T) {
	f, _, _ := activityFixture(t)
	body := f.do("GET", "/axes/", "").Body.String()
	for _, want := range []string{
		`<svg viewBox="0 0 600 112" preserveAspectRatio="none"`,
		"03:05 UTC: 1 failure, 2 locks, 1 refused",
		`<b>2</b> failed attempts`, `<b>2</b> locks started`, `<b>1</b> refused`,
		`id="recent"`, "192.0.*.*", "sha256:", "lock for 15 minutes", "lockout, 15 minutes left",
		`<time datetime="2026-01-02T03:05:05Z">2026-01-02 03:05:05 UTC</time>`,
		"Identities are masked",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if n := strings.Count(body, "<g><title>"); n != ActivityMinutes {
		t.Errorf("%d minutes drawn", n)
	}
	// alice appears in the lockouts (the admin's own view) but not among the
	// masked events.
	recent := body[strings.Index(body, `id="recent"`):]
	if strings.Contains(recent, "alice") || strings.Contains(recent, "hydra") {
		t.Error("a recent event shows a raw identity")
	}
	for _, banned := range []string{"<script", " style=", "id=\"no-activity\""} {
		if strings.Contains(body, banned) {
			t.Errorf("page holds %q", banned)
		}
	}
}

// TestAdminCSSFitsPhone: no declaration in the stylesheet fixes a width
// wider than a 390 px phone (the browser test checks the rendered page).
func TestAdminCSSFitsPhone(t *testing.T) {
	decl := regexp.MustCompile(`[{;]\s*(width|min-width|flex-basis|flex|grid-template-columns)\s*:([^;}]*)`)
	length := regexp.MustCompile(`([0-9.]+)(px|rem|em)\b`)
	found := 0
	for _, m := range decl.FindAllStringSubmatch(string(adminCSS), -1) {
		for _, l := range length.FindAllStringSubmatch(m[2], -1) {
			found++
			v, _ := strconv.ParseFloat(l[1], 64)
			if l[2] != "px" {
				v *= 16
			}
			if v > 390 {
				t.Errorf("%s:%s fixes %.0f px", m[1], m[2], v)
			}
		}
	}
	if found == 0 {
		t.Fatal("no widths found: the pattern is broken")
	}
	if !strings.Contains(string(adminCSS), "@media (max-width:48rem)") || !strings.Contains(string(adminCSS), "table.stack thead{display:none}") {
		t.Error("the stylesheet lacks its narrow layouts")
	}
	// The page itself sets no widths.
	f := newAdminFixture(t)
	if body := f.do("GET", "/axes/", "").Body.String(); regexp.MustCompile(`<(table|div|td|th|img|input)[^>]* width=`).MatchString(body) {
		t.Error("the page sets an element's width")
	}
}

// mountAdmin mounts h under /axes/ as the docs show.
func mountAdmin(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/axes/", http.StripPrefix("/axes", h))
	return mux
}

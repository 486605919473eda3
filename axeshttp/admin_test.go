package axeshttp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/axes-go/axes"
)

// testAdminToken is the token of the fixture's admin.
const testAdminToken = "dG9rZW4tZm9yLXRoZS1heGVzLWFkbWluLXRlc3Rz"

// adminFixture is a limiter with three lockouts and its admin, mounted
// under /axes/ as the docs show. By default the admin takes
// testAdminToken, and do sends it.
type adminFixture struct {
	clk *fakeClock
	lim *axes.Limiter
	h   http.Handler
}

func newAdminFixture(t *testing.T, opts ...AdminOption) *adminFixture {
	t.Helper()
	clk := newClock()
	lim := newLimiter(t, axes.Policy{
		Limit:     2,
		LockoutBy: []axes.Fields{axes.IP, axes.Username, axes.IP | axes.UserAgent},
	}, clk)
	fail := func(ip, user, ua string) {
		lim.Fail(axes.Key{IP: netip.MustParseAddr(ip), Username: user, UserAgent: ua})
		clk.Advance(time.Second)
	}
	// A lock by IP, varying the other fields.
	fail("192.0.2.1", "u1", "a")
	fail("192.0.2.1", "u2", "b")
	// A lock by username, from two IPs.
	fail("198.51.100.1", "<script>alert(1)</script>", "c")
	fail("198.51.100.2", "<script>alert(1)</script>", "d")
	// One IPv6 /64 with one user agent: locked by IP and by IP+user agent.
	fail("2001:db8::1", "v1", "curl/8\x00\xff")
	fail("2001:db8::2", "v2", "curl/8\x00\xff")
	if len(opts) == 0 {
		opts = []AdminOption{AdminToken(testAdminToken)}
	}
	opts = append([]AdminOption{AdminClock(clk.Now)}, opts...)
	admin, err := NewAdmin(lim, opts...)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/axes/", http.StripPrefix("/axes", admin))
	return &adminFixture{clk: clk, lim: lim, h: mux}
}

// do sends a request with the fixture's token; header pairs override the
// request's headers, an empty value removing one.
func (f *adminFixture) do(method, target, body string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.RemoteAddr = "127.0.0.1:50000"
	r.Host = "127.0.0.1:8080"
	r.Header.Set("Authorization", "Bearer "+testAdminToken)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			r.Header.Del(header[i])
		} else {
			r.Header.Set(header[i], header[i+1])
		}
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

// token fetches the page and returns its CSRF token.
func (f *adminFixture) token(t *testing.T) string {
	t.Helper()
	w := f.do("GET", "/axes/", "")
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(w.Body.String())
	if m == nil {
		t.Fatalf("no token in page:\n%s", w.Body)
	}
	return m[1]
}

func (f *adminFixture) postForm(vals url.Values, header ...string) *httptest.ResponseRecorder {
	header = append([]string{"Content-Type", "application/x-www-form-urlencoded", "Origin", "http://127.0.0.1:8080", "Sec-Fetch-Site", "same-origin"}, header...)
	return f.do("POST", "/axes/reset", vals.Encode(), header...)
}

type lockoutsResponse struct {
	Count    int `json:"count"`
	Lockouts []struct {
		IP         string     `json:"ip"`
		Username   string     `json:"username"`
		UserAgent  string     `json:"user_agent"`
		By         string     `json:"by"`
		Failures   int        `json:"failures"`
		Until      *time.Time `json:"until"`
		RetryAfter *int64     `json:"retry_after"`
	} `json:"lockouts"`
}

func (f *adminFixture) lockouts(t *testing.T, query string) lockoutsResponse {
	t.Helper()
	w := f.do("GET", "/axes/api/lockouts"+query, "")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("api/lockouts: %d %v %s", w.Code, w.Header(), w.Body)
	}
	var resp lockoutsResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestAdminAPILockouts(t *testing.T) {
	f := newAdminFixture(t)
	resp := f.lockouts(t, "")
	if resp.Count != 4 || len(resp.Lockouts) != 4 {
		t.Fatalf("%+v", resp)
	}
	// Soonest end first: the order of the failures.
	l := resp.Lockouts
	if l[0].IP != "192.0.2.1" || l[0].By != "ip" || l[0].Failures != 2 || *l[0].RetryAfter != 15*60-5 ||
		!l[0].Until.Equal(time.Date(2026, 1, 2, 3, 19, 6, 0, time.UTC)) {
		t.Errorf("first: %+v", l[0])
	}
	if l[1].Username != "<script>alert(1)</script>" || l[1].By != "username" || *l[1].RetryAfter != 15*60-3 {
		t.Errorf("second: %+v", l[1])
	}
	var byIP, byIPUA bool
	for _, x := range l[2:] {
		switch {
		case x.IP == "2001:db8::/64" && x.By == "ip":
			byIP = true
		case x.IP == "2001:db8::/64" && x.By == (axes.IP|axes.UserAgent).String() && x.UserAgent == "curl/8\x00\uFFFD": // JSON cannot carry invalid UTF-8
			byIPUA = true
		}
	}
	if !byIP || !byIPUA {
		t.Errorf("IPv6 lockouts: %+v", l[2:])
	}
	if resp := f.lockouts(t, "?limit=1"); resp.Count != 4 || len(resp.Lockouts) != 1 {
		t.Errorf("limit=1: %+v", resp)
	}
	for _, q := range []string{"?limit=0", "?limit=-1", "?limit=x"} {
		if w := f.do("GET", "/axes/api/lockouts"+q, ""); w.Code != 400 || !strings.Contains(w.Body.String(), `"error"`) {
			t.Errorf("%s: %d %s", q, w.Code, w.Body)
		}
	}
}

func TestAdminAPIStats(t *testing.T) {
	f := newAdminFixture(t)
	w := f.do("GET", "/axes/api/stats", "")
	var s map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if s["failures"] != 6.0 || s["lockouts"] != 4.0 || s["entries"] == 0.0 || s["degraded"] != false {
		t.Errorf("%s", w.Body)
	}
	for _, k := range []string{"refused", "successes", "resets", "evicted_expired", "evicted_pressure", "overflows", "store_errors", "degraded", "degradations"} {
		if _, ok := s[k]; !ok {
			t.Errorf("stats lack %s", k)
		}
	}
}

func TestAdminAPIReset(t *testing.T) {
	f := newAdminFixture(t)
	json := "application/json"
	tests := []struct {
		body, ctype string
		status      int
		left        int
	}{
		{`{"ip":"192.0.2.1"}`, json, 200, 3},
		{`{"username":"<SCRIPT>alert(1)</script>"}`, json, 200, 2}, // normalised as counted
		{`{"ip":"192.0.2.1","all":true}`, json, 400, 2},
		{`{"username":"x","all":true}`, json, 400, 2},
		{`{}`, json, 400, 2},
		{`{"ip":"not-an-ip"}`, json, 400, 2},
		{`{"ip":"192.0.2.1","extra":1}`, json, 400, 2},
		{`{"all":true}`, "text/plain", 415, 2},
		{`ip=192.0.2.1`, "application/x-www-form-urlencoded", 415, 2},
		{`{"username":"` + strings.Repeat("x", 20000) + `"}`, json, 400, 2}, // over the body bound
		{`{"all":true}`, json + "; charset=utf-8", 200, 0},
	}
	for i, tt := range tests {
		w := f.do("POST", "/axes/api/reset", tt.body, "Content-Type", tt.ctype)
		if w.Code != tt.status {
			t.Errorf("case %d: %d %s, want %d", i, w.Code, w.Body, tt.status)
		}
		if n := f.lockouts(t, "").Count; n != tt.left {
			t.Errorf("case %d: %d lockouts left, want %d", i, n, tt.left)
		}
	}
	if w := f.do("GET", "/axes/api/reset", ""); w.Code != 405 {
		t.Errorf("GET api/reset: %d", w.Code)
	}
	if w := f.do("POST", "/axes/api/reset", `{"all":true}`, "Content-Type", json, "Sec-Fetch-Site", "cross-site"); w.Code != 403 {
		t.Errorf("cross-site JSON reset: %d", w.Code)
	}
}

func TestAdminPage(t *testing.T) {
	f := newAdminFixture(t)
	w := f.do("GET", "/axes/", "")
	body := w.Body.String()
	if w.Code != 200 || w.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Cache-Control", "Referrer-Policy"} {
		if w.Header().Get(h) == "" {
			t.Errorf("page lacks %s", h)
		}
	}
	for _, want := range []string{
		"192.0.2.1", "2001:db8::/64",
		"&lt;script&gt;alert(1)&lt;/script&gt;", // escaped
		"curl/8\uFFFD\uFFFD",                    // control and invalid bytes made visible
		`<span class="left">15 minutes</span>`, `<b>4</b><span>current lockouts</span>`, `<b>3</b><span>locked clients</span>`,
		`by <span class="tag">ip</span>, <span class="tag">ip&#43;user_agent</span>`,
		`<time datetime="2026-01-02T03:19:06Z">2026-01-02 03:19:06 UTC</time>`,
		`id="no-activity"`, "AdminActivity(activity)",
		`href="assets/admin.css"`, `action="reset"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("page holds an unescaped username")
	}
	if n := strings.Count(body, `value="row"`); n != 3 {
		t.Errorf("%d reset buttons, want 3 (one per client)", n)
	}
	for _, banned := range []string{"<script", " style=", "Recent events"} {
		if strings.Contains(body, banned) {
			t.Errorf("page holds %q", banned)
		}
	}

	css := f.do("GET", "/axes/assets/admin.css", "")
	if css.Code != 200 || !strings.HasPrefix(css.Header().Get("Content-Type"), "text/css") || css.Body.Len() < 100 {
		t.Errorf("css: %d %v", css.Code, css.Header())
	}
	if w := f.do("GET", "/axes/nope", ""); w.Code != 404 {
		t.Errorf("unknown path: %d", w.Code)
	}

	// Bounded rows.
	few := newAdminFixture(t, AdminToken(testAdminToken), AdminMaxRows(1))
	body = few.do("GET", "/axes/", "").Body.String()
	if n := strings.Count(body, `value="row"`); n != 1 || !strings.Contains(body, "Showing the first 1 of 3 locked clients") {
		t.Errorf("AdminMaxRows(1): %d rows", n)
	}

	empty := newAdminFixture(t)
	empty.lim.ResetAll()
	if body := empty.do("GET", "/axes/?reset=3", "").Body.String(); !strings.Contains(body, "No client is locked out.") || !strings.Contains(body, "Reset 3 entries.") {
		t.Errorf("empty page:\n%s", body)
	}
	if body := empty.do("GET", "/axes/?reset=<b>", "").Body.String(); strings.Contains(body, "flash") {
		t.Error("a non-numeric reset parameter was shown")
	}
}

func TestAdminMountedWithTrailingSlashStripped(t *testing.T) {
	f := newAdminFixture(t)
	mux := http.NewServeMux()
	mux.Handle("/axes/", http.StripPrefix("/axes/", mustAdmin(t, f.lim, AdminToken(testAdminToken))))
	for _, p := range []string{"/axes/", "/axes/api/stats"} {
		r := httptest.NewRequest("GET", p, nil)
		r.RemoteAddr, r.Host = "127.0.0.1:1", "localhost"
		r.Header.Set("Authorization", "Bearer "+testAdminToken)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Errorf("%s: %d", p, w.Code)
		}
	}
}

func TestAdminFormReset(t *testing.T) {
	f := newAdminFixture(t)
	tok := f.token(t)
	rowRe := regexp.MustCompile(`name="row" value="([^"]+)"`)
	rows := rowRe.FindAllStringSubmatch(f.do("GET", "/axes/", "").Body.String(), -1)
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}

	// Refused: no token, a forged token, cross-origin, wrong content type.
	refused := []struct {
		vals   url.Values
		header []string
		want   int
	}{
		{url.Values{"action": {"all"}}, nil, 403},
		{url.Values{"action": {"all"}, "csrf": {"4102444800.AAAA"}}, nil, 403},
		{url.Values{"action": {"all"}, "csrf": {tok + "x"}}, nil, 403},
		{url.Values{"action": {"all"}, "csrf": {strings.Repeat("9", 200)}}, nil, 403},
		{url.Values{"action": {"all"}, "csrf": {tok}}, []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{url.Values{"action": {"all"}, "csrf": {tok}}, []string{"Sec-Fetch-Site", "", "Origin", "http://evil.example"}, 403},
		{url.Values{"action": {"all"}, "csrf": {tok}}, []string{"Content-Type", "text/plain"}, 415},
		{url.Values{"action": {"nope"}, "csrf": {tok}}, nil, 400},
		{url.Values{"action": {"row"}, "row": {"garbage"}, "csrf": {tok}}, nil, 400},
		{url.Values{"action": {"row"}, "row": {"9.AA.AA.AA"}, "csrf": {tok}}, nil, 400},
		{url.Values{"action": {"row"}, "row": {"1.!!.AA.AA"}, "csrf": {tok}}, nil, 400},
		{url.Values{"action": {"row"}, "row": {"1.bm90LWFuLWlw.."}, "csrf": {tok}}, nil, 400},
		{url.Values{"action": {"ip"}, "ip": {"bogus"}, "csrf": {tok}}, nil, 400},
	}
	for i, tt := range refused {
		w := f.postForm(tt.vals, tt.header...)
		if w.Code != tt.want {
			t.Errorf("case %d: %d %s, want %d", i, w.Code, w.Body, tt.want)
		}
	}
	if n := f.lockouts(t, "").Count; n != 4 {
		t.Fatalf("refused requests reset something: %d left", n)
	}

	// Each row's button lifts the locks of its client: the IPv6 prefix's
	// row holds its lock by IP and its lock by IP and user agent.
	wantLeft := []int{3, 2, 0}
	wantReset := []string{"1", "1", "2"}
	for i, row := range rows {
		w := f.postForm(url.Values{"action": {"row"}, "row": {row[1]}, "csrf": {tok}})
		if w.Code != 303 || w.Header().Get("Location") != "./?reset="+wantReset[i] {
			t.Fatalf("row %d: %d %v %s", i, w.Code, w.Header(), w.Body)
		}
		if n := f.lockouts(t, "").Count; n != wantLeft[i] {
			t.Errorf("after row %d: %d lockouts, want %d", i, n, wantLeft[i])
		}
	}

	// The other forms.
	f2 := newAdminFixture(t)
	tok = f2.token(t)
	for _, vals := range []url.Values{
		{"action": {"ip"}, "ip": {"192.0.2.1"}},
		{"action": {"username"}, "username": {"<script>alert(1)</script>"}},
		{"action": {"all"}},
	} {
		vals.Set("csrf", tok)
		if w := f2.postForm(vals); w.Code != 303 {
			t.Errorf("%v: %d %s", vals, w.Code, w.Body)
		}
	}
	if n := f2.lockouts(t, "").Count; n != 0 {
		t.Errorf("%d lockouts left", n)
	}

	// Tokens expire.
	f2.clk.Advance(csrfLifetime + time.Second)
	if w := f2.postForm(url.Values{"action": {"all"}, "csrf": {tok}}); w.Code != 403 {
		t.Errorf("expired token: %d", w.Code)
	}
	// And belong to one admin.
	other := newAdminFixture(t)
	if w := other.postForm(url.Values{"action": {"all"}, "csrf": {f2.token(t)}}); w.Code != 403 {
		t.Errorf("another admin's token: %d", w.Code)
	}
}

func mustAdmin(t *testing.T, lim *axes.Limiter, opts ...AdminOption) http.Handler {
	t.Helper()
	h, err := NewAdmin(lim, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{"bob": "bob", "b\x00b": "b\uFFFDb", "\xff": "\uFFFD", "é\u0085": "é\uFFFD", "日本": "日本"} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}

package axeshttp

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/axes-go/axes"
)

func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// TestAdminThroughReverseProxy puts the admin on a loopback server behind a
// reverse proxy on the same host, configured as the standard library's
// documentation shows: the proxy sets Host to the upstream's loopback
// address and adds no forwarding header, so every client of the proxy looks
// local. A client of the proxy without the token must see nothing and reset
// nothing; with the token it is served.
func TestAdminThroughReverseProxy(t *testing.T) {
	f := newAdminFixture(t)
	upstream := httptest.NewServer(f.h)
	defer upstream.Close()
	target, err := url.Parse(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
	})
	defer proxy.Close()

	send := func(method, path, ctype, body string, header ...string) *http.Response {
		t.Helper()
		r, err := http.NewRequest(method, proxy.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		resp, err := proxy.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(string(b)))
		return resp
	}

	attacks := []struct {
		method, path, ctype, body string
	}{
		{"GET", "/axes/", "", ""},
		{"GET", "/axes/api/lockouts", "", ""},
		{"GET", "/axes/api/stats", "", ""},
		{"POST", "/axes/api/reset", "application/json", `{"all": true}`},
		{"POST", "/axes/reset", "application/x-www-form-urlencoded", "action=all"},
	}
	for _, auth := range []string{"", "Bearer wrong-token-wrong-token-wrong", basicAuth("admin", "nope"), "Bearer " + testAdminToken[:len(testAdminToken)-1]} {
		for _, a := range attacks {
			resp := send(a.method, a.path, a.ctype, a.body, "Authorization", auth)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with %q through the proxy: %d %s, want 401", a.method, a.path, auth, resp.StatusCode, body)
			}
			if len(resp.Header.Values("WWW-Authenticate")) != 2 {
				t.Errorf("%s %s: challenges %q", a.method, a.path, resp.Header.Values("WWW-Authenticate"))
			}
			if strings.Contains(string(body), "192.0.2.1") || strings.Contains(string(body), "alert(1)") {
				t.Errorf("%s %s: the refusal shows a lockout: %s", a.method, a.path, body)
			}
		}
	}
	if n := len(f.lim.Lockouts()); n != 4 {
		t.Fatalf("refused requests reset locks: %d left, want 4", n)
	}

	// With the token, through the same proxy.
	resp := send("GET", "/axes/api/lockouts", "", "", "Authorization", "Bearer "+testAdminToken)
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || !strings.Contains(string(body), `"count":4`) {
		t.Errorf("authorised list: %d %s", resp.StatusCode, body)
	}
	resp = send("GET", "/axes/", "", "", "Authorization", basicAuth("anyone", testAdminToken))
	if resp.StatusCode != 200 {
		t.Errorf("authorised page: %d", resp.StatusCode)
	}
	resp = send("POST", "/axes/api/reset", "application/json", `{"all": true}`, "Authorization", "Bearer "+testAdminToken)
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || !strings.Contains(string(body), `"reset":`) {
		t.Errorf("authorised reset: %d %s", resp.StatusCode, body)
	}
	if n := len(f.lim.Lockouts()); n != 0 {
		t.Errorf("after the authorised reset: %d lockouts left", n)
	}
}

// TestAdminToken checks which credentials open the admin on every route.
func TestAdminToken(t *testing.T) {
	f := newAdminFixture(t)
	routes := []struct{ method, path, ctype, body string }{
		{"GET", "/axes/", "", ""},
		{"HEAD", "/axes/", "", ""},
		{"GET", "/axes/assets/admin.css", "", ""},
		{"GET", "/axes/api/lockouts", "", ""},
		{"GET", "/axes/api/stats", "", ""},
		{"GET", "/axes/nope", "", ""},
		{"POST", "/axes/api/reset", "application/json", `{"all":true}`},
		{"POST", "/axes/reset", "application/x-www-form-urlencoded", "action=all"},
	}
	tok := testAdminToken
	refused := []string{
		"",
		"Bearer",
		"Bearer ",
		"Bearer " + tok[:len(tok)-1],
		"Bearer " + tok + "x",
		"Bearer " + tok[1:],
		"Bearer " + strings.ToUpper(tok),
		"Basic " + tok,
		basicAuth(tok, ""),
		basicAuth("admin", tok+" "),
		"Token " + tok,
		"Bearer " + strings.Repeat("A", 8000),
	}
	for _, auth := range refused {
		for _, rt := range routes {
			w := f.do(rt.method, rt.path, rt.body, "Authorization", auth, "Content-Type", rt.ctype)
			ch := w.Header().Values("WWW-Authenticate")
			if w.Code != 401 || len(ch) != 2 || !strings.HasPrefix(ch[0], `Basic realm="axes admin"`) || ch[1] != `Bearer realm="axes admin"` {
				t.Errorf("%s %s with %.40q: %d %q, want 401 with challenges", rt.method, rt.path, auth, w.Code, ch)
			}
			if w.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("%s %s: the refusal may be cached", rt.method, rt.path)
			}
		}
	}
	if n := len(f.lim.Lockouts()); n != 4 {
		t.Fatalf("refused requests reset locks: %d left", n)
	}
	if w := f.do("GET", "/axes/api/stats", "", "Authorization", ""); !strings.Contains(w.Body.String(), `"error"`) || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("API refusal is not JSON: %v %s", w.Header(), w.Body)
	}

	for _, auth := range []string{
		"Bearer " + tok,
		"bearer " + tok,
		"Bearer  " + tok,
		basicAuth("admin", tok),
		basicAuth("", tok),
	} {
		// From anywhere, whatever the Host: the token is what counts.
		r := httptest.NewRequest("GET", "/axes/api/stats", nil)
		r.RemoteAddr, r.Host = "198.51.100.9:40000", "admin.example.com"
		r.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Errorf("%q: %d %s", auth, w.Code, w.Body)
		}
	}
}

// TestAdminTokenMatches checks the comparison itself: only the exact token
// matches, and the admin keeps a digest of it, of fixed length, which is
// what makes the comparison take the same time for any candidate.
func TestAdminTokenMatches(t *testing.T) {
	lim := newLimiter(t, axes.Policy{}, newClock())
	a := mustAdmin(t, lim, AdminToken(testAdminToken)).(*admin)
	if a.tokenSum == nil || len(a.tokenSum) != 32 {
		t.Fatal("the admin keeps no SHA-256 digest of its token")
	}
	tok := testAdminToken
	for cand, want := range map[string]bool{
		tok: true, "": false, tok[:1]: false, tok[:len(tok)-1]: false, tok + tok: false,
		tok[:len(tok)-1] + "x": false, "x" + tok[1:]: false, strings.Repeat("\x00", len(tok)): false,
	} {
		if got := a.tokenMatches(cand); got != want {
			t.Errorf("tokenMatches(%q) = %v, want %v", cand, got, want)
		}
	}
}

// TestAdminAuthorize checks the application's own authorisation, alone and
// with a token.
func TestAdminAuthorize(t *testing.T) {
	staff := func(r *http.Request) bool {
		c, err := r.Cookie("session")
		return err == nil && c.Value == "staff"
	}
	f := newAdminFixture(t, AdminAuthorize(staff))
	for _, tt := range []struct {
		header []string
		want   int
	}{
		{[]string{"Authorization", ""}, 403},
		{[]string{"Authorization", "", "Cookie", "session=guest"}, 403},
		{nil, 403}, // a token is no use without AdminToken
		{[]string{"Authorization", "", "Cookie", "session=staff"}, 200},
	} {
		for _, path := range []string{"/axes/", "/axes/api/lockouts", "/axes/api/stats", "/axes/assets/admin.css"} {
			w := f.do("GET", path, "", tt.header...)
			if w.Code != tt.want || (w.Code == 403 && w.Header().Get("WWW-Authenticate") != "") {
				t.Errorf("%s %v: %d %v, want %d", path, tt.header, w.Code, w.Header(), tt.want)
			}
		}
		w := f.do("POST", "/axes/api/reset", `{"all":true}`, append([]string{"Content-Type", "application/json"}, tt.header...)...)
		if w.Code != tt.want {
			t.Errorf("reset %v: %d, want %d", tt.header, w.Code, tt.want)
		}
		if left := len(f.lim.Lockouts()); (tt.want == 403) != (left == 4) {
			t.Errorf("reset %v: %d lockouts left", tt.header, left)
		}
	}

	// Both: either opens the admin.
	both := newAdminFixture(t, AdminAuthorize(staff), AdminToken(testAdminToken))
	for _, tt := range []struct {
		header []string
		want   int
	}{
		{nil, 200},
		{[]string{"Authorization", "", "Cookie", "session=staff"}, 200},
		{[]string{"Authorization", "Bearer nope", "Cookie", "session=staff"}, 200},
		{[]string{"Authorization", "", "Cookie", "session=guest"}, 401},
	} {
		if w := both.do("GET", "/axes/api/stats", "", tt.header...); w.Code != tt.want {
			t.Errorf("both, %v: %d, want %d", tt.header, w.Code, tt.want)
		}
	}
}

// TestAdminCrossSiteWithCredentials is the CSRF attack on an admin whose
// credential the browser sends by itself (Basic authentication, a session
// cookie): a page on another site posts a form to the admin, and the
// browser attaches the credential. Nothing may be reset.
func TestAdminCrossSiteWithCredentials(t *testing.T) {
	staff := func(r *http.Request) bool {
		c, err := r.Cookie("session")
		return err == nil && c.Value == "staff"
	}
	for name, cred := range map[string][]string{
		"basic":  {"Authorization", basicAuth("admin", testAdminToken)},
		"cookie": {"Authorization", "", "Cookie", "session=staff"},
	} {
		f := newAdminFixture(t, AdminToken(testAdminToken), AdminAuthorize(staff))
		tok := f.token(t)
		attacks := []struct {
			path, ctype, body string
			header            []string
		}{
			// A form in a modern browser.
			{"/axes/reset", "application/x-www-form-urlencoded", "action=all&csrf=" + url.QueryEscape(tok), []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}},
			// An older browser: Origin only.
			{"/axes/reset", "application/x-www-form-urlencoded", "action=all&csrf=" + url.QueryEscape(tok), []string{"Origin", "https://evil.example"}},
			// No Origin at all (a privacy extension): the form token is missing.
			{"/axes/reset", "application/x-www-form-urlencoded", "action=all", nil},
			// The JSON API, in the content types a form can send.
			{"/axes/api/reset", "text/plain", `{"all":true}`, []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}},
			{"/axes/api/reset", "text/plain", `{"all":true}`, nil},
			{"/axes/api/reset", "application/x-www-form-urlencoded", `{"all":true}`, []string{"Origin", "https://evil.example"}},
		}
		for i, a := range attacks {
			h := append(append([]string{"Content-Type", a.ctype}, cred...), a.header...)
			w := f.do("POST", a.path, a.body, h...)
			if w.Code < 400 {
				t.Errorf("%s, attack %d: %d %s", name, i, w.Code, w.Body)
			}
		}
		if n := len(f.lim.Lockouts()); n != 4 {
			t.Errorf("%s: cross-site posts reset locks: %d left", name, n)
		}
		// The page's own form, same origin, works.
		w := f.postForm(url.Values{"action": {"all"}, "csrf": {tok}}, cred...)
		if w.Code != 303 || len(f.lim.Lockouts()) != 0 {
			t.Errorf("%s: same-origin form: %d %s", name, w.Code, w.Body)
		}
	}
}

func TestNewAdminErrors(t *testing.T) {
	lim := newLimiter(t, axes.Policy{}, newClock())
	ok := AdminToken(testAdminToken)
	for name, opts := range map[string][]AdminOption{
		"no authorisation":  nil,
		"only a clock":      {AdminClock(newClock().Now)},
		"empty token":       {AdminToken("")},
		"short token":       {AdminToken("0123456789abcde")},
		"token with space":  {AdminToken("0123456789 abcdef0123")},
		"token with colon":  {AdminToken("0123456789:abcdef0123")},
		"token of padding":  {AdminToken(strings.Repeat("=", 20))},
		"non-ASCII token":   {AdminToken("0123456789abcdef\u00e9")},
		"nil authorize":     {AdminAuthorize(nil)},
		"nil authorize+tok": {ok, AdminAuthorize(nil)},
		"bad token+auth":    {AdminToken("short"), AdminAuthorize(func(*http.Request) bool { return true })},
		"nil clock":         {ok, AdminClock(nil)},
		"zero max rows":     {ok, AdminMaxRows(0)},
		"negative rows":     {ok, AdminMaxRows(-5)},
	} {
		h, err := NewAdmin(lim, opts...)
		if err == nil || h != nil || !strings.HasPrefix(err.Error(), "axes: ") {
			t.Errorf("%s: %v, %v; want an axes: error", name, h, err)
		}
		if err != nil && strings.Contains(err.Error(), testAdminToken) {
			t.Errorf("%s: the error shows the token", name)
		}
	}
	if _, err := NewAdmin(nil, ok); err == nil || !strings.HasPrefix(err.Error(), "axes: ") {
		t.Errorf("nil limiter: %v", err)
	}
	for _, tok := range []string{"0123456789abcdef", "AAAAAAAAAAAAAAAAAAAA==", "a-b.c_d~e+f/g0123456"} {
		if _, err := NewAdmin(lim, AdminToken(tok)); err != nil {
			t.Errorf("AdminToken(%q): %v", tok, err)
		}
	}
	if _, err := NewAdmin(lim, AdminAuthorize(func(*http.Request) bool { return false })); err != nil {
		t.Errorf("AdminAuthorize: %v", err)
	}
}

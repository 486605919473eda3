package axeshttp

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/axes-go/axes"
)

var (
	deviceKey1 = bytes.Repeat([]byte{1}, 32)
	deviceKey2 = bytes.Repeat([]byte{2}, 32)
	deviceKey3 = bytes.Repeat([]byte{3}, 32)
)

func newDevices(t testing.TB, clk *fakeClock, keys ...[]byte) *Devices {
	t.Helper()
	d, err := NewDevices(DeviceConfig{Keys: keys, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// issued returns the device cookie d issues for username.
func issued(t testing.TB, d *Devices, username string) *http.Cookie {
	t.Helper()
	w := httptest.NewRecorder()
	if d.Issue(w, username) == "" {
		t.Fatalf("Issue(%q) issued nothing", username)
	}
	cs := w.Result().Cookies()
	if len(cs) != 1 {
		t.Fatalf("Issue set %d cookies", len(cs))
	}
	return cs[0]
}

func withCookie(r *http.Request, c *http.Cookie) *http.Request {
	r.AddCookie(c)
	return r
}

// TestDevicesDuringAttack: end to end over HTTPS, a user logs in and gets
// a device cookie; bots then lock the username; the user, with the cookie,
// still logs in, while the bots, and the user's browser trying another
// locked username, are refused.
func TestDevicesDuringAttack(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Limit: 3, LockoutBy: []axes.Fields{axes.Username, axes.IP | axes.Username}, Cooloff: axes.Fixed(time.Hour)}, clk)
	dev := newDevices(t, clk, deviceKey1)
	srv := httptest.NewTLSServer(newMiddleware(t, lim, WithDevices(dev))(login))
	defer srv.Close()

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Transport: srv.Client().Transport, Jar: jar}
	bots := &http.Client{Transport: srv.Client().Transport} // no jar: no cookie
	post := func(c *http.Client, user, pass string) *http.Response {
		t.Helper()
		resp, err := c.PostForm(srv.URL+"/login", creds(user, pass))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	resp := post(browser, "Alice", "right")
	if resp.StatusCode != 200 {
		t.Fatalf("first login: %d", resp.StatusCode)
	}
	var c *http.Cookie
	for _, rc := range resp.Cookies() {
		if rc.Name == DefaultDeviceCookie {
			c = rc
		}
	}
	if c == nil {
		t.Fatalf("no device cookie after a successful login: %q", resp.Header.Values("Set-Cookie"))
	}
	raw := resp.Header.Get("Set-Cookie")
	for _, attr := range []string{"Path=/", "Max-Age=15552000", "HttpOnly", "Secure", "SameSite=Lax"} {
		if !strings.Contains(raw, "; "+attr) {
			t.Errorf("Set-Cookie %q lacks %s", raw, attr)
		}
	}
	if strings.Contains(raw, "Domain=") {
		t.Errorf("Set-Cookie %q has a Domain", raw)
	}

	for _, user := range []string{"alice", "bob"} {
		for i := range 3 {
			if got := post(bots, user, "guess").StatusCode; got != 401 {
				t.Fatalf("bot guess %d on %s: %d", i, user, got)
			}
		}
		if got := post(bots, user, "right").StatusCode; got != 429 {
			t.Fatalf("%s is not locked after the bots' guesses: %d", user, got)
		}
	}
	clk.Advance(time.Minute)
	if got := post(browser, "alice", "right").StatusCode; got != 200 {
		t.Fatalf("the user with a device cookie is refused during the attack: %d", got)
	}
	// The cookie is bound to alice: for bob the browser is untrusted.
	if got := post(browser, "bob", "right").StatusCode; got != 429 {
		t.Fatalf("a cookie for alice admits bob: %d", got)
	}
	if got := post(bots, "alice", "right").StatusCode; got != 429 {
		t.Fatalf("untrusted clients of alice admitted: %d", got)
	}
	// The trusted device has its own budget: Limit failures lock it.
	for i := range 3 {
		if got := post(browser, "alice", "wrong").StatusCode; got != 401 {
			t.Fatalf("trusted failure %d: %d", i, got)
		}
	}
	if got := post(browser, "alice", "right").StatusCode; got != 429 {
		t.Fatalf("the trusted device is not locked after its own failures: %d", got)
	}
}

// TestDevicesUntrusted: every cookie but a valid one for the username, by a
// listed key, before its expiry, leaves the attempt untrusted, without an
// error.
func TestDevicesUntrusted(t *testing.T) {
	clk := newClock()
	old := newDevices(t, clk, deviceKey1)
	rotated := newDevices(t, clk, deviceKey2, deviceKey1) // new key first, old still listed
	dropped := newDevices(t, clk, deviceKey2)             // old key rotated out
	other := newDevices(t, clk, deviceKey3)

	c := issued(t, old, "alice")
	req := func(v string) *http.Request {
		return withCookie(httptest.NewRequest(http.MethodPost, "/login", nil), &http.Cookie{Name: DefaultDeviceCookie, Value: v})
	}
	dev, ok := old.Verify(req(c.Value), "alice")
	if !ok || len(dev) != 22 {
		t.Fatalf("Verify of a fresh cookie = %q, %v", dev, ok)
	}
	if d2, ok := old.Verify(req(c.Value), "  ALICE "); !ok || d2 != dev {
		t.Errorf("Verify after normalisation = %q, %v; want %q", d2, ok, dev)
	}
	if d, ok := rotated.Verify(req(c.Value), "alice"); !ok || d != dev {
		t.Errorf("a cookie signed by an old, still listed key: %q, %v; want trusted", d, ok)
	}
	if c2 := issued(t, rotated, "alice"); func() bool { _, ok := old.Verify(req(c2.Value), "alice"); return ok }() {
		t.Error("the new signing key is not the first listed")
	}

	raw, _ := base64.RawURLEncoding.DecodeString(c.Value)
	flip := func(i int) string {
		b := bytes.Clone(raw)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	cases := []struct {
		name string
		d    *Devices
		r    *http.Request
		user string
	}{
		{"no cookie", old, httptest.NewRequest(http.MethodPost, "/", nil), "alice"},
		{"another username", old, req(c.Value), "bob"},
		{"empty username", old, req(c.Value), ""},
		{"rotated-out key", dropped, req(c.Value), "alice"},
		{"another key", other, req(c.Value), "alice"},
		{"forged MAC", old, req(flip(len(raw) - 1)), "alice"},
		{"forged device", old, req(flip(12)), "alice"},
		{"forged expiry", old, req(flip(8)), "alice"},
		{"other version", old, req(flip(0)), "alice"},
		{"truncated", old, req(c.Value[:len(c.Value)-1]), "alice"},
		{"over-long", old, req(c.Value + strings.Repeat("A", 4000)), "alice"},
		{"not base64", old, req(strings.Repeat("!", len(c.Value))), "alice"},
		{"empty", old, req(""), "alice"},
		{"other name", old, withCookie(httptest.NewRequest(http.MethodPost, "/", nil), &http.Cookie{Name: "axes-device", Value: c.Value}), "alice"},
		{"nil request", old, nil, "alice"},
	}
	for _, tc := range cases {
		if d, ok := tc.d.Verify(tc.r, tc.user); ok || d != "" {
			t.Errorf("%s: Verify = %q, %v; want untrusted", tc.name, d, ok)
		}
	}

	// Expiry: valid until the lifetime ends, not after.
	clk.Advance(DefaultDeviceLifetime - time.Second)
	if _, ok := old.Verify(req(c.Value), "alice"); !ok {
		t.Error("a cookie a second before its expiry is untrusted")
	}
	clk.Advance(time.Second)
	if _, ok := old.Verify(req(c.Value), "alice"); ok {
		t.Error("an expired cookie is trusted")
	}
	// A shorter lifetime shortens the cookies already issued.
	clk2 := newClock()
	long := newDevices(t, clk2, deviceKey1)
	short, err := NewDevices(DeviceConfig{Keys: [][]byte{deviceKey1}, Lifetime: time.Hour, Now: clk2.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := short.Verify(req(issued(t, long, "alice").Value), "alice"); ok {
		t.Error("a cookie issued for 180 days is trusted under a lifetime of an hour")
	}

	// Only the first few cookies of the name are checked.
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	for range maxDeviceCookies {
		r.AddCookie(&http.Cookie{Name: DefaultDeviceCookie, Value: flip(40)})
	}
	r.AddCookie(c)
	clk.Advance(-time.Hour)
	if _, ok := old.Verify(r, "alice"); ok {
		t.Error("a valid cookie after the first few bad ones is checked")
	}
	r = httptest.NewRequest(http.MethodPost, "/", nil)
	r.AddCookie(&http.Cookie{Name: DefaultDeviceCookie, Value: flip(40)})
	r.AddCookie(c)
	if _, ok := old.Verify(r, "alice"); !ok {
		t.Error("a valid cookie after a bad one is untrusted")
	}
}

// TestDevicesUntrustedDuringAttack: through the middleware, a forged,
// expired or foreign cookie is refused like no cookie while the username
// is locked, and is never an error.
func TestDevicesUntrustedDuringAttack(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Limit: 2, LockoutBy: []axes.Fields{axes.Username}, Cooloff: axes.Forever}, clk)
	dev := newDevices(t, clk, deviceKey1)
	h := newMiddleware(t, lim, WithDevices(dev))(login)
	forBob := issued(t, dev, "bob")
	foreign := issued(t, newDevices(t, clk, deviceKey2), "alice")
	expired := issued(t, newDevices(t, clk, deviceKey1), "alice")
	runSteps(t, h, "203.0.113.1:1", []step{{"alice", "x", 401, ""}, {"alice", "y", 401, ""}, {"alice", "right", 429, ""}})
	clk.Advance(DefaultDeviceLifetime - time.Minute)
	good := issued(t, dev, "alice") // issued now, it outlives the expired one
	clk.Advance(time.Minute)
	for name, c := range map[string]*http.Cookie{
		"for bob": forBob, "foreign key": foreign, "expired": expired,
		"garbage": {Name: DefaultDeviceCookie, Value: strings.Repeat("x", 76)},
	} {
		if w := serve(h, withCookie(postForm("192.0.2.1:1", creds("alice", "right")), c)); w.Code != 429 {
			t.Errorf("%s: %d, want 429", name, w.Code)
		}
	}
	w := serve(h, withCookie(postForm("192.0.2.1:1", creds("alice", "right")), good))
	if w.Code != 200 {
		t.Fatalf("the valid cookie: %d", w.Code)
	}
	if len(w.Result().Cookies()) != 1 {
		t.Errorf("no fresh cookie on a trusted success: %q", w.Header().Values("Set-Cookie"))
	}
}

// TestDevicesIssuedOnSuccessOnly: the middleware issues a cookie for an
// attempt that succeeds, by report or by status, and for nothing else.
func TestDevicesIssuedOnSuccessOnly(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Limit: 100}, clk)
	dev := newDevices(t, clk, deviceKey1)
	h := newMiddleware(t, lim, WithDevices(dev))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.PostFormValue("password") {
		case "report":
			Succeeded(r)
			http.Error(w, "reported success, any status", http.StatusTeapot)
		case "status":
			w.WriteHeader(http.StatusSeeOther)
		case "silent":
			// nothing written: 200
		case "failed-200":
			Failed(r)
			io.WriteString(w, "wrong password, with a 200 page")
		case "401":
			http.Error(w, "no", http.StatusUnauthorized)
		case "late":
			w.WriteHeader(http.StatusUnauthorized)
			Succeeded(r) // too late for a header
		case "early-hints":
			w.WriteHeader(http.StatusEarlyHints)
			http.Error(w, "no", http.StatusUnauthorized)
		}
	}))
	for pass, want := range map[string]bool{
		"report": true, "status": true, "silent": true,
		"failed-200": false, "401": false, "late": false, "early-hints": false,
	} {
		w := serve(h, postForm("192.0.2.1:1", creds("alice", pass)))
		var got *http.Cookie
		for _, c := range w.Result().Cookies() {
			if c.Name == DefaultDeviceCookie {
				got = c
			}
		}
		if (got != nil) != want {
			t.Errorf("%s (status %d): cookie %v, want %v", pass, w.Code, got, want)
			continue
		}
		if got != nil {
			r := withCookie(httptest.NewRequest(http.MethodPost, "/", nil), got)
			if _, ok := dev.Verify(r, "alice"); !ok {
				t.Errorf("%s: the issued cookie does not verify", pass)
			}
		}
	}
	// No username, no cookie.
	if w := serve(h, postForm("192.0.2.1:1", creds(" ", "report"))); len(w.Result().Cookies()) != 0 {
		t.Errorf("a cookie for the empty username: %q", w.Header().Values("Set-Cookie"))
	}
	// A refused attempt gets none either.
	lim2 := newLimiter(t, axes.Policy{Limit: 1}, clk)
	h2 := newMiddleware(t, lim2, WithDevices(dev))(login)
	serve(h2, postForm("192.0.2.1:1", creds("alice", "x")))
	if w := serve(h2, postForm("192.0.2.1:1", creds("alice", "right"))); w.Code != 429 || len(w.Result().Cookies()) != 0 {
		t.Errorf("refused attempt: %d, cookies %q", w.Code, w.Header().Values("Set-Cookie"))
	}
}

func TestDevicesConfig(t *testing.T) {
	key := [][]byte{deviceKey1}
	for _, tc := range []struct {
		name string
		cfg  DeviceConfig
		want string
	}{
		{"no keys", DeviceConfig{}, "at least one key"},
		{"short key", DeviceConfig{Keys: [][]byte{deviceKey1, make([]byte, 31)}}, "Keys[1] has 31 bytes"},
		{"negative lifetime", DeviceConfig{Keys: key, Lifetime: -time.Hour}, "Lifetime"},
		{"sub-second lifetime", DeviceConfig{Keys: key, Lifetime: time.Millisecond}, "Lifetime"},
		{"bad name", DeviceConfig{Keys: key, Name: "a b"}, "invalid cookie"},
		{"host prefix, insecure", DeviceConfig{Keys: key, Insecure: true}, "cannot be Insecure"},
		{"secure prefix, insecure", DeviceConfig{Keys: key, Name: "__Secure-d", Insecure: true}, "cannot be Insecure"},
		{"host prefix, path", DeviceConfig{Keys: key, Path: "/login"}, "needs Path /"},
		{"host prefix, domain", DeviceConfig{Keys: key, Domain: "example.com"}, "no Domain"},
		{"relative path", DeviceConfig{Keys: key, Name: "d", Path: "login"}, "must start with /"},
		{"none, insecure", DeviceConfig{Keys: key, Name: "d", Insecure: true, SameSite: http.SameSiteNoneMode}, "SameSite=None"},
	} {
		_, err := NewDevices(tc.cfg)
		if err == nil || !strings.HasPrefix(err.Error(), "axes: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := New(newLimiter(t, axes.Policy{}, newClock()), WithDevices(nil)); err == nil || !strings.Contains(err.Error(), "WithDevices(nil)") {
		t.Errorf("WithDevices(nil): %v", err)
	}
	// The caller's keys are copied.
	k := bytes.Clone(deviceKey1)
	d, err := NewDevices(DeviceConfig{Keys: [][]byte{k}, Name: "dev", Path: "/app", Domain: "example.com", SameSite: http.SameSiteStrictMode, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := issued(t, d, "alice")
	k[0] ^= 1
	if _, ok := d.Verify(withCookie(httptest.NewRequest(http.MethodPost, "/", nil), c), "alice"); !ok {
		t.Error("changing the caller's key slice changed the Devices' key")
	}
	if c.Name != "dev" || c.Path != "/app" || c.Domain != "example.com" || c.SameSite != http.SameSiteStrictMode || c.MaxAge != 3600 || !c.Secure || !c.HttpOnly {
		t.Errorf("cookie %+v", c)
	}
}

// FuzzDeviceVerify: no cookie value panics Verify, and only a value
// Devices issued verifies.
func FuzzDeviceVerify(f *testing.F) {
	clk := newClock()
	d := newDevices(f, clk, deviceKey1)
	// A cookie with a fixed device, so that every fuzzing process agrees.
	var raw [deviceRaw]byte
	raw[0] = deviceVersion
	binary.BigEndian.PutUint64(raw[1:9], uint64(clk.Now().Add(time.Hour).Unix()))
	copy(raw[9:deviceSigned], "0123456789abcdef")
	copy(raw[deviceSigned:], d.sign(nil, deviceKey1, raw[:deviceSigned], "alice"))
	valid := base64.RawURLEncoding.EncodeToString(raw[:])
	if _, ok := d.Verify(withCookie(httptest.NewRequest(http.MethodPost, "/", nil), &http.Cookie{Name: DefaultDeviceCookie, Value: valid}), "alice"); !ok {
		f.Fatal("the fixed cookie does not verify")
	}
	f.Add(valid, "alice")
	f.Add(valid[:40], "alice")
	f.Add(strings.Repeat("A", 76), "")
	f.Add("", "\xff")
	f.Fuzz(func(t *testing.T, v, user string) {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header.Set("Cookie", DefaultDeviceCookie+"="+url.PathEscape(v))
		if _, ok := d.Verify(r, user); ok && (v != valid || axes.DefaultNormalizeUsername(user) != "alice") {
			t.Errorf("Verify(%q, %q) trusted", v, user)
		}
	})
}

package axeshttp

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/axes-go/axes"
)

// The attacks in this file each try to have the middleware count one
// username while the handler checks the password of another: the victim's
// guesses then go on past the limit. Each runs 20 guesses against a limit of
// 3 on the username and asserts that at most 3 reach the password check.

const (
	attackGuesses = 20
	attackLimit   = 3
)

// victimCounter is a login handler that counts how often the password of
// "victim" is checked, as read by FormValue.
type victimCounter struct {
	mu      sync.Mutex
	checked int
}

func (v *victimCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.FormValue("username") == "victim" {
		v.mu.Lock()
		v.checked++
		v.mu.Unlock()
	}
	http.Error(w, "wrong username or password", http.StatusUnauthorized)
}

func (v *victimCounter) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.checked
}

func attackMiddleware(t *testing.T, opts ...Option) func(http.Handler) http.Handler {
	t.Helper()
	lim := newLimiter(t, axes.Policy{Limit: attackLimit, LockoutBy: []axes.Fields{axes.Username}}, newClock())
	return newMiddleware(t, lim, opts...)
}

// rawRoundTrip writes raw to a new connection to addr, half-closes it when
// halfClose is set, and reads the response to a request with method. It never waits on a clock: the
// deadline only keeps a broken test from hanging.
func rawRoundTrip(t testing.TB, addr, raw string, halfClose bool, method string) (*http.Response, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	_, werr := io.WriteString(c, raw)
	if halfClose {
		if err := c.(*net.TCPConn).CloseWrite(); err != nil && werr == nil {
			werr = err
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		if werr != nil {
			return nil, fmt.Errorf("write: %v; read: %v", werr, err)
		}
		return nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp, nil
}

// TestAttackTruncatedBody: the victim's name in the query, a decoy in a
// body that breaks off (Content-Length larger than what is sent, then a
// half-close). The handler's ParseForm fails on the body, drops it, and
// FormValue falls back to the query.
func TestAttackTruncatedBody(t *testing.T) {
	vc := &victimCounter{}
	srv := httptest.NewServer(attackMiddleware(t)(vc))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	for i := range attackGuesses {
		body := fmt.Sprintf("username=decoy%d&password=guess%d", i, i)
		raw := "POST /login?username=victim&password=guess HTTP/1.1\r\nHost: x\r\n" +
			"Content-Type: application/x-www-form-urlencoded\r\n" +
			fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)+100) + body
		resp, err := rawRoundTrip(t, addr, raw, true, http.MethodPost)
		if err != nil {
			t.Fatalf("guess %d: %v", i, err)
		}
		if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("guess %d: status %d, want 400", i, resp.StatusCode)
		}
	}
	if n := vc.count(); n > attackLimit {
		t.Errorf("%d guesses on the victim reached the password check, limit %d", n, attackLimit)
	}
}

// TestAttackMethodNotParsed: a DELETE (any method but POST, PUT and PATCH)
// to a handler registered without a method. net/http does not parse its
// body; FormValue reads the query.
func TestAttackMethodNotParsed(t *testing.T) {
	vc := &victimCounter{}
	mux := http.NewServeMux()
	mux.Handle("/login", attackMiddleware(t)(vc))
	for i := range attackGuesses {
		r := httptest.NewRequest(http.MethodDelete, "/login?username=victim&password=guess",
			strings.NewReader(fmt.Sprintf("username=decoy%d", i)))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = "192.0.2.1:1"
		if w := serve(mux, r); w.Code != http.StatusBadRequest {
			t.Errorf("guess %d: status %d, want 400", i, w.Code)
		}
	}
	if n := vc.count(); n > attackLimit {
		t.Errorf("%d guesses on the victim reached the password check, limit %d", n, attackLimit)
	}
}

// TestAttackOverFormLimit: with MaxBodyBytes above net/http's 10 MB bound
// for url-encoded bodies, an 11 MiB body. ParseForm refuses it, and
// FormValue falls back to the query.
func TestAttackOverFormLimit(t *testing.T) {
	vc := &victimCounter{}
	h := attackMiddleware(t, MaxBodyBytes(16<<20))(vc)
	pad := strings.Repeat("x", 11<<20)
	const guesses = attackLimit + 3 // 11 MiB each: a few suffice
	for i := range guesses {
		r := httptest.NewRequest(http.MethodPost, "/login?username=victim",
			strings.NewReader(fmt.Sprintf("username=decoy%d&password=guess&pad=", i)+pad))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if w := serve(h, r); w.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("guess %d: status %d, want 413", i, w.Code)
		}
	}
	if n := vc.count(); n > attackLimit {
		t.Errorf("%d guesses on the victim reached the password check, limit %d", n, attackLimit)
	}
}

// TestAttackMultipartPostFormValue: a multipart body naming the victim and
// a query naming a decoy. FormValue prefers the query for multipart bodies,
// PostFormValue reads the body: a handler that reads PostFormValue checks
// the victim's password while the query's name was counted.
func TestAttackMultipartPostFormValue(t *testing.T) {
	var mu sync.Mutex
	checked := 0
	h := attackMiddleware(t)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PostFormValue("username") == "victim" {
			mu.Lock()
			checked++
			mu.Unlock()
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	for i := range attackGuesses {
		body := "--X\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nvictim\r\n--X--\r\n"
		r := httptest.NewRequest(http.MethodPost, fmt.Sprintf("/login?username=decoy%d", i), strings.NewReader(body))
		r.Header.Set("Content-Type", "multipart/form-data; boundary=X")
		if w := serve(h, r); w.Code != http.StatusBadRequest {
			t.Errorf("guess %d: status %d, want 400", i, w.Code)
		}
	}
	if checked > attackLimit {
		t.Errorf("%d guesses on the victim reached the password check, limit %d", checked, attackLimit)
	}
}

// TestJSONFieldRefusesWhatUnmarshalRefuses: a body that encoding/json does
// not decode into the handler's struct without an error (a non-string
// username, broken or trailing JSON, no JSON object) is answered 400
// without reaching the handler.
func TestJSONFieldRefusesWhatUnmarshalRefuses(t *testing.T) {
	for _, body := range []string{
		`{"username":"victim","username":12}`,
		`{"username":12}`,
		`{"username":{"a":"victim"}}`,
		`{"username":["victim"]}`,
		`{"username":true}`,
		`{"username":"victim"`,
		`{"username":"a"} {"username":"victim"}`,
		`["username","victim"]`,
		`"victim"`,
		`not json`,
		``,
	} {
		called := false
		h := attackMiddleware(t, WithUsername(JSONField("username")))(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
		r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if w := serve(h, r); w.Code != http.StatusBadRequest || called {
			t.Errorf("%q: status %d, handler called %v; want 400 and no call", body, w.Code, called)
		}
	}
}

// TestFormParsedForHandler: after FormField, the handler finds the form
// parsed: its own ParseMultipartForm is a no-op without error, files are
// there, and the raw body is still readable byte for byte.
func TestFormParsedForHandler(t *testing.T) {
	body := "--B\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nbob\r\n" +
		"--B\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"a.txt\"\r\n\r\nfile-content\r\n--B--\r\n"
	lim := newLimiter(t, axes.Policy{}, newClock())
	called := false
	h := newMiddleware(t, lim)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called = true
		if err := r.ParseMultipartForm(1); err != nil {
			t.Errorf("ParseMultipartForm: %v", err)
		}
		f, _, err := r.FormFile("avatar")
		if err != nil {
			t.Fatalf("FormFile: %v", err)
		}
		defer f.Close()
		if b, _ := io.ReadAll(f); string(b) != "file-content" {
			t.Errorf("file %q", b)
		}
		if b, _ := io.ReadAll(r.Body); string(b) != body {
			t.Errorf("body %q", b)
		}
		if r.FormValue("username") != "bob" {
			t.Errorf("FormValue %q", r.FormValue("username"))
		}
	}))
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(body))
	r.Header.Set("Content-Type", "multipart/form-data; boundary=B")
	if w := serve(h, r); w.Code != 200 || !called {
		t.Errorf("got %d, called %v", w.Code, called)
	}
}

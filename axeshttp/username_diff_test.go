package axeshttp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/axes-go/axes"
)

// diffTarget is a server with the middleware in front of a handler that
// records how it reads the username, and the username the limiter was
// given.
type diffTarget struct {
	name string
	srv  *httptest.Server

	mu       sync.Mutex // protects the fields below
	counted  []string   // usernames the limiter was asked to count
	called   bool
	reads    map[string]string // how the handler read the username: way -> value
	readErr  string
	bodySeen []byte
}

func (d *diffTarget) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.counted, d.called, d.reads, d.readErr, d.bodySeen = nil, false, nil, "", nil
}

const diffMaxBody = 2048

func newDiffTarget(t *testing.T, name string, src Username) *diffTarget {
	d := &diffTarget{name: name}
	lim, err := axes.New(axes.Policy{Limit: 65535, LockoutBy: []axes.Fields{axes.Username},
		NormalizeUsername: func(s string) string {
			d.mu.Lock()
			d.counted = append(d.counted, s)
			d.mu.Unlock()
			return s
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lim.Close() })
	mw := newMiddleware(t, lim, WithUsername(src), PassThrough(), MaxBodyBytes(diffMaxBody))
	d.srv = httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reads := map[string]string{}
		var readErr string
		body, _ := io.ReadAll(r.Body)
		if src.kind == usernameJSON {
			var v struct {
				Username string `json:"username"`
			}
			if err := json.Unmarshal(body, &v); err != nil {
				readErr = "Unmarshal: " + err.Error()
			}
			reads["json.Unmarshal"] = v.Username
			v.Username = ""
			if err := json.NewDecoder(bytes.NewReader(body)).Decode(&v); err != nil {
				readErr = "Decoder: " + err.Error()
			}
			reads["json.Decoder"] = v.Username
		} else {
			// The handler's own ParseForm must be a no-op that reports no
			// error: the middleware parsed the form already.
			if err := r.ParseForm(); err != nil {
				readErr = "ParseForm: " + err.Error()
			}
			reads["FormValue"] = r.FormValue("username")
			reads["PostFormValue"] = r.PostFormValue("username")
			reads["Form.Get"] = r.Form.Get("username")
			reads["PostForm.Get"] = r.PostForm.Get("username")
		}
		d.mu.Lock()
		d.called, d.reads, d.readErr, d.bodySeen = true, reads, readErr, body
		d.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})))
	t.Cleanup(d.srv.Close)
	return d
}

// diffCase is one raw HTTP request.
type diffCase struct {
	raw       string
	method    string
	body      []byte // the body as the handler should read it, when whole
	truncated bool   // the body breaks off: the client half-closes early
	oversize  bool   // the body is over diffMaxBody
}

func pick[T any](rng *rand.Rand, xs ...T) T { return xs[rng.IntN(len(xs))] }

var (
	diffNames  = []string{"username", "username", "username", "Username", "USERNAME", "usernamE", "user\u017fname", "password", "user"}
	diffValues = []string{"victim", "decoy", "", "vic%74im", "vic+tim", "victim%00", "b%C3%B6b", "%zz", "victim;x=1", "d%26coy"}
)

func genForm(rng *rand.Rand) string {
	var parts []string
	for range rng.IntN(5) {
		switch rng.IntN(10) {
		case 0:
			parts = append(parts, pick(rng, diffNames...)) // no '='
		case 1:
			parts = append(parts, "")
		default:
			parts = append(parts, pick(rng, diffNames...)+"="+pick(rng, diffValues...))
		}
	}
	return strings.Join(parts, pick(rng, "&", "&", "&", ";"))
}

func genMultipart(rng *rand.Rand) string {
	var b strings.Builder
	for range rng.IntN(4) {
		b.WriteString("--B\r\n")
		disp := `form-data; name="` + pick(rng, diffNames...) + `"`
		if rng.IntN(4) == 0 {
			disp += `; filename="f.txt"`
		}
		b.WriteString("Content-Disposition: " + disp + "\r\n\r\n")
		b.WriteString(pick(rng, "victim", "decoy", "", "b\u00f6b") + "\r\n")
	}
	if rng.IntN(6) != 0 {
		b.WriteString("--B--\r\n")
	}
	return b.String()
}

func genJSON(rng *rand.Rand) string {
	switch rng.IntN(12) {
	case 0:
		return pick(rng, `[{"username":"victim"}]`, `"victim"`, `null`, `12`, ``, `not json`)
	case 1:
		return `{"username":"decoy"} {"username":"victim"}`
	case 2:
		return `{"username":"victim"`
	}
	var members []string
	for range rng.IntN(5) {
		key := pick(rng, diffNames...)
		if rng.IntN(5) == 0 {
			key = pick(rng, `user\u006eame`, `USER\u004eAME`, `user\u212aame`)
		}
		val := pick(rng, `"victim"`, `"decoy"`, `""`, `"vict\u0069m"`, `null`, `null`, `12`, `true`, `{"username":"victim"}`, `["victim"]`)
		members = append(members, `"`+key+`":`+val)
	}
	return pick(rng, "", " ", "\n") + "{" + strings.Join(members, pick(rng, ",", ", ")) + "}" + pick(rng, "", " ", "\n")
}

func genDiffCase(rng *rand.Rand) diffCase {
	c := diffCase{method: pick(rng, "POST", "POST", "POST", "PUT", "PATCH", "DELETE", "GET", "OPTIONS", "HEAD", "LOGIN")}
	query := pick(rng, "", "", "username=victim", "username=decoy", "username=victim&username=decoy",
		"Username=victim", "username=%zz", "username=", "x=1", "username=victim;x", "username=vic%74im")

	var body, ctype string
	switch rng.IntN(5) {
	case 0, 1:
		body = genForm(rng)
		ctype = pick(rng, "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8",
			"APPLICATION/X-WWW-FORM-URLENCODED", "application/x-www-form-urlencoded; charset", "text/plain", "")
	case 2:
		body = genMultipart(rng)
		ctype = pick(rng, "multipart/form-data; boundary=B", "multipart/form-data; boundary=B",
			"multipart/form-data", "multipart/mixed; boundary=B", `multipart/form-data; boundary="B"`)
	default:
		body = genJSON(rng)
		ctype = pick(rng, "application/json", "", "text/plain")
	}
	if rng.IntN(8) == 0 {
		c.oversize = true
		body += strings.Repeat("x", diffMaxBody+1-len(body)+rng.IntN(64))
	}

	var b strings.Builder
	target := "/login"
	if query != "" {
		target += "?" + query
	}
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n", c.method, target)
	if ctype != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", ctype)
		if rng.IntN(15) == 0 {
			b.WriteString("Content-Type: application/x-www-form-urlencoded\r\n")
		}
	}
	if body == "" && rng.IntN(2) == 0 {
		b.WriteString("\r\n") // no body at all
		c.raw = b.String()
		return c
	}
	c.body = []byte(body)
	c.truncated = !c.oversize && rng.IntN(6) == 0
	if rng.IntN(3) == 0 {
		// Chunked, in random pieces; a truncated one stops mid-chunk or
		// before the last chunk.
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		rest := body
		for rest != "" {
			n := 1 + rng.IntN(len(rest))
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, rest[:n])
			rest = rest[n:]
		}
		if c.truncated {
			raw := b.String()
			cut := len(raw) - rng.IntN(min(len(body), 8)+1)
			c.raw = raw[:cut]
			return c
		}
		b.WriteString("0\r\n\r\n")
		c.raw = b.String()
		return c
	}
	sent := body
	declared := len(body)
	if c.truncated {
		if rng.IntN(2) == 0 && len(body) > 0 {
			sent = body[:rng.IntN(len(body))]
		} else {
			declared += 1 + rng.IntN(100)
		}
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", declared, sent)
	c.raw = b.String()
	return c
}

// TestUsernameDifferential sends hundreds of random raw requests over real
// sockets (random methods, query and body, duplicate and case-variant keys,
// url-encoded, multipart and JSON bodies, chunked and truncated framing,
// oversized bodies) to the middleware with FormField and with JSONField. For
// every request that reaches the handler, the username counted is exactly
// what the handler reads: FormValue, PostFormValue, Form and PostForm, or a
// struct decoded by json.Unmarshal and json.Decoder without error. Every
// other request is answered 400 or 413, uncounted.
func TestUsernameDifferential(t *testing.T) {
	targets := []*diffTarget{
		newDiffTarget(t, "form", FormField("username")),
		newDiffTarget(t, "json", JSONField("username")),
	}
	rng := rand.New(rand.NewPCG(20260102, 1))
	const n = 400
	admitted, refused := map[string]int{}, map[string]int{}
	for i := range n {
		c := genDiffCase(rng)
		for _, d := range targets {
			d.reset()
			resp, err := rawRoundTrip(t, d.srv.Listener.Addr().String(), c.raw, true, c.method)
			if err != nil {
				t.Fatalf("case %d to %s: %v\n%q", i, d.name, err, c.raw)
			}
			d.mu.Lock()
			counted, called, reads, readErr, seen := d.counted, d.called, d.reads, d.readErr, d.bodySeen
			d.mu.Unlock()
			fail := func(format string, args ...any) {
				t.Helper()
				t.Errorf("case %d to %s: %s\nrequest %q\nstatus %d, counted %q, reads %v", i, d.name,
					fmt.Sprintf(format, args...), c.raw, resp.StatusCode, counted, reads)
			}
			if !called {
				refused[d.name]++
				if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestEntityTooLarge {
					fail("refused with a status other than 400 or 413")
				}
				if len(counted) != 0 {
					fail("a refused request was counted")
				}
				if c.oversize && resp.StatusCode != http.StatusRequestEntityTooLarge {
					fail("an oversized body was not answered 413")
				}
				continue
			}
			admitted[d.name]++
			if c.truncated || c.oversize {
				fail("a truncated or oversized body reached the handler")
			}
			if resp.StatusCode != http.StatusOK {
				fail("handler reached, but status is not the handler's")
			}
			if len(counted) != 1 {
				fail("counted %d times, want once", len(counted))
				continue
			}
			if readErr != "" {
				fail("the handler's read failed: %s", readErr)
			}
			for way, v := range reads {
				if v != counted[0] {
					fail("counted %q, but %s reads %q", counted[0], way, v)
				}
			}
			if !bytes.Equal(seen, c.body) {
				fail("handler read body %q, want %q", seen, c.body)
			}
		}
	}
	t.Logf("admitted %v, refused %v", admitted, refused)
	for _, d := range targets {
		if admitted[d.name] < n/20 || refused[d.name] < n/20 {
			t.Errorf("%s: %d admitted, %d refused: the generator no longer exercises both sides", d.name, admitted[d.name], refused[d.name])
		}
	}
}

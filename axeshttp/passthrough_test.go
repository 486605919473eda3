package axeshttp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/axes-go/axes"
)

// A handler registered without a method checks whatever credentials a GET
// carries. Pass-through requests must reach it without them, or an
// attacker guesses uncounted with GET /login?username=victim&password=...
func TestAttackPassThroughCarriesNoCredential(t *testing.T) {
	type seen struct{ form, post, json, basic string }
	cases := []struct {
		name  string
		u     Username
		req   func() *http.Request
		check func(t *testing.T, s seen)
	}{
		{"query", FormField("username"), func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "/login?username=victim&password=guess&next=%2Fhome", nil)
		}, func(t *testing.T, s seen) {
			if s.form != "" {
				t.Errorf("FormValue = %q on a pass-through GET", s.form)
			}
		}},
		{"unparsable query", FormField("username"), func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "/login?username=victim;x=1&password=guess", nil)
		}, func(t *testing.T, s seen) {
			if s.form != "" {
				t.Errorf("FormValue = %q on a pass-through GET", s.form)
			}
		}},
		{"json body", JSONField("username"), func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/login", strings.NewReader(`{"username":"victim","password":"guess"}`))
			r.Header.Set("Content-Type", "application/json")
			return r
		}, func(t *testing.T, s seen) {
			if s.json != "" {
				t.Errorf("JSON body read %q on a pass-through GET", s.json)
			}
		}},
		{"basic auth", BasicAuth(), func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/login", nil)
			r.SetBasicAuth("victim", "guess")
			return r
		}, func(t *testing.T, s seen) {
			if s.basic != "" {
				t.Errorf("BasicAuth read %q on a pass-through GET", s.basic)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lim := axes.Must(axes.New(axes.Policy{Limit: 3, LockoutBy: []axes.Fields{axes.Username}}))
			defer lim.Close()
			var got seen
			h := Must(New(lim, WithUsername(c.u)))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = seen{form: r.FormValue("username"), post: r.PostFormValue("username")}
				var body struct{ Username string }
				_ = json.NewDecoder(r.Body).Decode(&body)
				got.json = body.Username
				got.basic, _, _ = r.BasicAuth()
				w.WriteHeader(http.StatusOK)
			}))
			for range 10 {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, c.req())
				c.check(t, got)
			}
		})
	}
}

// A pass-through request without credentials reaches the handler as sent.
func TestPassThroughKeepsOtherQuery(t *testing.T) {
	lim := axes.Must(axes.New(axes.Policy{}))
	defer lim.Close()
	var q string
	h := Must(New(lim))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { q = r.URL.Query().Encode() }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/login?next=%2Fhome&username=bob", nil))
	if q != "next=%2Fhome" {
		t.Errorf("query = %q, want next=%%2Fhome", q)
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/login?next=%2Fhome", nil))
	if q != "next=%2Fhome" {
		t.Errorf("query = %q", q)
	}
}

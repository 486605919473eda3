package axesaudit

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axeshttp"
)

// The admin searches the trail: a limiter writes into it, and the admin's
// page and API find the client's events by username, newest first, masked.
func TestAdminSearchesTrail(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		var clk fakeClock
		tr := newTrail(t, tdb, Config{})
		lim := axes.Must(axes.New(axes.Policy{Limit: 2, LockoutBy: []axes.Fields{axes.Username}, OnEvent: tr.Chain(nil)},
			axes.WithClock(clk.Now)))
		defer lim.Close()
		k := axes.Key{IP: netip.MustParseAddr("192.0.2.1"), Username: "Alice"}
		lim.Fail(k)
		lim.Fail(k) // locks
		lim.Fail(axes.Key{IP: netip.MustParseAddr("198.51.100.1"), Username: "bob"})
		flush(t, tr)

		const token = "history-admin-token-0123456789"
		admin, err := axeshttp.NewAdmin(lim, axeshttp.AdminToken(token), axeshttp.AdminHistory(tr), axeshttp.AdminClock(clk.Now))
		if err != nil {
			t.Fatal(err)
		}
		get := func(target string) *httptest.ResponseRecorder {
			r := httptest.NewRequest("GET", target, nil)
			r.Header.Set("Authorization", "Bearer "+token)
			w := httptest.NewRecorder()
			admin.ServeHTTP(w, r)
			return w
		}
		w := get("/api/history?username=alice")
		var got struct {
			Records []struct {
				Kind     string `json:"kind"`
				Username string `json:"username"`
				IP       string `json:"ip"`
			} `json:"records"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != http.StatusOK {
			t.Fatalf("%d %s %v", w.Code, w.Body, err)
		}
		var kinds []string
		for _, r := range got.Records {
			kinds = append(kinds, r.Kind)
			if r.Username == "Alice" || r.IP == "192.0.2.1" {
				t.Errorf("the history shows a raw identity: %+v", r)
			}
		}
		if strings.Join(kinds, ",") != "lockout,failure,failure" {
			t.Errorf("kinds %v, want lockout and two failures, newest first", kinds)
		}
		if page := get("/?username=alice").Body.String(); !strings.Contains(page, `id="history"`) || strings.Contains(page, "bob") {
			t.Errorf("the page does not show alice's history alone")
		}
	})
}

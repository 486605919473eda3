package axeshttp

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/axes-go/axes"
)

// TestSprayThroughMiddleware: the middleware passes the client IP and the
// username, so Policy.Spray locks an address that fails with Spray.Limit
// usernames, and the lock is answered as any lock: 429, locked_out and
// Retry-After, saying nothing of the rule that stopped the client.
func TestSprayThroughMiddleware(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Limit: 100, Spray: axes.Spray{Limit: 3, Cooloff: 10 * time.Minute}}, clk)
	h := newMiddleware(t, lim)(login)
	for i := range 3 {
		if w := serve(h, postForm("192.0.2.7:1", creds(fmt.Sprintf("user%d", i), "x"))); w.Code != 401 {
			t.Fatalf("guess %d: %d", i, w.Code)
		}
	}
	w := serve(h, postForm("192.0.2.7:1", creds("user9", "right"), "Accept", "application/json"))
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if w.Code != 429 || w.Header().Get("Retry-After") != "600" || body["error"] != "locked_out" {
		t.Errorf("spray lock: %d %v %v", w.Code, w.Header(), body)
	}
	if w := serve(h, postForm("192.0.2.8:1", creds("user0", "right"))); w.Code != 200 {
		t.Errorf("another address: %d", w.Code)
	}
	if v := lim.Check(axes.Key{IP: netip.MustParseAddr("192.0.2.7"), Username: "any"}); v.Reason != axes.ReasonSpray {
		t.Errorf("verdict %+v, want ReasonSpray", v)
	}
}

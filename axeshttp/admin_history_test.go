package axeshttp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// fakeHistory answers from a fixed list and remembers the last query.
type fakeHistory struct {
	recs []HistoryRecord
	last HistoryQuery
	err  error
}

func (h *fakeHistory) SearchHistory(_ context.Context, q HistoryQuery) ([]HistoryRecord, error) {
	h.last = q
	if h.err != nil {
		return nil, h.err
	}
	var out []HistoryRecord
	for _, r := range h.recs {
		if q.Username != "" && !strings.EqualFold(r.Username, q.Username) {
			continue
		}
		out = append(out, r)
	}
	return out[:min(len(out), q.Limit)], nil
}

func historyFixture(t *testing.T) (*adminFixture, *fakeHistory) {
	t.Helper()
	at := time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC)
	h := &fakeHistory{recs: []HistoryRecord{
		{Time: at, Kind: "lockout", By: "username", Username: "alice", IP: "192.0.*.*", Failures: 3, Until: at.Add(15 * time.Minute)},
		{Time: at.Add(-time.Minute), Kind: "failure", By: "username", Username: "alice", IP: "192.0.*.*", Failures: 2},
		{Time: at.Add(-2 * time.Minute), Kind: "refused", By: "ip", Reason: "lockout", Username: "<b>bob</b>", IP: "198.51.*.*"},
	}}
	return newAdminFixture(t, AdminToken(testAdminToken), AdminHistory(h)), h
}

func TestAdminHistoryPage(t *testing.T) {
	f, h := historyFixture(t)
	w := f.do("GET", "/axes/?username=alice&hours=24&ip=192.0.2.7", "")
	if w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	body := w.Body.String()
	for _, want := range []string{`id="history"`, "lock for 15 minutes", "2 failures", `value="alice"`, `value="24"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<b>bob</b>") {
		t.Error("a username was not escaped")
	}
	if h.last.Username != "alice" || h.last.IP != netip.MustParseAddr("192.0.2.7") || h.last.Limit != pageHistory {
		t.Errorf("query %+v", h.last)
	}
	if got, want := h.last.Since, f.clk.Now().Add(-24*time.Hour); !got.Equal(want) {
		t.Errorf("Since %v, want %v", got, want)
	}
	for _, q := range []string{"ip=not-an-ip", "hours=0", "hours=x", "username=" + strings.Repeat("u", 2000)} {
		if body := f.do("GET", "/axes/?"+q, "").Body.String(); !strings.Contains(body, `id="history-error"`) {
			t.Errorf("%s: no error shown", q[:min(len(q), 20)])
		}
	}
	h.err = errors.New("database is down")
	if body := f.do("GET", "/axes/", "").Body.String(); !strings.Contains(body, "could not be searched") {
		t.Error("a failed search is not reported")
	}
}

func TestAdminHistoryAPI(t *testing.T) {
	f, h := historyFixture(t)
	w := f.do("GET", "/axes/api/history?username=alice&limit=1", "")
	var got struct {
		Records []eventView `json:"records"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != http.StatusOK {
		t.Fatalf("%d %s %v", w.Code, w.Body, err)
	}
	if len(got.Records) != 1 || got.Records[0].Kind != "lockout" || got.Records[0].Until == nil || h.last.Limit != 1 {
		t.Errorf("records %+v, query %+v", got.Records, h.last)
	}
	for _, q := range []string{"limit=0", "limit=1001", "ip=x", "hours=99999"} {
		if w := f.do("GET", "/axes/api/history?"+q, ""); w.Code != http.StatusBadRequest {
			t.Errorf("%s: %d", q, w.Code)
		}
	}
	h.err = errors.New("down")
	if w := f.do("GET", "/axes/api/history", ""); w.Code != http.StatusServiceUnavailable {
		t.Errorf("failed search: %d", w.Code)
	}
	// Without a history there is no route, and the page shows no section.
	plain := newAdminFixture(t)
	if w := plain.do("GET", "/axes/api/history", ""); w.Code != http.StatusNotFound {
		t.Errorf("without AdminHistory: %d", w.Code)
	}
	if strings.Contains(plain.do("GET", "/axes/", "").Body.String(), `id="h-history"`) {
		t.Error("history section without AdminHistory")
	}
	// The history is behind the admin's authorisation like every route.
	r := f.do("GET", "/axes/api/history", "", "Authorization", "")
	if r.Code != http.StatusUnauthorized {
		t.Errorf("unauthorised: %d", r.Code)
	}
	if _, err := NewAdmin(f.lim, AdminToken(testAdminToken), AdminHistory(nil)); err == nil {
		t.Error("AdminHistory(nil) accepted")
	}
}

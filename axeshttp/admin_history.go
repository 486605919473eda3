package axeshttp

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// History is a searchable record of past attempts that the admin page and
// API search when AdminHistory passes it: django-axes' AccessAttempt and
// AccessLog pages. axesaudit.Trail implements it on SQLite or PostgreSQL.
type History interface {
	// SearchHistory returns the records that match q, newest first, at
	// most q.Limit of them.
	SearchHistory(ctx context.Context, q HistoryQuery) ([]HistoryRecord, error)
}

// HistoryQuery is a search of a History. Zero fields match everything.
type HistoryQuery struct {
	IP        netip.Addr // the client's IP
	Username  string     // as the client sent it (the History normalises it as it stores it)
	UserAgent string
	Since     time.Time // inclusive
	Until     time.Time // exclusive
	Limit     int       // at most this many records; at least 1
}

// HistoryRecord is one event of a History, with identities as the History
// keeps them (masked, unless it keeps them raw).
type HistoryRecord struct {
	Time      time.Time
	Kind      string // "failure", "lockout", "refused", "success", "reset" or "logout"
	By        string // the dimension concerned, such as "ip+username"; "" for none
	Reason    string // why an attempt was refused
	IP        string
	Username  string
	UserAgent string
	Failures  int       // the dimension's failures after the event
	Until     time.Time // when the lock ends (lockout, refused); zero for no end
	Count     int64     // how many entries a reset forgot
}

// AdminHistory makes the page show h's most recent records and search them
// (by IP, username, user agent and the last N hours), and serves the search
// as JSON at GET /api/history.
func AdminHistory(h History) AdminOption {
	return func(ad *admin) {
		if h == nil {
			ad.errs = append(ad.errs, errors.New("axes: AdminHistory(nil)"))
		}
		ad.history = h
	}
}

// Bounds of a history search from the page or the API.
const (
	pageHistory      = 25   // records the page shows
	maxHistoryLimit  = 1000 // records the API returns at most
	maxHistoryHours  = 24 * 366
	maxHistoryFilter = 1024 // bytes of a username or user agent to search by
)

// historySearch is a search as the page's form and the API send it.
type historySearch struct {
	IP, Username, UserAgent string
	Hours                   int
	Given                   bool // any field was given
}

// parseHistorySearch reads a search from r's query: ip, username,
// user_agent and hours.
func parseHistorySearch(r *http.Request, now time.Time, limit int) (HistoryQuery, historySearch, error) {
	v := r.URL.Query()
	s := historySearch{IP: strings.TrimSpace(v.Get("ip")), Username: v.Get("username"), UserAgent: v.Get("user_agent")}
	q := HistoryQuery{Username: s.Username, UserAgent: s.UserAgent, Limit: limit}
	if len(s.Username) > maxHistoryFilter || len(s.UserAgent) > maxHistoryFilter {
		return q, s, errors.New("username and user_agent are searched by their first 1024 bytes at most")
	}
	if s.IP != "" {
		a, err := netip.ParseAddr(s.IP)
		if err != nil {
			return q, s, errors.New("ip is not an IP address")
		}
		q.IP = a.Unmap().WithZone("")
	}
	if h := v.Get("hours"); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || n < 1 || n > maxHistoryHours {
			return q, s, errors.New("hours must be a whole number from 1 to 8784")
		}
		s.Hours = n
		q.Since = now.Add(-time.Duration(n) * time.Hour)
	}
	s.Given = s.IP != "" || s.Username != "" || s.UserAgent != "" || s.Hours != 0
	return q, s, nil
}

// historyRows searches the history for the page.
func (a *admin) historyRows(r *http.Request, d *pageData) {
	q, s, err := parseHistorySearch(r, a.now(), pageHistory)
	d.HistorySearch = s
	d.HistoryOn = true
	if err != nil {
		d.HistoryError = err.Error()
		return
	}
	recs, err := a.history.SearchHistory(r.Context(), q)
	if err != nil {
		d.HistoryError = "the history could not be searched: " + err.Error()
		return
	}
	for _, rec := range recs {
		d.History = append(d.History, historyRow(rec))
	}
}

func historyRow(rec HistoryRecord) eventRow {
	row := eventRow{
		Time:      rec.Time.UTC().Format(pageTimeFormat),
		TimeISO:   rec.Time.UTC().Format(isoFormat),
		Kind:      rec.Kind,
		By:        rec.By,
		IP:        rec.IP,
		Username:  printable(rec.Username),
		UserAgent: printable(rec.UserAgent),
	}
	switch rec.Kind {
	case "failure":
		row.Detail = strconv.Itoa(rec.Failures) + " failures"
	case "lockout":
		row.Detail = "indefinite lock"
		if !rec.Until.IsZero() {
			row.Detail = "lock for " + inWords(rec.Until.Sub(rec.Time))
		}
	case "refused":
		row.Detail = rec.Reason
	case "reset":
		row.Detail = strconv.FormatInt(rec.Count, 10) + " entries forgotten"
	}
	return row
}

func (a *admin) apiHistory(w http.ResponseWriter, r *http.Request) {
	if a.history == nil {
		adminError(w, r, http.StatusNotFound, "no history: pass axeshttp.AdminHistory to NewAdmin")
		return
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxHistoryLimit {
			adminError(w, r, http.StatusBadRequest, "limit must be a whole number from 1 to 1000")
			return
		}
		limit = n
	}
	q, _, err := parseHistorySearch(r, a.now(), limit)
	if err != nil {
		adminError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	recs, err := a.history.SearchHistory(r.Context(), q)
	if err != nil {
		adminError(w, r, http.StatusServiceUnavailable, "the history could not be searched")
		return
	}
	out := make([]eventView, len(recs))
	for i, rec := range recs {
		v := eventView{Time: rec.Time.UTC(), Kind: rec.Kind, By: rec.By, Reason: rec.Reason, IP: rec.IP,
			Username: rec.Username, UserAgent: rec.UserAgent, Failures: rec.Failures, Count: int(rec.Count)}
		if !rec.Until.IsZero() {
			u := rec.Until.UTC()
			v.Until = &u
		}
		out[i] = v
	}
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, struct {
		Records []eventView `json:"records"`
	}{out})
}

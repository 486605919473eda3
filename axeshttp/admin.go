package axeshttp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/axes-go/axes"
)

//go:embed admin/admin.html admin/admin.css
var adminFS embed.FS

var adminCSS, _ = adminFS.ReadFile("admin/admin.css")

var adminPage = template.Must(template.New("admin.html").Funcs(template.FuncMap{
	"human": func(s *int64) string {
		if s == nil {
			return ""
		}
		return humanSeconds(*s)
	},
}).ParseFS(adminFS, "admin/admin.html"))

// An AdminOption configures the handler returned by Admin.
type AdminOption func(*admin)

// AllowRemote makes the admin serve clients that are not on the loopback
// interface. Use it only behind the application's own authentication and
// authorisation, as in
//
//	mux.Handle("/axes/", requireStaff(http.StripPrefix("/axes", axeshttp.Admin(lim, axeshttp.AllowRemote()))))
//
// where requireStaff refuses every request that is not from a signed-in
// administrator. The CSRF protections stay on.
func AllowRemote() AdminOption { return func(a *admin) { a.remote = true } }

// AdminClock makes the admin compute the time left on locks, and the
// lifetime of its CSRF tokens, from now instead of time.Now. Pass the
// limiter's clock when it has one.
func AdminClock(now func() time.Time) AdminOption {
	return func(a *admin) {
		if now == nil {
			panic("axes: AdminClock(nil)")
		}
		a.now = now
	}
}

// AdminMaxRows bounds the lockouts shown on the HTML page (default 500);
// the JSON API takes a limit parameter instead.
func AdminMaxRows(n int) AdminOption {
	return func(a *admin) {
		if n < 1 {
			panic(fmt.Sprintf("axes: AdminMaxRows(%d) must be positive", n))
		}
		a.maxRows = n
	}
}

// Admin returns an http.Handler for administering lim, the counterpart of
// django-axes' admin pages. Mount it under a path ending in a slash with
// the prefix stripped:
//
//	mux.Handle("/axes/", http.StripPrefix("/axes", axeshttp.Admin(lim)))
//
// It serves:
//
//	GET  /               an HTML page of current lockouts and statistics, with reset buttons
//	GET  /api/lockouts   {"count": n, "lockouts": [...]}; ?limit=N (default 1000)
//	GET  /api/stats      the limiter's Stats
//	POST /api/reset      {"ip": "192.0.2.1"}, {"username": "bob"} or {"all": true}
//	                     → {"reset": n}; Content-Type must be application/json
//	POST /reset          the page's forms; answered with a redirect to the page
//
// Only POST changes state. Every POST is checked with
// http.CrossOriginProtection (Sec-Fetch-Site and Origin); the page's forms
// also carry a token signed with a key drawn for this handler, valid for
// twelve hours, and the JSON API demands the application/json content type,
// which a cross-site form cannot send.
//
// By default the admin refuses, with 403, any client that is not on the
// loopback interface, any request that carries a forwarding header (it came
// through a proxy, whose own address says nothing of the client), and any
// Host that is not a loopback address or "localhost" (against DNS
// rebinding). To serve it to other clients, put it behind the application's
// authentication and pass AllowRemote.
//
// Admin panics if lim is nil or an option is invalid: these are
// programming errors, found at start-up.
func Admin(lim *axes.Limiter, opts ...AdminOption) http.Handler {
	if lim == nil {
		panic("axes: axeshttp.Admin needs a Limiter")
	}
	a := &admin{lim: lim, now: time.Now, maxRows: 500, cop: http.NewCrossOriginProtection()}
	if _, err := rand.Read(a.key[:]); err != nil {
		panic("axes: no randomness for the admin's CSRF key: " + err.Error())
	}
	for _, o := range opts {
		o(a)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.page)
	mux.HandleFunc("GET /assets/admin.css", serveCSS)
	mux.HandleFunc("GET /api/lockouts", a.apiLockouts)
	mux.HandleFunc("GET /api/stats", a.apiStats)
	mux.HandleFunc("POST /api/reset", a.apiReset)
	mux.HandleFunc("POST /reset", a.formReset)
	a.mux = mux
	return a
}

type admin struct {
	lim     *axes.Limiter
	now     func() time.Time
	remote  bool
	maxRows int
	key     [32]byte // signs CSRF tokens
	cop     *http.CrossOriginProtection
	mux     *http.ServeMux
}

const csrfLifetime = 12 * time.Hour

// forwardingHeaders mark a request that came through a proxy.
var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-Ip"}

func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	if !a.remote && !localRequest(r) {
		adminError(w, r, http.StatusForbidden, "the axes admin is only served to loopback clients; see axeshttp.AllowRemote")
		return
	}
	if r.Method == http.MethodPost {
		if err := a.cop.Check(r); err != nil {
			adminError(w, r, http.StatusForbidden, "cross-origin request refused")
			return
		}
	}
	// Under http.StripPrefix("/axes/") the page's path is empty.
	if !strings.HasPrefix(r.URL.Path, "/") {
		r2 := *r
		u := *r.URL
		u.Path = "/" + u.Path
		r2.URL = &u
		r = &r2
	}
	a.mux.ServeHTTP(w, r)
}

// localRequest reports whether r comes straight from a loopback peer,
// addressed to a loopback host.
func localRequest(r *http.Request) bool {
	if !PeerIP(r).IsLoopback() {
		return false
	}
	for _, name := range forwardingHeaders {
		if _, ok := r.Header[name]; ok {
			return false
		}
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().IsLoopback()
	}
	host = strings.ToLower(host)
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

func serveCSS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(adminCSS)
}

// lockoutView is one lockout as the API and the page show it.
type lockoutView struct {
	IP         string     `json:"ip"`
	Username   string     `json:"username"`
	UserAgent  string     `json:"user_agent"`
	By         string     `json:"by"`
	Failures   int        `json:"failures"`
	Until      *time.Time `json:"until"`       // null for a lock with no end
	RetryAfter *int64     `json:"retry_after"` // seconds left; null for no end
	Row        string     `json:"-"`           // the page's reset-row token
}

func (a *admin) views(limit int) ([]lockoutView, int) {
	locks := a.lim.Lockouts()
	now := a.now()
	n := min(len(locks), limit)
	out := make([]lockoutView, 0, n)
	for _, l := range locks[:n] {
		v := lockoutView{
			Username:  l.Username,
			UserAgent: l.UserAgent,
			By:        l.By.String(),
			Failures:  l.Failures,
			Row:       encodeRow(l),
		}
		if l.IP.IsValid() {
			v.IP = l.IP.String()
			if l.IP.IsSingleIP() {
				v.IP = l.IP.Addr().String()
			}
		}
		if !l.Until.IsZero() {
			until := l.Until.UTC()
			s := max(ceilSeconds(l.Until.Sub(now)), 0)
			v.Until, v.RetryAfter = &until, &s
		}
		out = append(out, v)
	}
	return out, len(locks)
}

func (a *admin) apiLockouts(w http.ResponseWriter, r *http.Request) {
	limit := 1000
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			adminError(w, r, http.StatusBadRequest, "limit must be a positive integer")
			return
		}
		limit = n
	}
	views, total := a.views(limit)
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, struct {
		Count    int           `json:"count"`
		Lockouts []lockoutView `json:"lockouts"`
	}{total, views})
}

type statsView struct {
	Entries         int    `json:"entries"`
	Failures        uint64 `json:"failures"`
	Lockouts        uint64 `json:"lockouts"`
	Refused         uint64 `json:"refused"`
	Successes       uint64 `json:"successes"`
	Resets          uint64 `json:"resets"`
	EvictedExpired  uint64 `json:"evicted_expired"`
	EvictedPressure uint64 `json:"evicted_pressure"`
	Overflows       uint64 `json:"overflows"`
	StoreErrors     uint64 `json:"store_errors"`
}

func (a *admin) stats() statsView {
	s := a.lim.Stats()
	return statsView{s.Entries, s.Failures, s.Lockouts, s.Refused, s.Successes, s.Resets,
		s.EvictedExpired, s.EvictedPressure, s.Overflows, s.StoreErrors}
}

func (a *admin) apiStats(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, a.stats())
}

// maxAdminBody bounds the bodies the admin reads.
const maxAdminBody = 16 << 10

func (a *admin) apiReset(w http.ResponseWriter, r *http.Request) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		adminError(w, r, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	var req struct {
		IP       *string `json:"ip"`
		Username *string `json:"username"`
		All      bool    `json:"all"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		adminError(w, r, http.StatusBadRequest, "body must be {\"ip\": ...}, {\"username\": ...} or {\"all\": true}")
		return
	}
	n, err := a.reset(req.IP, req.Username, req.All)
	if err != nil {
		adminError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, struct {
		Reset int `json:"reset"`
	}{n})
}

// reset performs exactly one of the three resets.
func (a *admin) reset(ip, username *string, all bool) (int, error) {
	given := 0
	for _, b := range []bool{ip != nil, username != nil, all} {
		if b {
			given++
		}
	}
	if given != 1 {
		return 0, errors.New("give exactly one of ip, username and all")
	}
	switch {
	case ip != nil:
		addr, err := netip.ParseAddr(strings.TrimSpace(*ip))
		if err != nil {
			return 0, errors.New("ip is not an IP address")
		}
		return a.lim.ResetIP(addr.Unmap().WithZone("")), nil
	case username != nil:
		return a.lim.ResetUsername(*username), nil
	default:
		return a.lim.ResetAll(), nil
	}
}

func (a *admin) formReset(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxAdminBody)
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" {
		adminError(w, r, http.StatusUnsupportedMediaType, "form expected")
		return
	}
	if err := r.ParseForm(); err != nil {
		adminError(w, r, http.StatusBadRequest, "malformed form")
		return
	}
	if !a.validToken(r.PostForm.Get("csrf")) {
		adminError(w, r, http.StatusForbidden, "the form has expired or was not sent by this page; reload the page")
		return
	}
	var (
		n   int
		err error
	)
	switch r.PostForm.Get("action") {
	case "row":
		n, err = a.resetRow(r.PostForm.Get("row"))
	case "ip":
		ip := r.PostForm.Get("ip")
		n, err = a.reset(&ip, nil, false)
	case "username":
		u := r.PostForm.Get("username")
		n, err = a.reset(nil, &u, false)
	case "all":
		n, err = a.reset(nil, nil, true)
	default:
		err = errors.New("unknown action")
	}
	if err != nil {
		adminError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	// A relative Location, so that the redirect works wherever the admin
	// is mounted.
	w.Header().Set("Location", "./?reset="+strconv.Itoa(n))
	w.WriteHeader(http.StatusSeeOther)
}

// encodeRow encodes who a lockout is about, byte for byte, for the page's
// per-row reset button.
func encodeRow(l axes.Lockout) string {
	enc := base64.RawURLEncoding
	ip := ""
	if l.IP.IsValid() {
		ip = l.IP.Addr().String()
	}
	return strconv.Itoa(int(l.By)) + "." + enc.EncodeToString([]byte(ip)) + "." +
		enc.EncodeToString([]byte(l.Username)) + "." + enc.EncodeToString([]byte(l.UserAgent)) + "." +
		l.Digest.String()
}

// resetRow lifts the lockout encoded by encodeRow: a lock by IP alone or by
// username alone resets everything about that IP or username, as
// django-axes' reset by IP or username; a lock by a combination resets the
// dimension of that exact client, by its digest (so that identities cut
// to axes.MaxIdentityBytes still reset exactly).
func (a *admin) resetRow(row string) (int, error) {
	parts := strings.Split(row, ".")
	if len(parts) != 5 {
		return 0, errors.New("malformed row")
	}
	by, err := strconv.Atoi(parts[0])
	if err != nil || by <= 0 || by > int(axes.IP|axes.Username|axes.UserAgent) {
		return 0, errors.New("malformed row")
	}
	var f [3][]byte
	for i := range f {
		if f[i], err = base64.RawURLEncoding.DecodeString(parts[i+1]); err != nil {
			return 0, errors.New("malformed row")
		}
	}
	var k axes.Key
	if len(f[0]) > 0 {
		if k.IP, err = netip.ParseAddr(string(f[0])); err != nil {
			return 0, errors.New("malformed row")
		}
	}
	k.Username, k.UserAgent = string(f[1]), string(f[2])
	switch axes.Fields(by) {
	case axes.IP:
		return a.lim.ResetIP(k.IP), nil
	case axes.Username:
		return a.lim.ResetUsername(k.Username), nil
	default:
		d, err := axes.ParseDigest(parts[4])
		if err != nil {
			return 0, errors.New("malformed row")
		}
		a.lim.ResetLockout(axes.Lockout{By: axes.Fields(by), Digest: d, IP: netip.PrefixFrom(k.IP, k.IP.BitLen()), Username: k.Username, UserAgent: k.UserAgent})
		return 1, nil
	}
}

// token returns a CSRF token valid until now + csrfLifetime:
// "<unix expiry>.<base64 HMAC-SHA256 of it>".
func (a *admin) token() string {
	exp := strconv.FormatInt(a.now().Add(csrfLifetime).Unix(), 10)
	return exp + "." + base64.RawURLEncoding.EncodeToString(a.mac(exp))
}

func (a *admin) mac(exp string) []byte {
	m := hmac.New(sha256.New, a.key[:])
	m.Write([]byte("axes admin csrf\x00" + exp))
	return m.Sum(nil)
}

func (a *admin) validToken(tok string) bool {
	exp, sig, ok := strings.Cut(tok, ".")
	if !ok || len(tok) > 128 {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, a.mac(exp)) {
		return false
	}
	t, err := strconv.ParseInt(exp, 10, 64)
	return err == nil && a.now().Unix() <= t
}

type pageData struct {
	Token    string
	Stats    statsView
	Lockouts []lockoutView
	Total    int
	Shown    int
	Flash    string
	Now      string
}

func (a *admin) page(w http.ResponseWriter, r *http.Request) {
	views, total := a.views(a.maxRows)
	for i := range views {
		views[i].Username = printable(views[i].Username)
		views[i].UserAgent = printable(views[i].UserAgent)
	}
	d := pageData{
		Token:    a.token(),
		Stats:    a.stats(),
		Lockouts: views,
		Total:    total,
		Shown:    len(views),
		Now:      a.now().UTC().Format(time.RFC3339),
	}
	if s := r.URL.Query().Get("reset"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			if n == 1 {
				d.Flash = "Reset 1 entry."
			} else {
				d.Flash = "Reset " + strconv.Itoa(n) + " entries."
			}
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := adminPage.Execute(w, d); err != nil {
		// The header is gone; nothing more can be said to the client.
		return
	}
}

// printable makes s safe to show: invalid UTF-8 and control characters
// become U+FFFD.
func printable(s string) string {
	if utf8.ValidString(s) && strings.IndexFunc(s, isControl) < 0 {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f || r >= 0x80 && r < 0xa0 }

// adminError answers with a JSON error to API paths and clients that
// prefer JSON, and plain text otherwise.
func adminError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if strings.Contains(r.URL.Path, "/api/") || wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		writeJSON(w, struct {
			Error string `json:"error"`
		}{msg})
		return
	}
	http.Error(w, msg, status)
}

// writeJSON writes v; by then the status is sent, so an error (a client gone)
// cannot be reported.
func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

package axeshttp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
)

//go:embed admin/admin.html admin/admin.css
var adminFS embed.FS

var adminCSS, _ = adminFS.ReadFile("admin/admin.css")

var adminPage = template.Must(template.New("admin.html").ParseFS(adminFS, "admin/admin.html"))

// An AdminOption configures the handler returned by NewAdmin.
type AdminOption func(*admin)

// minAdminToken is the shortest token AdminToken accepts, in bytes.
const minAdminToken = 16

// AdminToken makes the admin serve the requests that carry token, either as
// a bearer token (for scripts and curl)
//
//	Authorization: Bearer <token>
//
// or as the password of HTTP Basic authentication, with any user name (a
// browser asks for it when it opens the page). Other requests get 401
// Unauthorized with a WWW-Authenticate challenge for both schemes. The
// token is compared in constant time.
//
// token must be at least 16 bytes of the characters a bearer token may hold
// (letters, digits and -._~+/, then any '='); draw it at random, as
// crypto/rand.Text does, and keep it out of source code. Basic
// authentication sends the token in clear: serve the admin over HTTPS
// unless client and server share the host.
func AdminToken(token string) AdminOption {
	return func(a *admin) {
		switch {
		case token == "":
			a.errs = append(a.errs, errors.New("axes: AdminToken needs a token"))
			return
		case len(token) < minAdminToken:
			a.errs = append(a.errs, fmt.Errorf("axes: AdminToken: the token is %d bytes; it needs at least %d random bytes", len(token), minAdminToken))
			return
		case !isToken68(token):
			a.errs = append(a.errs, errors.New("axes: AdminToken: the token may hold only letters, digits and -._~+/, then '='"))
			return
		}
		sum := sha256.Sum256([]byte(token))
		a.tokenSum = &sum
	}
}

// AdminAuthorize makes the admin serve the requests for which authorize
// returns true, and refuse every other with 403 Forbidden. authorize is the
// application's own check, typically that the request belongs to a
// signed-in administrator:
//
//	admin, err := axeshttp.NewAdmin(lim, axeshttp.AdminAuthorize(func(r *http.Request) bool {
//		u, ok := sessions.User(r) // the application's session
//		return ok && u.IsStaff
//	}))
//
// It is called once for every request the admin receives, before anything
// is read or changed, and may be called concurrently. With AdminToken as
// well, a request is served if it carries the token or authorize returns
// true.
func AdminAuthorize(authorize func(r *http.Request) bool) AdminOption {
	return func(a *admin) {
		if authorize == nil {
			a.errs = append(a.errs, errors.New("axes: AdminAuthorize(nil)"))
		}
		a.authorize = authorize
	}
}

// AdminClock makes the admin compute the time left on locks, and the
// lifetime of its CSRF tokens, from now instead of time.Now. Pass the
// limiter's clock when it has one.
func AdminClock(now func() time.Time) AdminOption {
	return func(a *admin) {
		if now == nil {
			a.errs = append(a.errs, errors.New("axes: AdminClock(nil)"))
		}
		a.now = now
	}
}

// AdminMaxRows bounds the lockouts shown on the HTML page (default 500);
// the JSON API takes a limit parameter instead.
func AdminMaxRows(n int) AdminOption {
	return func(a *admin) {
		if n < 1 {
			a.errs = append(a.errs, fmt.Errorf("axes: AdminMaxRows(%d) must be positive", n))
		}
		a.maxRows = n
	}
}

// AdminActivity makes the page draw the last hour of a's history (failed
// attempts, locks and refusals per minute) and list its recent events, and
// the API serve it at GET /api/activity. a must receive the limiter's
// events: see Activity.
func AdminActivity(a *Activity) AdminOption {
	return func(ad *admin) {
		if a == nil {
			ad.errs = append(ad.errs, errors.New("axes: AdminActivity(nil)"))
		}
		ad.activity = a
	}
}

// NewAdmin returns an http.Handler for administering lim, the counterpart
// of django-axes' admin pages. Mount it under a path ending in a slash with
// the prefix stripped:
//
//	admin, err := axeshttp.NewAdmin(lim, axeshttp.AdminToken(os.Getenv("AXES_ADMIN_TOKEN")))
//	if err != nil {
//		log.Fatal(err)
//	}
//	mux.Handle("/axes/", http.StripPrefix("/axes", admin))
//
// It serves:
//
//	GET  /               an HTML page of current lockouts (one row per client) and statistics,
//	                     with reset buttons, and with AdminActivity the last hour as a chart
//	GET  /api/lockouts   {"count": n, "lockouts": [...]}, one entry per lock; ?limit=N (default 1000)
//	GET  /api/stats      the limiter's Stats
//	GET  /api/activity   with AdminActivity: {"masked": bool, "minutes": [...], "recent": [...]}
//	GET  /api/history    with AdminHistory: {"records": [...]}, searched by ip, username,
//	                     user_agent, hours and limit (at most 1000)
//	POST /api/reset      {"ip": "192.0.2.1"}, {"username": "bob"}, both (Limiter.ResetClient) or {"all": true}
//	                     → {"reset": n}; Content-Type must be application/json
//	POST /reset          the page's forms; answered with a redirect to the page
//
// The page shows one row per locked client (same IP or IPv6 prefix,
// username and user agent) with the dimensions that lock it and the longest
// time left; the row's button lifts exactly that client's locks, by their
// digests, through a token signed with the handler's key.
//
// The admin shows who is attacking and can lift their locks, so it serves
// nobody by default: NewAdmin needs AdminToken, AdminAuthorize or both, and
// checks every request, the page, its stylesheet and every API route alike,
// before anything else. Where the request comes from counts for nothing: a
// reverse proxy on the same host makes every client look local.
//
// Only POST changes state. Every POST is checked with
// http.CrossOriginProtection (Sec-Fetch-Site and Origin); the page's forms
// also carry a token signed with a key drawn for this handler, valid for
// twelve hours, and the JSON API demands the application/json content type,
// which a cross-site form cannot send. So a cross-site page cannot use a
// browser's credentials (a session cookie, Basic authentication) to reset
// locks.
//
// NewAdmin returns an error prefixed "axes:" if lim is nil, no
// authorisation is given, or an option is invalid.
func NewAdmin(lim *axes.Limiter, opts ...AdminOption) (http.Handler, error) {
	if lim == nil {
		return nil, errors.New("axes: axeshttp.NewAdmin needs a Limiter")
	}
	a := &admin{lim: lim, now: time.Now, maxRows: 500, cop: http.NewCrossOriginProtection()}
	for _, o := range opts {
		o(a)
	}
	if err := errors.Join(a.errs...); err != nil {
		return nil, err
	}
	if a.tokenSum == nil && a.authorize == nil {
		return nil, errors.New("axes: axeshttp.NewAdmin needs AdminToken or AdminAuthorize: the admin must not serve anybody who reaches it")
	}
	if _, err := rand.Read(a.key[:]); err != nil {
		return nil, errors.New("axes: no randomness for the admin's CSRF key: " + err.Error())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.page)
	mux.HandleFunc("GET /assets/admin.css", serveCSS)
	mux.HandleFunc("GET /api/lockouts", a.apiLockouts)
	mux.HandleFunc("GET /api/stats", a.apiStats)
	mux.HandleFunc("GET /api/activity", a.apiActivity)
	mux.HandleFunc("GET /api/history", a.apiHistory)
	mux.HandleFunc("POST /api/reset", a.apiReset)
	mux.HandleFunc("POST /reset", a.formReset)
	a.mux = mux
	return a, nil
}

type admin struct {
	lim       *axes.Limiter
	now       func() time.Time
	tokenSum  *[sha256.Size]byte // SHA-256 of the AdminToken; nil for none
	authorize func(*http.Request) bool
	maxRows   int
	activity  *Activity // nil for none
	history   History   // nil for none
	key       [32]byte  // signs CSRF and row tokens
	cop       *http.CrossOriginProtection
	mux       *http.ServeMux
	errs      []error // from the options
}

const csrfLifetime = 12 * time.Hour

// adminRealm names the admin in authentication challenges.
const adminRealm = `realm="axes admin"`

func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	if !a.authorized(r) {
		if a.tokenSum != nil {
			h.Add("WWW-Authenticate", "Basic "+adminRealm+`, charset="UTF-8"`)
			h.Add("WWW-Authenticate", "Bearer "+adminRealm)
			adminError(w, r, http.StatusUnauthorized, "the axes admin needs its token")
			return
		}
		adminError(w, r, http.StatusForbidden, "forbidden")
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

// authorized reports whether r carries the admin's token or passes the
// application's check.
func (a *admin) authorized(r *http.Request) bool {
	if a.tokenSum != nil {
		if tok, ok := requestToken(r); ok && a.tokenMatches(tok) {
			return true
		}
	}
	return a.authorize != nil && a.authorize(r)
}

// tokenMatches reports whether tok is the admin's token. It compares
// SHA-256 digests, so that the time taken depends on neither the token's
// length nor how much of it tok gets right.
func (a *admin) tokenMatches(tok string) bool {
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) == 1
}

// requestToken returns the bearer token of r, or the password of its Basic
// authentication.
func requestToken(r *http.Request) (string, bool) {
	auth := r.Header.Get("Authorization")
	if scheme, tok, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(tok), true
	}
	if _, password, ok := r.BasicAuth(); ok {
		return password, true
	}
	return "", false
}

// isToken68 reports whether s has the syntax of RFC 7235's token68, that
// of a bearer token.
func isToken68(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			return false
		}
	}
	return true
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
	SketchFolds     uint64 `json:"sketch_folds"`
	SketchDecisions uint64 `json:"sketch_decisions"`
	IdentitiesOver  uint64 `json:"identities_over_budget"`
	StoreErrors     uint64 `json:"store_errors"`
	Degraded        bool   `json:"degraded"`
	Degradations    uint64 `json:"degradations"`
}

func (a *admin) stats() statsView {
	s := a.lim.Stats()
	return statsView{
		Entries:         s.Entries,
		Failures:        s.Failures,
		Lockouts:        s.Lockouts,
		Refused:         s.Refused,
		Successes:       s.Successes,
		Resets:          s.Resets,
		EvictedExpired:  s.EvictedExpired,
		EvictedPressure: s.EvictedPressure,
		Overflows:       s.Overflows,
		SketchFolds:     s.SketchFolds,
		SketchDecisions: s.SketchDecisions,
		IdentitiesOver:  s.IdentitiesOverBudget,
		StoreErrors:     s.StoreErrors,
		Degraded:        s.Degraded,
		Degradations:    s.Degradations,
	}
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
		adminError(w, r, http.StatusBadRequest, "body must be {\"ip\": ...}, {\"username\": ...}, both, or {\"all\": true}")
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

// reset forgets an IP's state, a username's, a client's (both given: every
// dimension of the attempt {ip, username} that has no user agent, which is
// what would refuse that client's next attempt), or everything.
func (a *admin) reset(ip, username *string, all bool) (int, error) {
	if all == (ip != nil || username != nil) {
		return 0, errors.New("give ip, username, both, or all alone")
	}
	var addr netip.Addr
	if ip != nil {
		var err error
		addr, err = netip.ParseAddr(strings.TrimSpace(*ip))
		if err != nil {
			return 0, errors.New("ip is not an IP address")
		}
		addr = addr.Unmap().WithZone("")
	}
	switch {
	case ip != nil && username != nil:
		return a.lim.ResetClient(addr, *username), nil
	case ip != nil:
		return a.lim.ResetIP(addr), nil
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

// maxRowLocks bounds the locks of one row token: a client has at most one
// lock per dimension.
const maxRowLocks = 8

// encodeRow encodes a row of the page, the locks of one client, for its
// reset button: who the client is (for the reset events) and each lock's
// dimension and digest, signed with the admin's key so that a row token
// the page did not make is refused:
//
//	<ip>.<username>.<user agent>.<by>-<digest>,<by>-<digest>….<HMAC-SHA256>
//
// each field in unpadded base64url but the locks.
func (a *admin) encodeRow(locks []axes.Lockout) string {
	enc := base64.RawURLEncoding
	first := locks[0]
	ip := ""
	if first.IP.IsValid() {
		ip = first.IP.Addr().String()
	}
	var b strings.Builder
	b.WriteString(enc.EncodeToString([]byte(ip)))
	b.WriteByte('.')
	b.WriteString(enc.EncodeToString([]byte(first.Username)))
	b.WriteByte('.')
	b.WriteString(enc.EncodeToString([]byte(first.UserAgent)))
	b.WriteByte('.')
	for i, l := range locks {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(l.By)))
		b.WriteByte('-')
		b.WriteString(l.Digest.String())
	}
	payload := b.String()
	return payload + "." + enc.EncodeToString(a.rowMAC(payload))
}

func (a *admin) rowMAC(payload string) []byte {
	m := hmac.New(sha256.New, a.key[:])
	m.Write([]byte("axes admin row\x00" + payload))
	return m.Sum(nil)
}

// resetRow lifts exactly the locks of a row token from encodeRow, by their
// digests (so that identities cut to axes.MaxIdentityBytes still reset
// exactly), and leaves the client's other dimensions, and other clients, as
// they are. It refuses a token whose signature does not match.
func (a *admin) resetRow(row string) (int, error) {
	malformed := errors.New("malformed row; reload the page")
	if len(row) > maxAdminBody {
		return 0, malformed
	}
	i := strings.LastIndexByte(row, '.')
	if i < 0 {
		return 0, malformed
	}
	payload := row[:i]
	sig, err := base64.RawURLEncoding.DecodeString(row[i+1:])
	if err != nil || !hmac.Equal(sig, a.rowMAC(payload)) {
		return 0, malformed
	}
	parts := strings.Split(payload, ".")
	if len(parts) != 4 {
		return 0, malformed
	}
	var f [3][]byte
	for i := range f {
		if f[i], err = base64.RawURLEncoding.DecodeString(parts[i]); err != nil {
			return 0, malformed
		}
	}
	var ip netip.Prefix
	if len(f[0]) > 0 {
		addr, err := netip.ParseAddr(string(f[0]))
		if err != nil {
			return 0, malformed
		}
		ip = netip.PrefixFrom(addr, addr.BitLen())
	}
	var locks [maxRowLocks]axes.Lockout
	n := 0
	for lock := range strings.SplitSeq(parts[3], ",") {
		by, digest, ok := strings.Cut(lock, "-")
		b, err := strconv.Atoi(by)
		if !ok || err != nil || b <= 0 || b > int(axes.IP|axes.Username|axes.UserAgent) || n == maxRowLocks {
			return 0, malformed
		}
		d, err := store.ParseDigest(digest)
		if err != nil {
			return 0, malformed
		}
		locks[n] = axes.Lockout{By: axes.Fields(b), Digest: d, IP: ip, Username: string(f[1]), UserAgent: string(f[2])}
		n++
	}
	for _, l := range locks[:n] {
		a.lim.ResetLockout(l)
	}
	return n, nil
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

func (a *admin) page(w http.ResponseWriter, r *http.Request) {
	now := a.now()
	locks := a.lim.Lockouts()
	rows, clients := a.rows(locks, a.maxRows)
	d := pageData{
		Token:   a.token(),
		Stats:   a.stats(),
		Rows:    rows,
		Locks:   len(locks),
		Clients: clients,
		Shown:   len(rows),
		Now:     now.UTC().Format(pageTimeFormat),
		NowISO:  now.UTC().Format(isoFormat),
	}
	if a.activity != nil {
		d.Activity = a.chart(now)
		d.Recent, d.Events = a.recentRows()
		d.MaskNotes = a.activity.Masked()
	}
	if a.history != nil {
		a.historyRows(r, &d)
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

type minuteView struct {
	Start    time.Time `json:"start"`
	Failures int       `json:"failures"`
	Lockouts int       `json:"lockouts"`
	Refused  int       `json:"refused"`
}

type eventView struct {
	Time      time.Time  `json:"time"`
	Kind      string     `json:"kind"`
	By        string     `json:"by,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	IP        string     `json:"ip,omitempty"`
	Username  string     `json:"username,omitempty"`
	UserAgent string     `json:"user_agent,omitempty"`
	Failures  int        `json:"failures"`
	Until     *time.Time `json:"until,omitempty"` // lockout and refused: when the lock ends; absent for no end
	Count     int        `json:"count,omitempty"`
}

func (a *admin) apiActivity(w http.ResponseWriter, r *http.Request) {
	if a.activity == nil {
		adminError(w, r, http.StatusNotFound, "no activity history: pass axeshttp.AdminActivity to NewAdmin")
		return
	}
	mins := a.activity.Minutes(a.now())
	recent := a.activity.Recent()
	resp := struct {
		Masked  bool         `json:"masked"`
		Minutes []minuteView `json:"minutes"`
		Recent  []eventView  `json:"recent"`
	}{a.activity.Masked(), make([]minuteView, len(mins)), make([]eventView, len(recent))}
	for i, m := range mins {
		resp.Minutes[i] = minuteView(m)
	}
	for i, e := range recent {
		v := eventView{Time: e.Time.UTC(), Kind: e.Kind.String(), IP: e.IP, Username: e.Username, UserAgent: e.UserAgent, Failures: e.Failures, Count: e.Count}
		if e.By != 0 {
			v.By = e.By.String()
		}
		if e.Kind == axes.EventRefused {
			v.Reason = e.Reason.String()
		}
		if !e.Until.IsZero() {
			u := e.Until.UTC()
			v.Until = &u
		}
		resp.Recent[i] = v
	}
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, resp)
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

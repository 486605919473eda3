package demo

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axeshttp"
	"github.com/axes-go/axes/store"
)

// DefaultSecret is the digest secret the demo uses when none is given. Two
// demo processes sharing a Redis store must use the same secret; a fixed
// default lets them do so out of the box. A real deployment draws its own
// and keeps it out of source code.
const DefaultSecret = "axesdemo-shared-secret-change-me"

// Policy returns the demo's lockout policy: five failures lock the client
// IP, and separately the username, whatever IP the attempts came from. A lock
// lasts 5 minutes, doubling with every further lock of the same dimension up
// to 4 hours (the level is forgotten after 24 quiet hours), and failures are
// forgotten 15 minutes after the last one.
//
// A combination such as axes.IP|axes.Username would add nothing here: under
// one limit it never reaches the limit before the IP alone does.
//
// Password-spray detection locks an IP for an hour once 4 distinct
// usernames have failed from it within the hour, before its own limit.
func Policy() axes.Policy {
	return axes.Policy{
		Limit:     5,
		LockoutBy: []axes.Fields{axes.IP, axes.Username},
		Cooloff:   axes.Backoff{Base: 5 * time.Minute, Factor: 2, Max: 4 * time.Hour},
		Window:    15 * time.Minute,
		Spray:     axes.Spray{Limit: 4, Window: time.Hour, Cooloff: time.Hour},
	}
}

// Config configures a Server. The zero value is usable: it listens on
// 127.0.0.1:8080 with the memory store, the real clock and the demo
// accounts, and trusts X-Forwarded-For from loopback.
type Config struct {
	// Addr is the address to listen on; default "127.0.0.1:8080". Use
	// "127.0.0.1:0" for a free port.
	Addr string

	// Now is the limiter's clock; default time.Now.
	Now func() time.Time

	// Store keeps the limiter's state; nil means the memory store.
	Store store.Store

	// Secret keys the limiter's digests; default DefaultSecret. Processes
	// that share a Store must use the same secret.
	Secret []byte

	// TrustedProxies are the proxies whose X-Forwarded-For header is
	// believed; empty means 127.0.0.1 and ::1, as if a reverse proxy ran on
	// the same host. The attack simulation relies on it to play many
	// clients.
	TrustedProxies axes.IPSet

	// Accounts are the users who may log in; default DemoAccounts.
	Accounts []Account

	// Logger, if set, receives the limiter's lockouts and refusals.
	Logger *slog.Logger

	// AdminToken opens the admin pages and API (see axeshttp.AdminToken):
	// send it as "Authorization: Bearer <token>", or as the password of the
	// browser's sign-in prompt, with any user name. Empty means a random
	// token, drawn for this server; Server.AdminToken returns it.
	AdminToken string

	// MaxLedger is the number of password checks and lockouts the server
	// records for Ledger; 0 records none. Counters are kept regardless.
	MaxLedger int
}

// Server is the demo login server: a login page and form handler behind the
// axeshttp middleware, and the axes admin.
type Server struct {
	lim      *axes.Limiter
	policy   axes.Policy
	now      func() time.Time
	resolver *axeshttp.Resolver
	pw       *passwords
	accounts []Account
	adminTok string
	http     *http.Server
	ln       net.Listener
	served   chan error

	counters counters
	ledger   ledger
	devices  *axeshttp.Devices
}

// counters are the server's running figures.
type counters struct {
	checks    atomic.Uint64    // password checks
	logins    atomic.Uint64    // password checks that succeeded
	lockouts  [8]atomic.Uint64 // locks started, by the Fields of the dimension
	refused   [8]atomic.Uint64 // refused attempts, by axes.Reason
	failures  atomic.Uint64    // failures counted by the limiter (one per attempt)
	successes atomic.Uint64    // successes recorded by the limiter
}

// NewServer returns a Server for cfg, not yet listening.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Secret == nil {
		cfg.Secret = []byte(DefaultSecret)
	}
	if cfg.TrustedProxies.IsEmpty() {
		cfg.TrustedProxies = axes.MustParseIPSet("127.0.0.1", "::1")
	}
	if cfg.Accounts == nil {
		cfg.Accounts = DemoAccounts
	}
	if cfg.AdminToken == "" {
		cfg.AdminToken = rand.Text()
	}
	if cfg.MaxLedger < 0 {
		return nil, fmt.Errorf("axesdemo: MaxLedger %d is negative", cfg.MaxLedger)
	}
	s := &Server{now: cfg.Now, pw: newPasswords(cfg.Accounts), accounts: cfg.Accounts, adminTok: cfg.AdminToken}
	s.ledger.max = cfg.MaxLedger

	var logEvent func(axes.Event)
	if cfg.Logger != nil {
		// Raw identities so that the terminal shows who is locked out; a
		// production log should keep LogEvents' default masking.
		logEvent = axes.LogEvents(cfg.Logger, axes.LogRawIdentity())
	}
	s.policy = Policy()
	s.policy.OnEvent = func(e axes.Event) {
		s.observe(e)
		if logEvent != nil {
			logEvent(e)
		}
	}
	opts := []axes.Option{axes.WithClock(cfg.Now), axes.WithSecret(cfg.Secret)}
	if cfg.Store != nil {
		opts = append(opts, axes.WithStore(cfg.Store))
	}
	lim, err := axes.New(s.policy, opts...)
	if err != nil {
		return nil, err
	}
	s.lim = lim
	s.resolver, err = axeshttp.NewResolver(axeshttp.Proxies{Header: "X-Forwarded-For", Trusted: cfg.TrustedProxies})
	if err != nil {
		lim.Close()
		return nil, err
	}
	// Device cookies: a browser that signed in before is trusted for its
	// user, and keeps signing in while bots hold the username locked. The
	// key is derived from the shared secret, so that servers sharing Redis
	// trust each other's cookies; the demo serves plain HTTP on loopback,
	// hence an Insecure cookie without the __Host- prefix.
	deviceKey := sha256.Sum256(append([]byte("axesdemo device cookies\x00"), cfg.Secret...))
	devices, err := axeshttp.NewDevices(axeshttp.DeviceConfig{
		Keys: [][]byte{deviceKey[:]}, Name: "axesdemo-device", Insecure: true, Now: cfg.Now,
	})
	if err != nil {
		lim.Close()
		return nil, err
	}
	s.devices = devices
	protect, err := axeshttp.New(lim,
		axeshttp.WithResolver(s.resolver),
		axeshttp.RateLimitFields("login", s.policy.Window),
		axeshttp.WithDevices(devices),
	)
	if err != nil {
		lim.Close()
		return nil, err
	}
	admin, err := axeshttp.NewAdmin(lim, axeshttp.AdminToken(cfg.AdminToken), axeshttp.AdminClock(cfg.Now))
	if err != nil {
		lim.Close()
		return nil, err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /login", s.loginPage)
	mux.Handle("POST /login", protect(http.HandlerFunc(s.login)))
	mux.Handle("/admin/", http.StripPrefix("/admin", admin))

	s.http = &http.Server{
		Addr:              cfg.Addr,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	return s, nil
}

// Start listens on the configured address and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.http.Addr)
	if err != nil {
		return err
	}
	s.ln = ln
	s.served = make(chan error, 1)
	go func() { s.served <- s.http.Serve(ln) }()
	return nil
}

// URL returns the base URL of the server, such as "http://127.0.0.1:8080".
// It is empty before Start.
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Wait blocks until the server stops serving, and returns why (nil after
// Shutdown).
func (s *Server) Wait() error {
	if s.served == nil {
		return errors.New("axesdemo: server not started")
	}
	err := <-s.served
	s.served <- err // for later callers
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the server gracefully and closes the limiter.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	if s.ln != nil {
		err = s.http.Shutdown(ctx)
	}
	return errors.Join(err, s.lim.Close())
}

// AdminToken returns the token that opens the server's admin (see
// Config.AdminToken).
func (s *Server) AdminToken() string { return s.adminTok }

// Limiter returns the server's limiter.
func (s *Server) Limiter() *axes.Limiter { return s.lim }

// Policy returns the policy the server's limiter applies.
func (s *Server) Policy() axes.Policy { return s.policy }

// observe counts the limiter's events and records lockouts in the ledger.
func (s *Server) observe(e axes.Event) {
	switch e.Kind {
	case axes.EventLockout:
		s.counters.lockouts[e.By&7].Add(1)
		s.ledger.add(Record{Kind: RecordLockout, At: e.Time, Until: e.Until, By: e.By,
			IP: groupIP(e.Key.IP, s.policy.IPv6Prefix), Username: axes.DefaultNormalizeUsername(e.Key.Username), Device: e.Key.Device})
	case axes.EventRefused:
		s.counters.refused[e.Reason&7].Add(1)
	case axes.EventFailure:
		// One event per dimension: count attempts once, by the first
		// dimension of the policy.
		if e.By == s.policy.LockoutBy[0] {
			s.counters.failures.Add(1)
		}
	case axes.EventSuccess:
		s.counters.successes.Add(1)
	}
}

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>axes demo: sign in</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1f2933}
form{display:grid;gap:.6rem;margin:1.5rem 0}input,button{font:inherit;padding:.4rem .6rem}
.err{color:#a61b1b}.ok{color:#1b6e20}table{border-collapse:collapse}td,th{padding:.2rem .8rem;text-align:left;border-bottom:1px solid #dde}
code{background:#f3f4f6;padding:0 .2rem}
</style></head><body>
<h1>axes demo</h1>
{{if .Welcome}}<p class="ok">Welcome, {{.Welcome}}. You are signed in.</p><p><a href="/login">Back to the login page</a></p>{{else}}
{{if .Error}}<p class="err">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<label>Username <input name="username" autocomplete="username" value="{{.Username}}" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button>Sign in</button>
</form>{{end}}
<h2>Demo accounts</h2>
<table><tr><th>username</th><th>password</th></tr>
{{range .Accounts}}<tr><td><code>{{.Username}}</code></td><td><code>{{.Password}}</code></td></tr>{{end}}</table>
<p>Five failed attempts lock the client IP, and the username, for 5 minutes; every further lock
doubles, up to 4 hours. Try a wrong password five times, then see <a href="/admin/">the admin page</a>
(any user name, and the admin token the server printed when it started as the password).</p>
</body></html>
`))

type loginView struct {
	Welcome  string
	Error    string
	Username string
	Accounts []Account
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, loginView{Accounts: s.accounts})
}

// maxLoginBody bounds a login form; the middleware has already refused
// larger bodies, this is the handler's own guard.
const maxLoginBody = 16 << 10

// login checks a submitted username and password. The middleware has
// reserved the attempt; login settles it with axeshttp.Failed or Succeeded.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	name, password := r.PostFormValue("username"), r.PostFormValue("password")
	ok := s.pw.check(name, password)
	s.counters.checks.Add(1)
	device, _ := s.devices.Verify(r, name) // as the middleware counted the attempt
	s.ledger.add(Record{Kind: RecordCheck, At: s.now(), OK: ok,
		IP: groupIP(s.resolver.ClientIP(r), s.policy.IPv6Prefix), Username: axes.DefaultNormalizeUsername(name), Device: device})
	if ok {
		s.counters.logins.Add(1)
		axeshttp.Succeeded(r)
		s.render(w, http.StatusOK, loginView{Welcome: name, Accounts: s.accounts})
		return
	}
	v := axeshttp.Failed(r)
	msg := "Invalid username or password."
	if v.Locked {
		msg += " Too many failed attempts: try again in " + v.RetryAfter.Round(time.Second).String() + "."
	}
	s.render(w, http.StatusUnauthorized, loginView{Error: msg, Username: name, Accounts: s.accounts})
}

func (s *Server) render(w http.ResponseWriter, status int, v loginView) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_ = loginTmpl.Execute(w, v)
}

// Counts are a snapshot of the server's figures.
type Counts struct {
	Checks        uint64                 // password checks performed
	Logins        uint64                 // password checks that succeeded
	Failures      uint64                 // failed attempts the limiter counted
	Successes     uint64                 // successful logins the limiter recorded
	LockoutsBy    map[axes.Fields]uint64 // locks started, by dimension
	RefusedBy     map[axes.Reason]uint64 // attempts refused before the password check, by reason
	LedgerDropped uint64                 // records not kept because the ledger was full
}

// Counts returns the server's figures.
func (s *Server) Counts() Counts {
	c := Counts{
		Checks:     s.counters.checks.Load(),
		Logins:     s.counters.logins.Load(),
		Failures:   s.counters.failures.Load(),
		Successes:  s.counters.successes.Load(),
		LockoutsBy: map[axes.Fields]uint64{},
		RefusedBy:  map[axes.Reason]uint64{},
	}
	for i := range s.counters.lockouts {
		if n := s.counters.lockouts[i].Load(); n > 0 {
			c.LockoutsBy[axes.Fields(i)] = n
		}
	}
	for i := range s.counters.refused {
		if n := s.counters.refused[i].Load(); n > 0 {
			c.RefusedBy[axes.Reason(i)] = n
		}
	}
	s.ledger.mu.Lock()
	c.LedgerDropped = s.ledger.dropped
	s.ledger.mu.Unlock()
	return c
}

// RecordKind says what a Record is.
type RecordKind uint8

// The kinds of Record.
const (
	RecordCheck   RecordKind = iota + 1 // a password check
	RecordLockout                       // a dimension became locked
)

// Record is one entry of the server's ledger: a password check, or a lock
// that started.
type Record struct {
	Kind     RecordKind
	At       time.Time    // the limiter's clock
	IP       netip.Prefix // the client, grouped as the policy groups it
	Username string       // normalised
	OK       bool         // RecordCheck: the password was right
	By       axes.Fields  // RecordLockout: the dimension locked
	Until    time.Time    // RecordLockout: when the lock ends; zero for none
	Device   string       // the trusted device of the attempt, if any
}

// ledger is a bounded log of Records.
type ledger struct {
	mu      sync.Mutex // protects recs and dropped
	max     int
	recs    []Record
	dropped uint64
}

func (l *ledger) add(r Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recs) >= l.max {
		if l.max > 0 {
			l.dropped++
		}
		return
	}
	l.recs = append(l.recs, r)
}

// Ledger returns a copy of the records kept so far, in the order they were
// made (see Config.MaxLedger).
func (s *Server) Ledger() []Record {
	s.ledger.mu.Lock()
	defer s.ledger.mu.Unlock()
	return append([]Record(nil), s.ledger.recs...)
}

// groupIP returns a as the prefix the limiter counts it by: the address
// itself for IPv4, its /bits prefix for IPv6 (bits 0 means 64).
func groupIP(a netip.Addr, bits int) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	if bits == 0 {
		bits = 64
	}
	p, _ := a.WithZone("").Prefix(bits)
	return p
}

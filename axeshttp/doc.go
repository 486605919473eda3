// Package axeshttp puts an axes.Limiter in front of net/http login handlers,
// as django-axes' middleware and admin do for Django.
//
// It has three parts:
//
//   - Resolver finds the client IP of a request: by default the socket peer
//     only, and a forwarding header (X-Forwarded-For, Forwarded, X-Real-IP or
//     a CDN's header) only when written by proxies the application trusts.
//   - New returns middleware for login routes. It builds the axes.Key of each
//     attempt (client IP, username, user agent), reserves the attempt with
//     Limiter.Begin, refuses locked clients with a 429 response, and settles
//     the reservation when the handler reports the outcome with Failed or
//     Succeeded, or else from the response status.
//   - NewAdmin returns an http.Handler with a JSON API and an HTML page that
//     list current lockouts and statistics and reset them, for the requests
//     the application authorises (AdminToken, AdminAuthorize).
//
// The package uses only the standard library and package axes. The README
// of the repository, https://github.com/axes-go/axes, introduces axes as a
// whole; this page is the reference for HTTP.
//
// # The middleware
//
//	lim := axes.Must(axes.New(axes.Policy{
//		Limit:     5,
//		LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username},
//	}))
//	protect := axeshttp.Must(axeshttp.New(lim)) // username from the form field "username"
//
//	mux.Handle("POST /login", protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//		if !checkPassword(r.PostFormValue("username"), r.PostFormValue("password")) {
//			axeshttp.Failed(r) // returns the verdict: Locked if this failure locked the client
//			http.Error(w, "wrong username or password", http.StatusUnauthorized)
//			return
//		}
//		axeshttp.Succeeded(r)
//		startSession(w, r)
//	})))
//
// For each counted request the middleware builds the axes.Key (client IP,
// username, User-Agent), reserves the attempt with Limiter.Begin (so
// however many requests race, at most Limit reach the password check),
// refuses a locked client without calling the handler, and settles the
// reservation:
//
//   - by the handler's report, [Failed] or [Succeeded] (the first report
//     counts);
//   - with no report, by the response status: 2xx and 3xx are successes,
//     everything else (401, 403, but also 400 and 5xx) a failure, so that no
//     kind of response yields an uncounted guess. [SuccessStatus] changes
//     the rule;
//   - a handler that panics settles as a failure, and the panic goes on.
//
// GET, HEAD and OPTIONS pass through uncounted ([PassThrough] changes the
// list; PassThrough() counts everything). A pass-through request reaches the
// handler without a body, without the username field in its query
// ([FormField]) and without its Authorization header ([BasicAuth]), so that
// a handler registered without a method cannot check the password of
// GET /login?username=…&password=… uncounted. With [UsernameFunc] or no
// username the middleware cannot know which fields carry a credential:
// register the login handler for POST only ("POST /login"), or use
// PassThrough().
//
// Options, and their defaults:
//
//   - [WithUsername] with [FormField](name), [JSONField](name), [BasicAuth]()
//     or [UsernameFunc](f): where the username is read. Default
//     FormField("username").
//   - [MaxBodyBytes](n): the body is read whole to find the username; larger
//     bodies get 413 and are not counted. Default 64 KiB.
//   - [WithResolver](r): how the client IP is found (see below). Default the
//     socket peer.
//   - [LockoutStatus](code) or [LockoutHandler](func(w, r, axes.Verdict)):
//     the refusal. Default 429.
//   - [LockoutJSON](): answer refusals in JSON always.
//   - [RateLimitFields](name, window): the IETF RateLimit-Policy and
//     RateLimit fields. Default off.
//
// These cover django-axes' AXES_USERNAME_FORM_FIELD, AXES_NEVER_LOCKOUT_GET,
// AXES_HTTP_RESPONSE_CODE, AXES_LOCKOUT_CALLABLE, AXES_CLIENT_IP_CALLABLE and
// AXES_IPWARE_* settings.
//
// # The username counted is the one the handler checks
//
// If the middleware counted one name while the handler read another, an
// attacker would guess one account's password under ever new names. So
// [FormField] and [JSONField] read the whole body first (at most
// [MaxBodyBytes], whatever the method and content type), then read the
// username with the handler's own parser, and put the body back byte for
// byte:
//
//   - FormField parses the form with net/http's ParseForm and
//     ParseMultipartForm (FormValue's memory bound) and leaves it parsed, so
//     the handler's FormValue, PostFormValue and ParseForm are no-ops that
//     read exactly what was counted. (A handler that streams with
//     MultipartReader must read MultipartForm instead.)
//   - JSONField decodes the body with json.Unmarshal into a struct with one
//     string field tagged with the name: what a handler's json.Unmarshal or
//     json.Decoder reads into its struct (case-insensitive names, the last
//     one wins, null leaves the field alone).
//
// A request on which the two could differ never reaches the handler and is
// not counted: 413 for a body over MaxBodyBytes (or a url-encoded body over
// net/http's own 10 MB bound); 400 for a body that breaks off (a client that
// announces more bytes than it sends), a form or JSON body that does not
// parse (a non-string username, trailing data after the JSON value), or a
// username on which FormValue, PostFormValue and the URL query disagree. In
// particular FormField wants the username in the body:
// POST /login?username=bob with no username in the form, a multipart body
// that names another user than the query, or a DELETE whose url-encoded body
// net/http does not parse while its query names a user, are all 400.
//
// # Lockout response
//
// Status 429, Retry-After in whole seconds of the time remaining (rounded
// up; absent for a lock with no end), a JSON body for clients that prefer
// JSON (Accept, or a JSON request whose Accept is absent or only */*, as
// curl and fetch() send) and a small HTML page otherwise; [LockoutJSON]
// answers JSON always. A store failure is answered 503. The response depends
// only on the time left, never on the username, so it cannot tell anyone
// whether an account exists.
//
// # gin, echo, chi and Fiber
//
// The middleware is a plain func(http.Handler) http.Handler; the module
// github.com/axes-go/axes/examples shows it in each framework as a tested
// example:
//
//   - gin: r.POST("/login", gin.WrapH(protect(handler))), the handler
//     reading c.PostForm and reporting with axeshttp.Failed(c.Request) or
//     axeshttp.Succeeded(c.Request).
//   - echo: e.POST("/login", login, echo.WrapMiddleware(protect)),
//     reporting on c.Request().
//   - chi: r.With(protect).Post("/login", handler).
//   - Fiber runs on fasthttp, not net/http: it needs an adapter (Fiber's
//     adaptor package) and loses the guarantee that the middleware and the
//     handler read the same parsed form; prefer calling Limiter.Begin in the
//     Fiber handler itself.
//
// In each, leave the framework's own client-IP rewriting out of the login
// route (chi's middleware.RealIP, echo's IPExtractor, gin's ClientIP with
// trusted proxies): axes resolves the IP from the socket, or from the
// proxies named in [Proxies]. The next section says why.
//
// # Client IP and trusted proxies
//
// Never trust X-Forwarded-For (or Forwarded, X-Real-IP, CF-Connecting-IP, …)
// from just anybody: every client can send any value, and an attacker who
// picks its own "IP" for every attempt is never locked out, or locks out
// whoever it names. A forwarding header is evidence only when your proxy
// wrote it. By default axeshttp uses the socket peer and ignores every
// header.
//
// The same goes for whatever sits in front of axes. A middleware that
// rewrites r.RemoteAddr from headers hands axes the address the client
// chose, and the IP helpers of web frameworks believe headers by default:
//
//   - chi: middleware.RealIP sets RemoteAddr from True-Client-IP, X-Real-IP
//     or the first X-Forwarded-For entry, sent by anybody. Do not put it
//     before axes: mount it only on the routes that need it, and let axes
//     read the proxies' header with Proxies (see the code below).
//   - echo leaves RemoteAddr alone, but in v4 c.RealIP() believes
//     X-Forwarded-For and X-Real-IP from any client unless e.IPExtractor is
//     set (v5.1 uses the peer), and echo.ExtractIPFromXFFHeader() trusts
//     loopback, link-local and private ranges unless told otherwise. Never
//     build an axes.Key from c.RealIP() under those defaults: set
//     e.IPExtractor = echo.ExtractIPDirect() (or an extractor listing exactly
//     your proxies), or mount axes with
//     e.POST("/login", login, echo.WrapMiddleware(protect)) and report the
//     outcome with axeshttp.Failed(c.Request()) (an error returned to echo is
//     written after the middleware has settled the attempt).
//   - gin leaves RemoteAddr alone, but trusts every proxy until
//     SetTrustedProxies is called, so c.ClientIP() is whatever the client put
//     in X-Forwarded-For. Call router.SetTrustedProxies(nil) (the peer) or
//     list exactly your proxies; or take the IP from axes:
//     axes.Key{IP: res.ClientIP(c.Request), ...} with the [Resolver] below.
//
// With chi:
//
//	r := chi.NewRouter()                     // no r.Use(middleware.RealIP) here
//	r.With(protect).Post("/login", login)    // protect: New(lim, WithResolver(res)), as below
//	r.With(middleware.RealIP).Get("/", home) // only where a forged address harms nothing
//
// Behind a reverse proxy or load balancer, name the proxies:
//
//	proxies, err := axes.ParseIPSet("10.0.0.0/8", "fd00::/8") // your proxies' addresses
//	res, err := axeshttp.NewResolver(axeshttp.Proxies{Header: "X-Forwarded-For", Trusted: proxies})
//	protect := axeshttp.Must(axeshttp.New(lim, axeshttp.WithResolver(res)))
//
// The header is honoured only when the socket peer is one of the trusted
// proxies. It is read right to left (the proxies append, so the right end is
// the part a client cannot forge), skipping trusted hops; the first address
// that is not a trusted proxy is the client. Anything malformed on that walk
// ("unknown", a hostname, an empty element, broken Forwarded syntax) gives
// the peer, never a guess. Entries to the left of the client, where
// forgeries live, are never looked at, so
// "X-Forwarded-For: <anything>, 203.0.113.7" from a client at 203.0.113.7
// resolves to 203.0.113.7. Ports, brackets, IPv6 zones and IPv4-mapped IPv6
// are handled (a zone holding ':', '/', '[' or ']', which no interface name
// does, makes the entry invalid: "::ffff:0:1%:" gives the peer, not
// 0.0.0.1); the cost is linear in the header (a binary search of Trusted per
// entry) and allocation free, whatever its size. [NewResolver] refuses a
// Header with neither Trusted nor Hops: it would be believed from anybody.
//
//   - Header "Forwarded" reads RFC 7239 for= nodes (quoted strings and
//     obfuscated ports understood).
//   - Header "X-Real-IP" or "CF-Connecting-IP" (any other name) reads one
//     address that the proxy sets; two copies of the header give the peer.
//   - Hops: n (with X-Forwarded-For or Forwarded) is for proxies whose
//     addresses you do not know, such as some cloud load balancers: exactly n
//     proxies append, so the client is the n-th entry from the right. Without
//     Trusted it believes the header of whoever connects, so it requires a
//     network that refuses every direct connection to the application (a
//     firewall or security group that admits the load balancer alone): a
//     client that reaches the application directly writes the header itself
//     and picks its address for every attempt. Get n wrong and clients can
//     choose their address too; prefer Trusted.
//   - Only list proxies that overwrite or append to the header. A CDN's
//     header is trustworthy only if the origin accepts connections from the
//     CDN alone (list its ranges in Trusted).
//
// Package axesgrpc applies exactly these rules to gRPC metadata.
//
// # Admin
//
// [NewAdmin] returns an http.Handler with an HTML page (current lockouts, one
// row per client with its reset button, statistics, reset by IP, by
// username, or everything) and a JSON API. It shows who is attacking and can
// lift their locks, so it serves nobody until you say who may use it:
// NewAdmin returns an error without [AdminToken] or [AdminAuthorize].
//
//	admin, err := axeshttp.NewAdmin(lim, axeshttp.AdminToken(os.Getenv("AXES_ADMIN_TOKEN")))
//	if err != nil {
//		log.Fatal(err) // no token, or one shorter than 16 bytes
//	}
//	mux.Handle("/axes/", http.StripPrefix("/axes", admin))
//
// Mounted under /axes, it serves:
//
//   - GET /axes/: the page.
//   - GET /axes/api/lockouts?limit=N: {"count": n, "lockouts": [{"ip",
//     "username", "user_agent", "by", "failures", "until", "retry_after"}]}.
//   - GET /axes/api/stats: the limiter's Stats.
//   - GET /axes/api/activity (with [AdminActivity]): {"masked": true,
//     "minutes": [{"start", "failures", "lockouts", "refused"}] (60, oldest
//     first), "recent": [{"time", "kind", "by", "reason", "ip", "username",
//     "user_agent", "failures", "until", "count"}] (newest first)}; 404
//     without an [Activity].
//   - GET /axes/api/history?ip=&username=&user_agent=&hours=&limit= (with
//     [AdminHistory]): {"records": [...]} newest first, at most 1000; 404
//     without a [History].
//   - POST /axes/api/reset with {"ip": "…"}, {"username": "…"}, both (the
//     client: every dimension of that IP and username without the user
//     agent, Limiter.ResetClient) or {"all": true}, with Content-Type:
//     application/json: answers {"reset": n}.
//
// The page shows one row per locked client (same IP or IPv6 prefix, username
// and user agent): a client locked by IP and by IP and username shows once,
// "by ip, ip+username", with the failures and the longest time left in words
// ("14 minutes", "2 hours", "indefinite") over the end in UTC
// ("2026-01-01 12:15:00 UTC", the one time format of the page). The row's
// Reset button lifts exactly that client's locks, by their digests, and
// nothing else; the forms below it reset an IP, a username, or everything.
// The row's token is signed with the handler's key, so a row the page did
// not show is refused. The layout works from a phone (390 px: the statistics
// wrap, tables become stacked cards) to a desktop.
//
// # The last hour
//
// Give the admin an [Activity] and the page draws failed attempts, refusals
// and new locks per minute over the last hour as an inline SVG chart (no
// script; the Content-Security-Policy stays strict), with the most recent
// events below it:
//
//	activity, err := axeshttp.NewActivity() // ActivityRecent(n), ActivityRawIdentity(), ActivityFailures()
//	if err != nil {
//		log.Fatal(err)
//	}
//	logEvent := axes.LogEvents(logger) // another OnEvent func, if any
//	policy.OnEvent = func(e axes.Event) {
//		activity.OnEvent(e)
//		logEvent(e)
//	}
//	lim, err := axes.New(policy)
//	...
//	admin, err := axeshttp.NewAdmin(lim, axeshttp.AdminToken(token), axeshttp.AdminActivity(activity))
//
// An Activity holds a fixed ring of 60 per-minute buckets, keyed by each
// event's Time (the limiter's clock, so tests with a fake clock are exact),
// and a fixed ring of the last 100 lockouts, refusals and resets (failures
// too with [ActivityFailures]). Its memory does not grow with traffic;
// OnEvent holds a mutex for a few assignments and, with masked identities,
// allocates nothing. A failed attempt counts once however many dimensions
// count it. Identities are masked as axes.LogEvents masks them ("192.0.*.*",
// "2001:db8:1:2::/64", "sha256:" and 12 hex digits) unless
// [ActivityRawIdentity] is given. Each server process has its own: with
// Redis, the chart shows the events this process saw.
//
// # History
//
// Give the admin a [History], such as an axesaudit.Trail (module
// github.com/axes-go/axes/axesaudit, SQLite or PostgreSQL), and the page
// shows its most recent records with a search form (IP, username, user
// agent, the last N hours: a plain GET form, no script), and
// /api/history serves the same search as JSON:
//
//	admin, err := axeshttp.NewAdmin(lim, axeshttp.AdminToken(token), axeshttp.AdminHistory(trail))
//
// # Who may use the admin
//
// Every request, to the page, its stylesheet and every API route, is
// checked before anything is read or changed:
//
//   - [AdminToken](token): the request carries the token as
//     "Authorization: Bearer <token>" (scripts:
//     curl -H "Authorization: Bearer $AXES_ADMIN_TOKEN" …/axes/api/lockouts),
//     or as the password of HTTP Basic authentication with any user name (a
//     browser asks for it). Other requests get 401 with a WWW-Authenticate
//     challenge. The token is compared in constant time; it must be at least
//     16 bytes of bearer-token characters: draw it at random
//     (crypto/rand.Text(), openssl rand -base64 24) and keep it out of
//     source code. Basic authentication sends it in clear: serve the admin
//     over HTTPS.
//   - [AdminAuthorize](func(*http.Request) bool): your application decides,
//     from its own session; other requests get 403.
//
// For example:
//
//	admin, err := axeshttp.NewAdmin(lim, axeshttp.AdminAuthorize(func(r *http.Request) bool {
//		u, ok := sessions.User(r) // your session lookup
//		return ok && u.IsStaff
//	}))
//
// With both, either opens the admin. Where a request comes from counts for
// nothing: a reverse proxy on the same host (httputil.ReverseProxy with
// SetURL, nginx's default proxy_pass) makes every client look local, with a
// loopback Host and no forwarding header. (Earlier versions served loopback
// clients without authentication, and so served anybody through such a
// proxy; Admin and AllowRemote are gone.) The test
// TestAdminThroughReverseProxy puts a real httputil.ReverseProxy in front of
// the admin and checks that the list, the page and
// POST /api/reset {"all": true} are refused without the token. You may still
// give the admin a listener of its own that only administrators reach; it
// needs the token or your check all the same.
//
// # CSRF
//
// A browser sends Basic credentials and session cookies by itself, even to
// requests another site starts, so authorisation alone does not stop a
// cross-site form. Only POST changes state. Every POST passes
// http.CrossOriginProtection (Sec-Fetch-Site, Origin); the page's forms also
// carry a token signed with a key drawn for each admin handler and valid for
// 12 hours; the JSON API requires Content-Type: application/json, which a
// cross-site form cannot send. Responses forbid caching and framing and
// carry a strict Content-Security-Policy (no scripts at all).
//
// # Browser tests
//
// The page is tested in headless Chromium (axeshttp/browsertest, its own
// module, so the browser driver never enters the axes module's go.mod): the
// test creates a lockout, is refused the page without the token, answers the
// Basic challenge with it, has a page on another site post resets through
// the browser (refused, nothing reset), then loads the page, clicks the
// row's reset button and sees the row gone. TestAdminPageLayout opens the
// page, with an hour of history, at 1280 and 390 px, checks that neither the
// document nor a table's box is wider than the window, and saves full-page
// screenshots (AXES_SCREENSHOT_DIR=/some/dir keeps them). The repository's
// .ci/chromium.sh installs Debian's chromium when missing; locally the test
// skips without it, in CI (CI=true) it fails.
package axeshttp

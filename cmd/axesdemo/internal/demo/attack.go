package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The scenarios of the simulated attack, in the order they run.
const (
	ScenarioLegit    = "legitimate users"
	ScenarioStuffing = "credential stuffing"
	ScenarioSpray    = "password spray"
	ScenarioNames    = "username spray"
	ScenarioSlow     = "slow guesser"
	ScenarioDevices  = "trusted devices"
)

// The shape of the simulated attack.
const (
	stuffingBots     = 60               // IPv4 bots, one address each
	stuffingV6Hosts  = 20               // bots sharing one IPv6 /64
	stuffingPerBot   = 8                // leaked credentials each bot tries
	stuffingDaveStep = 10               // every tenth bot also tries dave
	sprayDuration    = 2 * time.Hour    // how long the sprayer keeps going
	slowInterval     = 4 * time.Minute  // the slow guesser's pace
	slowDuration     = 6 * time.Hour    // how long the slow guesser keeps going
	minWait          = 30 * time.Second // wait when a refusal carries no Retry-After
)

// AttackConfig configures RunAttack.
type AttackConfig struct {
	// BaseURL is the login server, such as "http://127.0.0.1:8080". The
	// server must trust the attacker's X-Forwarded-For header (the demo
	// server trusts loopback).
	BaseURL string

	// Clock is the server's clock, which the attackers advance whenever
	// they wait. Required.
	Clock *Clock

	// Progress, if set, receives a line per step of the attack.
	Progress io.Writer

	// Concurrency is the number of credential-stuffing bots sending at
	// once; default 16.
	Concurrency int

	// Client sends the requests; default a client with no redirects and
	// enough idle connections for Concurrency.
	Client *http.Client
}

// ScenarioResult is what one scenario's clients saw.
type ScenarioResult struct {
	Name    string
	Sent    int // login requests sent
	Checked int // requests that reached the password check (answered 200 or 401)
	Refused int // requests refused by the limiter (429 or 503)
	Errors  int // transport errors and unexpected statuses
	Logins  int // successful logins
	Wanted  int // logins the scenario's users were entitled to (legitimate users)
	// Stops lists, for the username spray, how many usernames each
	// address tried (each reaching the password check) before its first
	// refusal.
	Stops []int
}

// AttackResult is what RunAttack measured from the clients' side.
type AttackResult struct {
	Scenarios []ScenarioResult
	Latencies []time.Duration // one per request that got a response, in real time
	Simulated time.Duration   // simulated time that passed
	Elapsed   time.Duration   // real time the attack took
}

// outcome is how the server answered one login request.
type outcome uint8

const (
	outError   outcome = iota // no answer, or an unexpected one
	outWrong                  // 401: the password check failed
	outLogin                  // 200: signed in
	outRefused                // 429 or 503: refused before the password check
)

type attacker struct {
	cfg     AttackConfig
	loginAt string
	start   time.Time

	mu        sync.Mutex // protects latencies and serializes progress lines
	latencies []time.Duration
}

// RunAttack runs the simulated attack against cfg.BaseURL: a legitimate
// user signing in, a credential-stuffing run from many bots, a password
// spray from one address that waits out each lock, a slow guesser, and
// finally a legitimate user who mistypes once. It returns what the clients
// saw; an error only if the attack could not be run at all (ctx done, bad
// configuration).
func RunAttack(ctx context.Context, cfg AttackConfig) (*AttackResult, error) {
	if cfg.Clock == nil {
		return nil, errors.New("axesdemo: RunAttack needs the server's Clock")
	}
	if _, err := url.Parse(cfg.BaseURL); err != nil || cfg.BaseURL == "" {
		return nil, fmt.Errorf("axesdemo: bad BaseURL %q", cfg.BaseURL)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Transport: &http.Transport{
				MaxIdleConns:        cfg.Concurrency,
				MaxIdleConnsPerHost: cfg.Concurrency,
				IdleConnTimeout:     30 * time.Second,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Timeout:       30 * time.Second,
		}
		defer cfg.Client.CloseIdleConnections()
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	a := &attacker{cfg: cfg, loginAt: strings.TrimSuffix(cfg.BaseURL, "/") + "/login", start: cfg.Clock.Now()}
	began := time.Now()

	legit := ScenarioResult{Name: ScenarioLegit}
	a.legitLogin(ctx, &legit, netip.MustParseAddr("198.51.100.20"), "bob", "", "hunter2-but-longer")
	a.enrolDevices(ctx, &legit)
	stuffing := a.stuffing(ctx)
	devices := a.deviceLogins(ctx)
	a.legitLogin(ctx, &legit, netip.MustParseAddr("198.51.100.30"), "carol", "", "tr0ub4dor&3")
	spray := a.spray(ctx)
	names := a.nameSpray(ctx)
	slow := a.slow(ctx)
	a.legitLogin(ctx, &legit, netip.MustParseAddr("198.51.100.7"), "alice", "correct-horse-batery", "correct-horse-battery")
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &AttackResult{
		Scenarios: []ScenarioResult{stuffing, spray, names, slow, legit, devices},
		Latencies: a.latencies,
		Simulated: cfg.Clock.Now().Sub(a.start),
		Elapsed:   time.Since(began),
	}, nil
}

// progress writes one line, stamped with the simulated time since the start.
func (a *attacker) progress(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.cfg.Clock.Now().Sub(a.start)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	fmt.Fprintf(a.cfg.Progress, "[+%02d:%02d:%02d] %s\n", h, m, s, fmt.Sprintf(format, args...))
}

// try sends one login attempt as the client at ip and reports how the
// server answered, with its Retry-After for a refusal.
func (a *attacker) try(ctx context.Context, ip netip.Addr, ua, user, password string) (outcome, time.Duration) {
	o, wait, _ := a.send(ctx, ip, ua, user, password, nil)
	return o, wait
}

// send is try with the cookies a browser presents, returning the cookies
// the server set.
func (a *attacker) send(ctx context.Context, ip netip.Addr, ua, user, password string, cookies []*http.Cookie) (outcome, time.Duration, []*http.Cookie) {
	form := url.Values{"username": {user}, "password": {password}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.loginAt, strings.NewReader(form))
	if err != nil {
		return outError, 0, nil
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-For", ip.String())
	req.Header.Set("User-Agent", ua)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	t0 := time.Now()
	resp, err := a.cfg.Client.Do(req)
	if err != nil {
		return outError, 0, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	lat := time.Since(t0)
	a.mu.Lock()
	a.latencies = append(a.latencies, lat)
	a.mu.Unlock()
	set := resp.Cookies()
	switch resp.StatusCode {
	case http.StatusOK:
		return outLogin, 0, set
	case http.StatusUnauthorized:
		return outWrong, 0, set
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		var wait time.Duration
		if s, err := strconv.ParseInt(resp.Header.Get("Retry-After"), 10, 32); err == nil && s > 0 {
			wait = time.Duration(s) * time.Second
		}
		return outRefused, wait, set
	}
	return outError, 0, set
}

// deviceUser is a real user whose browser holds a device cookie from an
// earlier login, and whose username the bots try.
type deviceUser struct {
	ip             netip.Addr
	user, password string
	cookies        []*http.Cookie
}

var deviceUsers = []*deviceUser{
	{ip: netip.MustParseAddr("198.51.100.40"), user: "dave", password: "open-sesame-42"},
}

// enrolDevices signs the device users in before the attack, as legitimate
// users: the server gives each browser its device cookie.
func (a *attacker) enrolDevices(ctx context.Context, legit *ScenarioResult) {
	for _, u := range deviceUsers {
		legit.Wanted++
		o, _, set := a.send(ctx, u.ip, browserUA, u.user, u.password, nil)
		legit.tally(o)
		u.cookies = set
		a.progress("%-20s %s signs in from the usual browser: %s, device cookie %v", ScenarioDevices, u.user, describe(o), len(set) > 0)
	}
}

// deviceLogins signs the device users in while the bots hold their
// usernames locked: from the usual browser (trusted by its cookie) they
// get in; from a new browser (no cookie) the lock refuses them like the
// bots.
func (a *attacker) deviceLogins(ctx context.Context) ScenarioResult {
	res := ScenarioResult{Name: ScenarioDevices}
	for _, u := range deviceUsers {
		o, _, _ := a.send(ctx, u.ip, browserUA, u.user, u.password, nil)
		res.tally(o) // refused: the bots hold the username locked
		a.progress("%-20s %s signs in from a new browser: %s", ScenarioDevices, u.user, describe(o))
		res.Wanted++
		o, _, _ = a.send(ctx, u.ip, browserUA, u.user, u.password, u.cookies)
		res.tally(o)
		a.progress("%-20s %s signs in from the usual browser: %s", ScenarioDevices, u.user, describe(o))
	}
	return res
}

// tally adds one outcome to r.
func (r *ScenarioResult) tally(o outcome) {
	r.Sent++
	switch o {
	case outWrong:
		r.Checked++
	case outLogin:
		r.Checked++
		r.Logins++
	case outRefused:
		r.Refused++
	default:
		r.Errors++
	}
}

const browserUA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

// legitLogin signs a real user in: with typo first if typo is not empty,
// then with the right password.
func (a *attacker) legitLogin(ctx context.Context, r *ScenarioResult, ip netip.Addr, user, typo, password string) {
	r.Wanted++
	if typo != "" {
		o, _ := a.try(ctx, ip, browserUA, user, typo)
		r.tally(o)
		a.progress("%-20s %s mistypes the password: %s", ScenarioLegit, user, describe(o))
	}
	o, _ := a.try(ctx, ip, browserUA, user, password)
	r.tally(o)
	a.progress("%-20s %s signs in: %s", ScenarioLegit, user, describe(o))
}

func describe(o outcome) string {
	switch o {
	case outLogin:
		return "signed in"
	case outWrong:
		return "wrong password"
	case outRefused:
		return "refused (locked out)"
	}
	return "error"
}

// credential is one leaked username and password pair.
type credential struct{ user, password string }

var (
	firstNames = []string{"james", "mary", "robert", "patricia", "john", "jennifer", "michael", "linda",
		"david", "elizabeth", "william", "barbara", "richard", "susan", "joseph", "jessica"}
	lastNames  = []string{"smith", "johnson", "brown", "garcia", "miller", "davis", "lopez", "wilson", "moore"}
	leakedPass = []string{"123456", "password1", "qwerty123", "iloveyou", "sunshine", "dragon", "football", "letmein"}
)

// leaked returns the credentials bot i tries: mostly users who do not exist
// here, and for every tenth bot a stale password of the real user dave.
func leaked(bot int) []credential {
	creds := make([]credential, 0, stuffingPerBot)
	for j := range stuffingPerBot {
		n := bot*stuffingPerBot + j
		user := fmt.Sprintf("%s.%s%d", firstNames[n%len(firstNames)], lastNames[(n/len(firstNames))%len(lastNames)], 60+n%40)
		pass := leakedPass[n%len(leakedPass)] + strconv.Itoa(n%100)
		if j == 2 && bot%stuffingDaveStep == 0 {
			user, pass = "dave", fmt.Sprintf("dave-old-%d", bot)
		}
		creds = append(creds, credential{user, pass})
	}
	return creds
}

// stuffingBotIP returns the address of bot i: IPv4 bots first, then hosts
// of one IPv6 /64, which the limiter counts as a single client.
func stuffingBotIP(i int) netip.Addr {
	if i < stuffingBots {
		return netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i)})
	}
	b := netip.MustParseAddr("2001:db8:bad:1::").As16()
	b[15] = byte(1 + i - stuffingBots)
	b[14] = 0x10
	return netip.AddrFrom16(b)
}

// stuffing runs the credential-stuffing bots, Concurrency at a time, each
// trying its leaked credentials in order and moving on when refused.
func (a *attacker) stuffing(ctx context.Context) ScenarioResult {
	bots := stuffingBots + stuffingV6Hosts
	total := bots * stuffingPerBot
	a.progress("%-20s %d bots (%d IPv4, %d in one IPv6 /64), %d leaked credentials", ScenarioStuffing,
		bots, stuffingBots, stuffingV6Hosts, total)
	var (
		mu    sync.Mutex // protects res
		res   = ScenarioResult{Name: ScenarioStuffing}
		sent  atomic.Int64
		next  = make(chan int)
		wg    sync.WaitGroup
		quart = max(total/4, 1)
	)
	for range a.cfg.Concurrency {
		wg.Go(func() {
			for bot := range next {
				ip := stuffingBotIP(bot)
				ua := fmt.Sprintf("python-requests/2.%d.0", 20+bot%12)
				for _, c := range leaked(bot) {
					o, _ := a.try(ctx, ip, ua, c.user, c.password)
					mu.Lock()
					res.tally(o)
					mu.Unlock()
					if n := sent.Add(1); n%int64(quart) == 0 && n < int64(total) {
						mu.Lock()
						snap := res
						mu.Unlock()
						a.progress("%-20s %d/%d sent, %d reached the password check, %d refused",
							ScenarioStuffing, snap.Sent, total, snap.Checked, snap.Refused)
					}
				}
			}
		})
	}
	for bot := range bots {
		if ctx.Err() != nil {
			break
		}
		next <- bot
	}
	close(next)
	wg.Wait()
	a.progress("%-20s done: %d sent, %d reached the password check, %d refused", ScenarioStuffing,
		res.Sent, res.Checked, res.Refused)
	return res
}

var sprayUsers = []string{"admin", "root", "alice", "bob", "carol", "dave", "erin", "info", "support",
	"sales", "test", "guest", "office", "billing", "webmaster", "postmaster", "hr", "it", "dev", "ops",
	"marketing", "contact", "service", "backup", "oracle", "ftp", "user", "demo", "manager", "security"}

var sprayPasswords = []string{"Winter2025!", "Spring2025!", "Password1!", "Welcome123", "Company2025"}

// spray tries each common password against every username from one
// address. When refused it waits as long as Retry-After says (advancing
// the clock) and carries on, until sprayDuration has passed.
func (a *attacker) spray(ctx context.Context) ScenarioResult {
	ip := netip.MustParseAddr("192.0.2.66")
	res := ScenarioResult{Name: ScenarioSpray}
	end := a.cfg.Clock.Now().Add(sprayDuration)
	a.progress("%-20s one address, %d usernames × %d passwords, waiting out every lock for %v",
		ScenarioSpray, len(sprayUsers), len(sprayPasswords), sprayDuration)
	locks := 0
spray:
	for _, pw := range sprayPasswords {
		for _, user := range sprayUsers {
			for {
				if ctx.Err() != nil || !a.cfg.Clock.Now().Before(end) {
					break spray
				}
				o, wait := a.try(ctx, ip, "curl/8.5.0", user, pw)
				res.tally(o)
				if o != outRefused {
					break
				}
				locks++
				if wait <= 0 {
					wait = minWait
				}
				a.progress("%-20s locked out after %d guesses; waiting %v", ScenarioSpray, res.Checked, wait)
				t := a.cfg.Clock.Now().Add(wait)
				if t.After(end) {
					t = end
				}
				a.cfg.Clock.AdvanceTo(t)
			}
		}
	}
	a.cfg.Clock.AdvanceTo(end)
	a.progress("%-20s done: %d sent, %d reached the password check in %v, %d refused", ScenarioSpray,
		res.Sent, res.Checked, sprayDuration, res.Refused)
	return res
}

// nameSpray tries one common password against a list of staff usernames
// from each of a few addresses, one attempt per username, until the
// address is refused: Policy.Spray stops each one after its limit of
// distinct usernames, below the per-IP limit.
func (a *attacker) nameSpray(ctx context.Context) ScenarioResult {
	res := ScenarioResult{Name: ScenarioNames}
	addrs := []netip.Addr{netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("203.0.113.11"), netip.MustParseAddr("2001:db8:66::1")}
	a.progress("%-20s %d addresses, one password against up to %d staff usernames each", ScenarioNames, len(addrs), nameSprayUsers)
	for _, ip := range addrs {
		tried := 0
		for i := range nameSprayUsers {
			if ctx.Err() != nil {
				break
			}
			o, _ := a.try(ctx, ip, "python-requests/2.32", fmt.Sprintf("staff%02d", i), "Winter2025!")
			res.tally(o)
			if o == outRefused {
				break
			}
			tried++
		}
		res.Stops = append(res.Stops, tried)
		a.progress("%-20s %v stopped after %d usernames", ScenarioNames, ip, tried)
	}
	return res
}

// nameSprayUsers is how many staff usernames each address of the username
// spray has to try.
const nameSprayUsers = 30

// slow guesses erin's password from one address every slowInterval for
// slowDuration, ignoring refusals.
func (a *attacker) slow(ctx context.Context) ScenarioResult {
	ip := netip.MustParseAddr("192.0.2.99")
	res := ScenarioResult{Name: ScenarioSlow}
	a.progress("%-20s one guess at erin's password every %v for %v", ScenarioSlow, slowInterval, slowDuration)
	n := int(slowDuration / slowInterval)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		o, _ := a.try(ctx, ip, browserUA, "erin", fmt.Sprintf("erin%d!", 1950+i))
		res.tally(o)
		a.cfg.Clock.Advance(slowInterval)
		if (i+1)%max(n/4, 1) == 0 && i+1 < n {
			a.progress("%-20s %d/%d sent, %d reached the password check", ScenarioSlow, res.Sent, n, res.Checked)
		}
	}
	a.progress("%-20s done: %d sent, %d reached the password check, %d refused", ScenarioSlow,
		res.Sent, res.Checked, res.Refused)
	return res
}

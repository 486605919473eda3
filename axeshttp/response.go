package axeshttp

import (
	"html/template"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/axes-go/axes"
)

// lockoutJSON is the JSON lockout body. It depends only on the time left,
// never on who the client claimed to be.
type lockoutJSON struct {
	Error      string `json:"error"`
	Message    string `json:"message"`
	RetryAfter *int64 `json:"retry_after,omitempty"`
}

var lockoutPage = template.Must(template.New("lockout").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1f2933}h1{font-size:1.4rem}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>
`))

// defaultLockout writes the built-in lockout response: status, Retry-After
// in whole seconds (none for a lock with no end), and a JSON body for
// clients that prefer JSON or a small HTML page otherwise.
func (c *config) defaultLockout(w http.ResponseWriter, r *http.Request, v axes.Verdict) {
	status, code, title := c.status, "locked_out", "Too many failed login attempts"
	if v.Reason == axes.ReasonUnavailable {
		status, code, title = http.StatusServiceUnavailable, "unavailable", "Login is temporarily unavailable"
	}
	var msg string
	var retry *int64
	switch {
	case v.RetryAfter == axes.Indefinite:
		msg = "Login is blocked for this client. Contact the site administrator."
	default:
		s := max(ceilSeconds(v.RetryAfter), 1)
		retry = &s
		w.Header().Set("Retry-After", strconv.FormatInt(s, 10))
		msg = "Try again in " + humanWait(v.RetryAfter) + "."
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if c.alwaysJSON || wantsJSON(r) {
		h.Set("Content-Type", "application/json")
		w.WriteHeader(status)
		writeJSON(w, lockoutJSON{Error: code, Message: title + ". " + msg, RetryAfter: retry})
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = lockoutPage.Execute(w, struct{ Title, Message string }{title, msg})
}

// humanWait says the wait d in words for the lockout message. Under a
// minute it is whole seconds rounded up (at least 1). From a minute on it
// is minutes or hours rounded up, counted from the whole seconds in d:
// locks end on a whole second of the limiter's clock, so the time left
// seen by a request is often the lock's length plus a fraction of a
// second, and a 5-minute lock must say "5 minutes", not 6. (Retry-After
// keeps the exact time rounded up to the second, for clients that retry
// by the clock.)
func humanWait(d time.Duration) string {
	if d < time.Minute {
		return humanSeconds(max(ceilSeconds(d), 1))
	}
	return humanSeconds(int64(d / time.Second))
}

// humanSeconds says s seconds in words, rounded up to minutes or hours.
func humanSeconds(s int64) string {
	unit := func(n int64, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.FormatInt(n, 10) + " " + one + "s"
	}
	switch {
	case s < 60:
		return unit(s, "second")
	case s < 3600:
		return unit((s+59)/60, "minute")
	default:
		return unit((s+3599)/3600, "hour")
	}
}

// wantsJSON reports whether the client prefers JSON to HTML: its Accept
// header ranks a JSON type at least as high as HTML, or, when Accept names
// neither (absent, or only wildcards such as the "*/*" of curl and fetch),
// it sent JSON.
func wantsJSON(r *http.Request) bool {
	accept := r.Header.Values("Accept")
	sentJSON := func() bool {
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		return isJSONType(ct)
	}
	if len(accept) == 0 {
		return sentJSON()
	}
	var jsonQ, htmlQ float64
	n := 0
	for _, line := range accept {
		for part := range strings.SplitSeq(line, ",") {
			if n++; n > 64 {
				break // bounded work for hostile headers
			}
			mt, q := mediaRange(part)
			switch {
			case isJSONType(mt):
				jsonQ = max(jsonQ, q)
			case mt == "text/html":
				htmlQ = max(htmlQ, q)
			}
		}
	}
	if jsonQ == 0 && htmlQ == 0 {
		return sentJSON()
	}
	return jsonQ > 0 && jsonQ >= htmlQ
}

func isJSONType(mt string) bool {
	return mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

// mediaRange parses one element of an Accept header into its lower-cased
// type and q value (1 if absent, 0 if malformed).
func mediaRange(s string) (string, float64) {
	mt, params, _ := strings.Cut(s, ";")
	mt = strings.ToLower(trimOWS(mt))
	q := 1.0
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(p, "=")
		if ok && strings.EqualFold(trimOWS(k), "q") {
			f, err := strconv.ParseFloat(trimOWS(v), 64)
			if err != nil || f < 0 || f > 1 {
				f = 0
			}
			q = f
		}
	}
	return mt, q
}

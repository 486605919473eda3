package examples_test

import (
	"io"
	"net/http"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axeshttp"
	"github.com/go-chi/chi/v5"
)

// With chi, the axeshttp middleware is a chi middleware as it is: pass it
// to With (or Use on a group of login routes).
//
// Do not put chi's middleware.RealIP in front of it: RealIP rewrites
// RemoteAddr from X-Forwarded-For, which any client can send. Let axes
// resolve the IP from the socket, or from the proxies named in
// axeshttp.Proxies.
func Example_chi() {
	lim := axes.Must(axes.New(axes.Policy{Limit: 3}, axes.WithClock(fixedClock)))
	defer lim.Close()

	r := chi.NewRouter()
	r.With(axeshttp.Must(axeshttp.New(lim))).Post("/login", func(w http.ResponseWriter, r *http.Request) {
		if passwordOK(r.PostFormValue("username"), r.PostFormValue("password")) {
			axeshttp.Succeeded(r)
			io.WriteString(w, `{"welcome":"alice"}`)
			return
		}
		axeshttp.Failed(r)
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"wrong username or password"}`)
	})

	for _, guess := range []string{"123456", "password", "qwerty", "s3cret"} {
		post(r, "203.0.113.7:50001", "alice", guess)
	}
	// Output:
	// 401 {"error":"wrong username or password"}
	// 401 {"error":"wrong username or password"}
	// 401 {"error":"wrong username or password"}
	// 429 Retry-After: 900 {"error":"locked_out","message":"Too many failed login attempts. Try again in 15 minutes.","retry_after":900}
}

package axeshttp_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axeshttp"
)

// The admin lists and resets lockouts for the requests that carry its
// token. In a real deployment the token comes from the environment or a
// secret store, drawn with crypto/rand.Text.
func ExampleNewAdmin() {
	clock := fixedClock
	lim := axes.Must(axes.New(axes.Policy{Limit: 1}, axes.WithClock(clock)))
	defer lim.Close()
	lim.Fail(axes.Key{IP: netip.MustParseAddr("203.0.113.7"), Username: "alice"})

	const token = "Z4VQK2MXJ7TN5BWRC3HEYD6LPA" // os.Getenv("AXES_ADMIN_TOKEN")
	admin, err := axeshttp.NewAdmin(lim, axeshttp.AdminToken(token), axeshttp.AdminClock(clock))
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/axes/", http.StripPrefix("/axes", admin))

	do := func(method, path, body, auth string) {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Print(w.Code, " ", w.Body.String())
	}
	do("GET", "/axes/api/lockouts", "", "")
	do("GET", "/axes/api/lockouts", "", "Bearer "+token)
	do("POST", "/axes/api/reset", `{"ip":"203.0.113.7"}`, "Bearer "+token)
	do("GET", "/axes/api/lockouts", "", "Bearer "+token)
	// Output:
	// 401 {"error":"the axes admin needs its token"}
	// 200 {"count":1,"lockouts":[{"ip":"203.0.113.7","username":"alice","user_agent":"","by":"ip","failures":1,"until":"2026-01-01T12:15:00Z","retry_after":900}]}
	// 200 {"reset":1}
	// 200 {"count":0,"lockouts":[]}
}

// With AdminAuthorize the application decides who may use the admin,
// typically from its own session. Here a cookie stands for the
// application's real check of a signed-in administrator.
func ExampleAdminAuthorize() {
	lim := axes.Must(axes.New(axes.Policy{}, axes.WithClock(fixedClock)))
	defer lim.Close()

	isStaff := func(r *http.Request) bool {
		c, err := r.Cookie("session")
		return err == nil && c.Value == "staff-session" // look the session up instead
	}
	admin, err := axeshttp.NewAdmin(lim, axeshttp.AdminAuthorize(isStaff))
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/axes/", http.StripPrefix("/axes", admin))

	for _, cookie := range []string{"", "session=staff-session"} {
		r := httptest.NewRequest("GET", "/axes/api/lockouts", nil)
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Print(w.Code, " ", w.Body.String())
	}
	// Output:
	// 403 {"error":"forbidden"}
	// 200 {"count":0,"lockouts":[]}
}

// An admin without any authorisation is refused.
func ExampleNewAdmin_noAuthorisation() {
	lim := axes.Must(axes.New(axes.Policy{}))
	defer lim.Close()
	_, err := axeshttp.NewAdmin(lim)
	fmt.Println(err)
	// Output:
	// axes: axeshttp.NewAdmin needs AdminToken or AdminAuthorize: the admin must not serve anybody who reaches it
}

// An Activity keeps the last hour of a limiter's events for the admin's
// chart and its list of recent events. Chain its OnEvent with any other
// OnEvent func of the policy.
func ExampleActivity() {
	activity, err := axeshttp.NewActivity()
	if err != nil {
		fmt.Println(err)
		return
	}
	var logged int
	lim := axes.Must(axes.New(axes.Policy{
		Limit:     2,
		LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username},
		OnEvent: func(e axes.Event) {
			activity.OnEvent(e)
			logged++ // another OnEvent func: axes.LogEvents, metrics…
		},
	}, axes.WithClock(fixedClock)))
	defer lim.Close()
	k := axes.Key{IP: netip.MustParseAddr("203.0.113.7"), Username: "alice"}
	for range 3 {
		lim.Fail(k)
	}

	mins := activity.Minutes(fixedClock())
	now := mins[len(mins)-1]
	fmt.Printf("%s: %d failed attempts, %d locks, %d refused\n", now.Start.Format("15:04"), now.Failures, now.Lockouts, now.Refused)
	for _, e := range activity.Recent() {
		fmt.Println(e.Kind, e.By, e.IP, e.Username)
	}
	fmt.Println(logged, "events passed on")

	admin, err := axeshttp.NewAdmin(lim, axeshttp.AdminToken("Z4VQK2MXJ7TN5BWRC3HEYD6LPA"), axeshttp.AdminActivity(activity))
	fmt.Println(admin != nil, err)
	// Output:
	// 12:00: 2 failed attempts, 2 locks, 1 refused
	// refused ip 203.0.*.* sha256:2bd806c97f0e
	// lockout ip+username 203.0.*.* sha256:2bd806c97f0e
	// lockout ip 203.0.*.* sha256:2bd806c97f0e
	// 7 events passed on
	// true <nil>
}

package axeshttp_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axeshttp"
)

// Device cookies: a user who logged in from a browser before still gets in
// while bots hold the username locked, because the browser presents the
// device cookie it got at that login.
func ExampleWithDevices() {
	lim := axes.Must(axes.New(axes.Policy{
		Limit:     3,
		LockoutBy: []axes.Fields{axes.Username},
		Cooloff:   axes.Fixed(time.Hour),
	}, axes.WithClock(fixedClock)))
	defer lim.Close()
	devices, err := axeshttp.NewDevices(axeshttp.DeviceConfig{
		Keys: [][]byte{bytes.Repeat([]byte("k"), 32)}, // in production: 32 random bytes, kept secret
		Now:  fixedClock,
	})
	if err != nil {
		panic(err)
	}
	protect := axeshttp.Must(axeshttp.New(lim, axeshttp.WithDevices(devices)))
	h := protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PostFormValue("password") != "secret" {
			axeshttp.Failed(r)
			http.Error(w, "wrong username or password", http.StatusUnauthorized)
			return
		}
		axeshttp.Succeeded(r)
		fmt.Fprintln(w, "welcome")
	}))
	login := func(remote, password string, cookie *http.Cookie) *httptest.ResponseRecorder {
		form := url.Values{"username": {"alice"}, "password": {password}}
		r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = remote
		if cookie != nil {
			r.AddCookie(cookie)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	// Alice logs in and her browser keeps the device cookie.
	w := login("192.0.2.10:1234", "secret", nil)
	cookie := w.Result().Cookies()[0]
	fmt.Println("login:", w.Code, "cookie:", cookie.Name, "HttpOnly:", cookie.HttpOnly, "Secure:", cookie.Secure, "Max-Age:", cookie.MaxAge)

	// Bots lock the username.
	for range 3 {
		login("203.0.113.9:4444", "guess", nil)
	}
	fmt.Println("bot with the right password:", login("203.0.113.9:4444", "secret", nil).Code)
	// Alice's browser is a trusted device: counted apart, not refused.
	fmt.Println("alice's browser:", login("192.0.2.10:1234", "secret", cookie).Code)
	// Output:
	// login: 200 cookie: __Host-axes-device HttpOnly: true Secure: true Max-Age: 15552000
	// bot with the right password: 429
	// alice's browser: 200
}

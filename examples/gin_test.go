package examples_test

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axeshttp"
	"github.com/gin-gonic/gin"
)

// fixedClock makes the examples' output independent of the time they run.
func fixedClock() time.Time { return time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC) }

// post sends a login form to h from remote and prints the status, the
// Retry-After header and the body.
func post(h http.Handler, remote, user, password string) {
	form := url.Values{"username": {user}, "password": {password}}
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Accept", "application/json")
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	fmt.Print(w.Code)
	if ra := w.Header().Get("Retry-After"); ra != "" {
		fmt.Print(" Retry-After: ", ra)
	}
	fmt.Println(" " + strings.TrimSpace(w.Body.String()))
}

func passwordOK(user, pass string) bool {
	return user == "alice" && subtle.ConstantTimeCompare([]byte(pass), []byte("s3cret")) == 1
}

// With gin, wrap the login handler: gin.WrapH turns the protected
// http.Handler into a gin.HandlerFunc. The handler reads the form as gin
// does (c.PostForm reads the form the middleware already parsed, so both
// see the same username) and reports the outcome with axeshttp.Failed and
// axeshttp.Succeeded on c.Request.
//
// Leave gin's own client-IP handling out of it: axes resolves the IP from
// the socket, or from the proxies named in axeshttp.Proxies. Do not rewrite
// RemoteAddr from headers before the middleware.
func Example_gin() {
	gin.SetMode(gin.ReleaseMode)
	lim := axes.Must(axes.New(axes.Policy{Limit: 3}, axes.WithClock(fixedClock)))
	defer lim.Close()
	protect := axeshttp.Must(axeshttp.New(lim))

	login := func(c *gin.Context) {
		if passwordOK(c.PostForm("username"), c.PostForm("password")) {
			axeshttp.Succeeded(c.Request)
			c.JSON(http.StatusOK, gin.H{"welcome": c.PostForm("username")})
			return
		}
		axeshttp.Failed(c.Request)
		c.JSON(http.StatusUnauthorized, gin.H{"error": "wrong username or password"})
	}

	r := gin.New()
	r.POST("/login", gin.WrapH(protect(ginHandler(r, login))))

	for _, guess := range []string{"123456", "password", "qwerty", "s3cret"} {
		post(r, "203.0.113.7:50001", "alice", guess)
	}
	// Output:
	// 401 {"error":"wrong username or password"}
	// 401 {"error":"wrong username or password"}
	// 401 {"error":"wrong username or password"}
	// 429 Retry-After: 900 {"error":"locked_out","message":"Too many failed login attempts. Try again in 15 minutes.","retry_after":900}
}

// ginHandler runs a gin handler as an http.Handler, with a gin.Context of
// engine e for the request the middleware passes on.
func ginHandler(e *gin.Engine, h gin.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := gin.CreateTestContextOnly(w, e)
		c.Request = r
		h(c)
	})
}

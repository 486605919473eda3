package examples_test

import (
	"net/http"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axeshttp"
	"github.com/labstack/echo/v4"
)

// With echo, echo.WrapMiddleware turns the axeshttp middleware into an
// echo.MiddlewareFunc for the login route. c.FormValue reads the form the
// middleware already parsed, so both see the same username; the handler
// reports the outcome with axeshttp.Failed and axeshttp.Succeeded on
// c.Request().
//
// Leave echo's IPExtractor out of it: axes resolves the IP from the socket,
// or from the proxies named in axeshttp.Proxies.
func Example_echo() {
	lim := axes.Must(axes.New(axes.Policy{Limit: 3}, axes.WithClock(fixedClock)))
	defer lim.Close()
	protect := echo.WrapMiddleware(axeshttp.Must(axeshttp.New(lim)))

	login := func(c echo.Context) error {
		if passwordOK(c.FormValue("username"), c.FormValue("password")) {
			axeshttp.Succeeded(c.Request())
			return c.JSON(http.StatusOK, map[string]string{"welcome": c.FormValue("username")})
		}
		axeshttp.Failed(c.Request())
		return c.JSON(http.StatusUnauthorized, map[string]string{"error": "wrong username or password"})
	}

	e := echo.New()
	e.POST("/login", login, protect)

	for _, guess := range []string{"123456", "password", "qwerty", "s3cret"} {
		post(e, "203.0.113.7:50001", "alice", guess)
	}
	// Output:
	// 401 {"error":"wrong username or password"}
	// 401 {"error":"wrong username or password"}
	// 401 {"error":"wrong username or password"}
	// 429 Retry-After: 900 {"error":"locked_out","message":"Too many failed login attempts. Try again in 15 minutes.","retry_after":900}
}

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
// The package uses only the standard library and package axes.
package axeshttp

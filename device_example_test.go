package axes_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/axes-go/axes"
)

// A device the application has verified (a device cookie, see
// axeshttp.Devices) logs in while bots hold the username locked: it is
// counted on its own, so their lock does not refuse it, and a thief with
// its cookie gets its own Limit guesses, no more.
func ExampleKey_device() {
	c := newClock()
	lim := axes.Must(axes.New(axes.Policy{
		Limit:     3,
		LockoutBy: []axes.Fields{axes.Username},
		Cooloff:   axes.Fixed(time.Hour),
	}, axes.WithClock(c.Now)))
	defer lim.Close()

	bot := axes.Key{IP: netip.MustParseAddr("203.0.113.9"), Username: "alice"}
	for range 3 {
		lim.Fail(bot)
	}
	fmt.Println("bots locked alice:", lim.Locked(bot))

	// Device is set only after the application verified the cookie.
	user := axes.Key{IP: netip.MustParseAddr("192.0.2.10"), Username: "alice", Device: "Yk3bXj1lQ0yQ2cK7pL9aZw"}
	a := lim.Begin(user)
	fmt.Println("trusted device admitted:", a.Allowed())
	a.Succeed()

	thief := user
	for range 3 {
		lim.Fail(thief)
	}
	fmt.Println("stolen cookie locked after 3 guesses:", lim.Locked(thief))
	// Output:
	// bots locked alice: true
	// trusted device admitted: true
	// stolen cookie locked after 3 guesses: true
}

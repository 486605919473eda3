package axes_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/axes-go/axes"
)

// Password-spray detection: an office behind one NAT address may fail
// often (a high per-IP Limit), but an address that fails with a fifth
// distinct username within the hour is locked, however few failures each
// username saw.
func ExampleSpray() {
	c := newClock()
	lim := axes.Must(axes.New(axes.Policy{
		Limit: 50, // per IP: a large NAT
		Spray: axes.Spray{Limit: 5, Window: time.Hour, Cooloff: time.Hour},
	}, axes.WithClock(c.Now)))
	defer lim.Close()

	nat := netip.MustParseAddr("198.51.100.7")
	for range 20 {
		lim.Fail(axes.Key{IP: nat, Username: "alice"}) // one user mistyping, over and over
	}
	v := lim.Fail(axes.Key{IP: nat, Username: "bob"})
	fmt.Printf("NAT: failures=%d locked=%v\n", v.Failures, v.Locked)

	sprayer := netip.MustParseAddr("203.0.113.66")
	for i := 1; ; i++ {
		v := lim.Fail(axes.Key{IP: sprayer, Username: fmt.Sprintf("user%d", i)})
		if v.Locked {
			fmt.Printf("sprayer: locked at username %d: %v by %v, %d/%d, retry in %v\n", i, v.Reason, v.By, v.Failures, v.Limit, v.RetryAfter)
			break
		}
	}
	fmt.Println("sprayer, any username:", lim.Locked(axes.Key{IP: sprayer, Username: "carol"}))
	fmt.Println("NAT still admitted:", !lim.Locked(axes.Key{IP: nat, Username: "carol"}))
	// Output:
	// NAT: failures=21 locked=false
	// sprayer: locked at username 5: spray by ip, 5/5, retry in 1h0m0s
	// sprayer, any username: true
	// NAT still admitted: true
}

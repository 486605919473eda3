package browsertest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axeshttp"
)

// layoutFixture is an admin, with its Activity, over a limiter that has
// lived through an hour of a growing attack: many clients locked, some by
// two dimensions, one indefinitely, one with a long username and user agent,
// one over IPv6.
func layoutFixture(t *testing.T) (*httptest.Server, *axes.Limiter) {
	t.Helper()
	now := time.Date(2026, 3, 14, 8, 27, 0, 0, time.UTC)
	var clockNow atomic.Pointer[time.Time]
	clockNow.Store(&now)
	clock := func() time.Time { return *clockNow.Load() }
	advance := func(d time.Duration) {
		t := clock().Add(d)
		clockNow.Store(&t)
	}

	activity, err := axeshttp.NewActivity()
	if err != nil {
		t.Fatal(err)
	}
	var events atomic.Int64 // another OnEvent func, chained after the Activity
	lim, err := axes.New(axes.Policy{
		Limit:     3,
		LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username},
		Cooloff: axes.CooloffFunc(func(k axes.Key) time.Duration {
			switch {
			case k.Username == "root":
				return axes.Indefinite
			case strings.Contains(k.UserAgent, "hydra"):
				return 2 * time.Hour
			}
			return 15 * time.Minute
		}),
		OnEvent: func(e axes.Event) {
			activity.OnEvent(e)
			events.Add(1)
		},
	}, axes.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lim.Close() })

	// An hour of attempts, growing towards the end, from a pool of
	// addresses that lock and come back when their locks end.
	users := []string{"admin", "alice", "bob", "carol", "dave", "eve"}
	for m := range 60 {
		n := m*m/120 + m%3
		for i := range n {
			ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + (m*7+i)%23)})
			lim.Fail(axes.Key{IP: ip, Username: users[(m+i)%len(users)], UserAgent: "python-requests/2.32"})
		}
		advance(time.Minute)
	}
	advance(-7 * time.Second)
	long := axes.Key{
		IP:        netip.MustParseAddr("203.0.113.250"),
		Username:  "svc-" + strings.Repeat("averyveryverylongaccountname", 6),
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 hydra/9.5",
	}
	for _, k := range []axes.Key{
		{IP: netip.MustParseAddr("203.0.113.7"), Username: "root", UserAgent: "ssh-bruter"},
		long,
		{IP: netip.MustParseAddr("2001:db8:42:7::1"), Username: "mallory", UserAgent: "curl/8.7.1"},
	} {
		for range 3 {
			lim.Fail(k)
		}
	}
	if events.Load() == 0 {
		t.Fatal("no events")
	}

	admin, err := axeshttp.NewAdmin(lim,
		axeshttp.AdminAuthorize(func(*http.Request) bool { return true }), // a test server on loopback
		axeshttp.AdminClock(clock),
		axeshttp.AdminActivity(activity))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/axes/", http.StripPrefix("/axes", admin))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, lim
}

// screenshotDir is where the layout test keeps its screenshots:
// AXES_SCREENSHOT_DIR, or a temporary directory.
func screenshotDir(t *testing.T) string {
	if dir := os.Getenv("AXES_SCREENSHOT_DIR"); dir != "" {
		return dir
	}
	return t.TempDir()
}

// TestAdminPageLayout opens the admin page, with its chart of the last hour,
// its lockouts and its recent events, at the width of a desktop (1280 px)
// and of a phone (390 px): the document must not be wider than the window
// at either, the lockouts must show one row per client, and the chart must
// fit. It saves a full-page screenshot of each as PNG.
func TestAdminPageLayout(t *testing.T) {
	exe := needChromium(t)
	srv, lim := layoutFixture(t)
	dir := screenshotDir(t)

	for _, tc := range []struct {
		name          string
		width, height int
		mobile        bool
	}{
		{"desktop", 1280, 900, false},
		{"phone", 390, 844, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := newBrowser(t, exe, tc.width, tc.height)
			var opts []chromedp.EmulateViewportOption
			if tc.mobile {
				opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateScale(2))
			}
			if err := chromedp.Do(ctx,
				chromedp.EmulateViewport(int64(tc.width), int64(tc.height), opts...),
				chromedp.Navigate(srv.URL+"/axes/"),
				chromedp.WaitVisible(chromedp.CSS("#lockouts tbody tr")),
				chromedp.WaitVisible(chromedp.CSS("#activity svg")),
			); err != nil {
				t.Fatal(err)
			}

			// No horizontal overflow of the document.
			widths, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](
				`[document.documentElement.scrollWidth, window.innerWidth, document.body.scrollWidth]`))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: scrollWidth %d, innerWidth %d, body scrollWidth %d", tc.name, widths[0], widths[1], widths[2])
			if widths[1] != tc.width {
				t.Errorf("innerWidth %d, want %d (the page zoomed out?)", widths[1], tc.width)
			}
			if widths[0] > widths[1] || widths[2] > widths[1] {
				t.Errorf("the page is %d px wide in a %d px window", max(widths[0], widths[2]), widths[1])
			}
			// Nothing sticks out of the window on the right: the widest
			// element's right edge.
			wide, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
				let worst = "", right = 0;
				for (const el of document.querySelectorAll("body *")) {
					const r = el.getBoundingClientRect();
					if (r.right > right + 0.5) { right = r.right; worst = el.tagName + "." + el.className + " " + Math.round(r.right); }
				}
				return right > window.innerWidth + 0.5 ? worst : "";
			})()`))
			if err != nil {
				t.Fatal(err)
			}
			if wide != "" {
				t.Errorf("an element reaches past the window's right edge: %s", wide)
			}

			// Nor out of the tables' own scroll boxes: every column fits.
			clipped, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll(".scroll")].
				filter(b => b.scrollWidth > b.clientWidth).
				map(b => b.firstElementChild.id + " " + b.scrollWidth + " > " + b.clientWidth + " px; columns " +
					[...b.querySelectorAll("thead th")].map(th => Math.round(th.getBoundingClientRect().width)).join(" ")).join("; ")`))
			if err != nil {
				t.Fatal(err)
			}
			if clipped != "" {
				t.Errorf("a table is wider than its box: %s", clipped)
			}

			// The chart: 60 minutes, within the window.
			bars, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#activity svg g").length`))
			if err != nil {
				t.Fatal(err)
			}
			chartW, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.querySelector("#activity svg").getBoundingClientRect().width`))
			if err != nil {
				t.Fatal(err)
			}
			if bars != 60 || chartW < float64(tc.width)/2 || chartW > float64(tc.width) {
				t.Errorf("chart: %d minutes, %.0f px wide", bars, chartW)
			}

			// One row per locked client; the client with two locks lists both.
			rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#lockouts tbody tr").length`))
			if err != nil {
				t.Fatal(err)
			}
			clients := map[string]bool{}
			for _, l := range lim.Lockouts() {
				clients[fmt.Sprint(l.IP, "\x00", l.Username, "\x00", l.UserAgent)] = true
			}
			if rows != len(clients) || rows >= len(lim.Lockouts()) {
				t.Errorf("%d rows for %d clients and %d locks", rows, len(clients), len(lim.Lockouts()))
			}
			table, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#lockouts tbody")))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"by ip, ip+username", "indefinite", "2 hours", " minutes", "2001:db8:42:7::/64", "2026-03-14 11:26:53 UTC"} {
				if !strings.Contains(table, want) {
					t.Errorf("the lockouts lack %q", want)
				}
			}
			recent, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#recent tbody tr").length`))
			if err != nil {
				t.Fatal(err)
			}
			if recent != 25 {
				t.Errorf("%d recent events, want the page's 25", recent)
			}

			png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "admin-"+tc.name+".png")
			if err := os.WriteFile(path, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot: %s", path)
		})
	}
}

// Package browsertest drives the axeshttp admin page in a real headless
// Chromium. It is its own module so that the browser-driving dependency
// stays out of the axes module's go.mod.
package browsertest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axeshttp"
)

// chromiumPath is where Debian's chromium package puts the browser;
// AXES_CHROMIUM overrides it.
func chromiumPath() string {
	if p := os.Getenv("AXES_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// TestAdminPageInChromium creates a lockout through the limiter, loads the
// admin page, finds the lockout's row, clicks its reset button and sees the
// row gone, in the page and in the limiter. Set AXES_SCREENSHOT_DIR to keep
// screenshots of the page before and after.
func TestAdminPageInChromium(t *testing.T) {
	exe := chromiumPath()
	if _, err := os.Stat(exe); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Chromium is required in CI but %s is missing (run .ci/chromium.sh): %v", exe, err)
		}
		t.Skipf("Chromium not installed at %s (apt-get install chromium, or set AXES_CHROMIUM): %v", exe, err)
	}

	now := time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	clock := func() time.Time { return now }
	lim, err := axes.New(axes.Policy{Limit: 3, LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username}}, axes.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	k := axes.Key{IP: netip.MustParseAddr("203.0.113.7"), Username: "mallory", UserAgent: "hydra/9.5"}
	for range 3 {
		lim.Fail(k)
	}
	if n := len(lim.Lockouts()); n != 2 {
		t.Fatalf("setup: %d lockouts, want 2", n)
	}

	mux := http.NewServeMux()
	mux.Handle("/axes/", http.StripPrefix("/axes", axeshttp.Admin(lim, axeshttp.AdminClock(clock))))
	srv := httptest.NewServer(mux) // loopback, as the admin demands
	defer srv.Close()

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 800),
	)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(alloc, chromedp.WithErrorf(t.Logf))
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	shot := func(name string) {
		dir := os.Getenv("AXES_SCREENSHOT_DIR")
		if dir == "" {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name), png, 0o644)
		}
		if err != nil {
			t.Errorf("screenshot %s: %v", name, err)
		}
	}
	countRows := func() int {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#lockouts tbody tr").length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	// The page lists both locks of the client.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/axes/"),
		chromedp.WaitVisible(chromedp.CSS("#lockouts tbody tr")),
	); err != nil {
		t.Fatal(err)
	}
	table, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#lockouts tbody")))
	if err != nil {
		t.Fatal(err)
	}
	shot("admin-before.png")
	if n := countRows(); n != 2 || !strings.Contains(table, "203.0.113.7") || !strings.Contains(table, "mallory") || !strings.Contains(table, "ip+username") {
		t.Fatalf("lockout table (%d rows):\n%s", n, table)
	}

	// The button of the lock by IP alone resets the whole IP, and so both
	// rows. The form posts, the admin redirects, the browser follows.
	resp, err := chromedp.RunResponse(ctx,
		chromedp.Click(chromedp.Search(`//tr[td/span[@class="tag" and text()="ip"]]//button[contains(@class,"reset")]`)))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("after the click: status %d at %s", resp.Status, resp.URL)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#no-lockouts"))); err != nil {
		t.Fatal(err)
	}
	flash, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".flash")))
	if err != nil {
		t.Fatal(err)
	}
	shot("admin-after.png")
	if n := countRows(); n != 0 || !strings.HasPrefix(flash, "Reset ") {
		t.Errorf("after reset: %d rows, flash %q", n, flash)
	}
	if l := lim.Lockouts(); len(l) != 0 {
		t.Errorf("the limiter still holds %d lockouts", len(l))
	}
	if lim.Locked(k) {
		t.Error("the client is still locked")
	}
}

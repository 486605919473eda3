// Package browsertest drives the axeshttp admin page in a real headless
// Chromium. It is its own module so that the browser-driving dependency
// stays out of the axes module's go.mod.
package browsertest

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axeshttp"
)

// needChromium returns the browser's path, skipping the test when it is
// missing (failing it in CI).
func needChromium(t *testing.T) string {
	t.Helper()
	exe := chromiumPath()
	if _, err := os.Stat(exe); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Chromium is required in CI but %s is missing (run .ci/chromium.sh): %v", exe, err)
		}
		t.Skipf("Chromium not installed at %s (apt-get install chromium, or set AXES_CHROMIUM): %v", exe, err)
	}
	return exe
}

// newBrowser starts a headless Chromium for the test, with a window of
// width x height, and returns its context, bounded to 90 seconds.
func newBrowser(t *testing.T, exe string, width, height int) context.Context {
	t.Helper()
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
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancelCtx := chromedp.NewContext(alloc, chromedp.WithErrorf(t.Logf))
	t.Cleanup(cancelCtx)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// chromiumPath is where Debian's chromium package puts the browser;
// AXES_CHROMIUM overrides it.
func chromiumPath() string {
	if p := os.Getenv("AXES_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// adminToken opens the admin under test.
const adminToken = "browser-test-admin-token-0123456789"

// attackerPage is a page on another site whose buttons post, through the
// visitor's browser, a reset of every lock to the admin at %[1]s: as the
// page's own form would, and as JSON sent in the only way a form can.
const attackerPage = `<!doctype html><html><head><title>cute cats</title></head><body>
<form method="post" action="%[1]s/axes/reset"><input type="hidden" name="action" value="all"><button id="form">cats</button></form>
<form method="post" action="%[1]s/axes/api/reset" enctype="text/plain"><input type="hidden" name='{"all":true}' value=""><button id="json">more cats</button></form>
</body></html>`

// TestAdminPageInChromium creates a lockout through the limiter and opens
// the admin page: without the token the browser gets 401 and sees nothing.
// It then lets the browser answer the admin's Basic challenge with the token
// (as an administrator types it into the sign-in prompt), and has a page on
// another site post resets to the admin through that browser: refused,
// nothing reset. Finally it loads the admin page, finds the lockout's row,
// clicks its reset button and sees the row gone, in the page and in the
// limiter: one row for the client's two locks, both lifted by its button.
// Set AXES_SCREENSHOT_DIR to keep screenshots of the page before and after.
func TestAdminPageInChromium(t *testing.T) {
	exe := needChromium(t)

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

	admin, err := axeshttp.NewAdmin(lim, axeshttp.AdminToken(adminToken), axeshttp.AdminClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/axes/", http.StripPrefix("/axes", admin))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	// The attacker's site: another host name, so another site.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, attackerPage, html.EscapeString(srv.URL))
	}))
	defer evil.Close()
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)

	ctx := newBrowser(t, exe, 1200, 800)

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

	// The browser answers the admin's challenge: by cancelling it (the user
	// dismisses the sign-in prompt) until giveToken is set, then with the
	// token (the administrator types it in).
	var giveToken atomic.Bool
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	challenged := chromedp.Events(ctx, fetch.AuthRequired)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	}()
	var challenges atomic.Int32
	go func() {
		for ev, err := range challenged {
			if err != nil {
				return
			}
			challenges.Add(1)
			answer := &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
			if giveToken.Load() {
				answer = &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseProvideCredentials, Username: "admin", Password: adminToken}
			}
			_, _ = chromedp.Call(ctx, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: ev.RequestID, AuthChallengeResponse: answer})
		}
	}()
	handleAuth := true
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{HandleAuthRequests: &handleAuth}); err != nil {
		t.Fatal(err)
	}

	// Without the token: 401, and not a word about the lockouts.
	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(srv.URL+"/axes/"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusUnauthorized {
		t.Fatalf("the page without the token: status %d", resp.Status)
	}
	if body, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body"))); err != nil || strings.Contains(body, "203.0.113.7") {
		t.Fatalf("the page without the token shows %q (%v)", body, err)
	}

	giveToken.Store(true)

	// A page on another site posts resets through the browser, which holds
	// the admin's credentials: refused, nothing reset.
	for _, button := range []string{"#form", "#json"} {
		if err := chromedp.Do(ctx, chromedp.Navigate(evilURL+"/"), chromedp.WaitVisible(chromedp.CSS(button))); err != nil {
			t.Fatal(err)
		}
		resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(button)))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != http.StatusForbidden {
			t.Errorf("cross-site post %s: status %d at %s, want 403", button, resp.Status, resp.URL)
		}
		if n := len(lim.Lockouts()); n != 2 {
			t.Fatalf("cross-site post %s reset locks: %d left", button, n)
		}
	}

	// The page lists both locks of the client in one row.
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
	if n := countRows(); n != 1 || !strings.Contains(table, "203.0.113.7") || !strings.Contains(table, "mallory") || !strings.Contains(table, "by ip, ip+username") {
		t.Fatalf("lockout table (%d rows):\n%s", n, table)
	}

	// The row's button resets both locks. The form posts, the admin
	// redirects, the browser follows.
	resp, err = chromedp.RunResponse(ctx,
		chromedp.Click(chromedp.Search(`//table[@id="lockouts"]//tr[td[contains(., "203.0.113.7")]]//button[contains(@class,"reset")]`)))
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
	if n := countRows(); n != 0 || flash != "Reset 2 entries." {
		t.Errorf("after reset: %d rows, flash %q", n, flash)
	}
	if l := lim.Lockouts(); len(l) != 0 {
		t.Errorf("the limiter still holds %d lockouts", len(l))
	}
	if lim.Locked(k) {
		t.Error("the client is still locked")
	}
	if challenges.Load() == 0 {
		t.Error("the browser was never challenged for the token")
	}
}

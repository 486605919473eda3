//go:build unix

package main

import (
	"bytes"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// bannerWriter collects the demo's output and closes ready when the
// start-up banner is complete.
type bannerWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	once  sync.Once
}

func (w *bannerWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), "Ctrl-C stops") {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

func (w *bannerWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestRunServe starts the demo server as `go run ./cmd/axesdemo` does, uses
// the admin with the token the banner prints, and stops the server with
// SIGTERM.
func TestRunServe(t *testing.T) {
	for _, envToken := range []string{"", "demo-admin-token-from-the-environment"} {
		t.Setenv("AXESDEMO_ADMIN_TOKEN", envToken)
		out := &bannerWriter{ready: make(chan struct{})}
		var errOut bytes.Buffer
		done := make(chan error, 1)
		go func() { done <- run([]string{"-addr", "127.0.0.1:0"}, out, &errOut) }()
		select {
		case <-out.ready:
		case err := <-done:
			t.Fatalf("run: %v\n%s%s", err, out, errOut.String())
		}
		banner := out.String()
		m := regexp.MustCompile(`admin API   curl -H "Authorization: Bearer ([^"]+)" (\S+)`).FindStringSubmatch(banner)
		if m == nil {
			t.Fatalf("banner:\n%s", banner)
		}
		token, u := m[1], m[2]
		if envToken != "" {
			if m[1] != "$AXESDEMO_ADMIN_TOKEN" || strings.Contains(banner, envToken) {
				t.Errorf("banner with the token from the environment:\n%s", banner)
			}
			token = envToken
		} else if !strings.Contains(banner, "admin token "+token+" ") {
			t.Errorf("banner does not print the drawn token:\n%s", banner)
		}
		for auth, want := range map[string]int{"": 401, "Bearer " + token: 200} {
			req, _ := http.NewRequest("GET", u, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("admin API with %q: %d, want %d", auth, resp.StatusCode, want)
			}
		}
		if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
}

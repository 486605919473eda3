package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axeshttp"
	"github.com/axes-go/axes/redisstore"
	"github.com/redis/go-redis/v9"
)

const token = "0123456789abcdef0123456789abcdef"

var secret = []byte("axesctl test secret, 32 bytes!!!")

type result struct {
	code           int
	stdout, stderr string
}

func ctl(env map[string]string, args ...string) result {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return result{code, out.String(), errb.String()}
}

func key(ip, user string) axes.Key { return axes.Key{IP: netip.MustParseAddr(ip), Username: user} }

// lockSome locks two clients of lim, (192.0.2.1, u1) and
// (198.51.100.1, alice), in every dimension of lim's policy.
func lockSome(lim *axes.Limiter) {
	for range 3 {
		lim.Fail(key("192.0.2.1", "u1"))
		lim.Fail(key("198.51.100.1", "alice"))
	}
}

// adminServer is a process with a limiter and its admin on loopback.
func adminServer(t *testing.T) (*axes.Limiter, string) {
	t.Helper()
	lim := axes.Must(axes.New(axes.Policy{Limit: 3, LockoutBy: []axes.Fields{axes.IP, axes.Username, axes.IP | axes.Username}}))
	t.Cleanup(func() { lim.Close() })
	admin, err := axeshttp.NewAdmin(lim, axeshttp.AdminToken(token))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/axes/", http.StripPrefix("/axes", admin))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return lim, srv.URL + "/axes"
}

func TestAdminCommands(t *testing.T) {
	lim, url := adminServer(t)
	env := map[string]string{"AXESCTL_ADMIN_TOKEN": token}
	lockSome(lim)

	r := ctl(env, "-admin", url, "lockouts")
	if r.code != 0 || !strings.Contains(r.stdout, "192.0.2.1") || !strings.Contains(r.stdout, "alice") || !strings.Contains(r.stdout, "lockout(s)") {
		t.Fatalf("lockouts: %+v", r)
	}
	r = ctl(env, "-admin", url, "lockouts", "-json")
	var list struct {
		Count    int       `json:"count"`
		Lockouts []lockout `json:"lockouts"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || r.code != 0 {
		t.Fatalf("lockouts -json: %v %+v", err, r)
	}
	// Each client by IP, by username and by both.
	if list.Count != 6 || len(list.Lockouts) != 6 {
		t.Errorf("count %d, %d rows, want 6", list.Count, len(list.Lockouts))
	}

	r = ctl(env, "-admin", url, "stats", "-json")
	var stats map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &stats); err != nil || r.code != 0 {
		t.Fatalf("stats -json: %v %+v", err, r)
	}
	if stats["failures"] != float64(6) || stats["lockouts"] != float64(6) {
		t.Errorf("stats = %v", stats)
	}
	if r := ctl(env, "-admin", url, "stats"); r.code != 0 || !strings.HasPrefix(r.stdout, "entries") {
		t.Errorf("stats table: %+v", r)
	}

	// Reset the client (198.51.100.1, alice): its IP, its username and the
	// pair; the other client keeps its lock.
	r = ctl(env, "-admin", url, "reset", "-ip", "198.51.100.1", "-username", "alice")
	if r.code != 0 || !strings.Contains(r.stdout, "3 entries forgotten") {
		t.Errorf("reset both: %+v", r)
	}
	if lim.Locked(key("198.51.100.1", "alice")) {
		t.Error("the client is still locked")
	}
	if !lim.Locked(key("192.0.2.1", "someone")) {
		t.Error("another client lost its lock")
	}
	if r := ctl(env, "-admin", url, "reset", "-ip", "192.0.2.1", "-json"); r.code != 0 || !strings.Contains(r.stdout, `"reset": 2`) {
		t.Errorf("reset -ip: %+v", r)
	}
	if lim.Locked(key("192.0.2.1", "someone")) {
		t.Error("reset -ip left the IP locked")
	}
	lockSome(lim)
	if r := ctl(env, "-admin", url, "reset", "-username", "ALICE "); r.code != 0 {
		t.Errorf("reset -username: %+v", r)
	}
	if lim.Locked(key("203.0.113.5", "alice")) {
		t.Error("reset -username left alice locked")
	}
	if r := ctl(env, "-admin", url, "reset", "-all"); r.code != 0 {
		t.Errorf("reset -all: %+v", r)
	}
	if len(lim.Lockouts()) != 0 {
		t.Errorf("after reset -all: %v", lim.Lockouts())
	}
}

func TestAdminTokenFromFile(t *testing.T) {
	lim, url := adminServer(t)
	lockSome(lim)
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := ctl(nil, "-admin", url, "-token-file", f, "lockouts", "-json"); r.code != 0 {
		t.Errorf("%+v", r)
	}
}

func TestExitCodes(t *testing.T) {
	lim, url := adminServer(t)
	lockSome(lim)
	good := map[string]string{"AXESCTL_ADMIN_TOKEN": token}
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		msg  string
	}{
		{"wrong token", map[string]string{"AXESCTL_ADMIN_TOKEN": token + "x"}, []string{"-admin", url, "lockouts"}, 1, "refused the token"},
		{"no token", nil, []string{"-admin", url, "lockouts"}, 2, "no admin token"},
		{"no command", good, []string{"-admin", url}, 2, "no command"},
		{"unknown command", good, []string{"-admin", url, "unlock"}, 2, "unknown command"},
		{"both backends", good, []string{"-admin", url, "-redis", "127.0.0.1:1", "stats"}, 2, "exactly one"},
		{"no backend", good, []string{"stats"}, 2, "exactly one"},
		{"bad ip", good, []string{"-admin", url, "reset", "-ip", "300.1.1.1"}, 2, "not an IP"},
		{"reset without target", good, []string{"-admin", url, "reset"}, 2, "needs"},
		{"all with ip", good, []string{"-admin", url, "reset", "-all", "-ip", "192.0.2.1"}, 2, "excludes"},
		{"clear text to a remote host", good, []string{"-admin", "http://admin.example.com/axes", "stats"}, 2, "clear text"},
		{"not a URL", good, []string{"-admin", "ftp://x", "stats"}, 2, "not an http"},
		{"server down", good, []string{"-admin", "http://127.0.0.1:1/axes", "-timeout", "2s", "stats"}, 1, "admin"},
		{"not the admin", good, []string{"-admin", url + "/nothing", "stats"}, 1, "404"},
		{"bad flag", good, []string{"-admin", url, "lockouts", "-yaml"}, 2, "flag provided but not defined"},
		{"help", good, []string{"-h"}, 0, "usage:"},
	} {
		r := ctl(c.env, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.msg) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", c.name, r.code, r.stderr, c.code, c.msg)
		}
	}
	if !lim.Locked(key("192.0.2.1", "x")) {
		t.Error("a refused command changed the state")
	}
}

// A username chosen by an attacker cannot write control characters to the
// operator's terminal.
func TestTableQuotesControlCharacters(t *testing.T) {
	lim, url := adminServer(t)
	for range 3 {
		lim.Fail(key("192.0.2.7", "evil\x1b[2J\x1b]0;pwned\x07"))
	}
	r := ctl(map[string]string{"AXESCTL_ADMIN_TOKEN": token}, "-admin", url, "lockouts")
	if r.code != 0 || strings.ContainsAny(r.stdout, "\x1b\x07") {
		t.Errorf("table holds control characters: %q", r.stdout)
	}
}

// Redis: the command works on the keys servers share through redisstore.

func redisAddrs(t *testing.T, cluster bool) []string {
	t.Helper()
	addrs := []string{"127.0.0.1:6390"}
	env := "AXES_REDIS_ADDR"
	if cluster {
		addrs = strings.Split("127.0.0.1:7390,127.0.0.1:7391,127.0.0.1:7392", ",")
		env = "AXES_REDIS_CLUSTER"
	}
	if a := os.Getenv(env); a != "" {
		addrs = strings.Split(a, ",")
	}
	var c redis.UniversalClient
	if cluster {
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	} else {
		c = redis.NewClient(&redis.Options{Addr: addrs[0]})
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		msg := "Redis at " + strings.Join(addrs, ",") + " is not reachable (" + err.Error() + "); run .ci/redis.sh start, or set " + env
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return addrs
}

func TestRedisCommands(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		name := "standalone"
		if cluster {
			name = "cluster"
		}
		t.Run(name, func(t *testing.T) {
			addrs := redisAddrs(t, cluster)
			var b [6]byte
			rand.Read(b[:])
			prefix := "axesctltest:" + hex.EncodeToString(b[:]) + ":"
			var c redis.UniversalClient
			if cluster {
				c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
			} else {
				c = redis.NewClient(&redis.Options{Addr: addrs[0], ContextTimeoutEnabled: true})
			}
			defer c.Close()
			st, err := redisstore.New(c, redisstore.Options{Prefix: prefix, Secret: secret, NoLocalLocks: true})
			if err != nil {
				t.Fatal(err)
			}
			// A server of the fleet, with its own policy. Its cache of
			// locks learns of the command's resets by pub/sub, a moment
			// after the command returns; the test reads Redis directly.
			lim := axes.Must(axes.New(axes.Policy{Limit: 3, LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username}},
				axes.WithStore(st), axes.WithSecret(secret)))
			defer lim.Close()
			for range 3 {
				lim.Fail(key("192.0.2.1", "u1"))
				lim.Fail(key("198.51.100.1", "alice"))
			}
			env := map[string]string{"AXES_SECRET": string(secret)}
			base := []string{"-redis", strings.Join(addrs, ","), "-prefix", prefix}
			r := ctl(env, append(base, "lockouts", "-json")...)
			var list struct {
				Count    int       `json:"count"`
				Lockouts []lockout `json:"lockouts"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || r.code != 0 {
				t.Fatalf("lockouts: %v %+v", err, r)
			}
			if list.Count != 4 {
				t.Errorf("%d lockouts, want 4: %+v", list.Count, list.Lockouts)
			}
			if r := ctl(env, append(base, "stats")...); r.code != 0 || !strings.Contains(r.stdout, "lockouts") {
				t.Errorf("stats: %+v", r)
			}
			if r := ctl(env, append(base, "reset", "-ip", "198.51.100.1", "-username", "alice")...); r.code != 0 {
				t.Errorf("reset both: %+v", r)
			}
			if lim.Locked(key("198.51.100.1", "alice")) {
				t.Error("the client is still locked on the server")
			}
			if !lim.Locked(key("192.0.2.1", "u1")) {
				t.Error("another client lost its lock")
			}
			if r := ctl(env, append(base, "reset", "-ip", "192.0.2.1")...); r.code != 0 {
				t.Errorf("reset -ip: %+v", r)
			}
			if lim.Locked(key("192.0.2.1", "u1")) {
				t.Error("reset -ip left the IP locked on the server")
			}
			for range 3 {
				lim.Fail(key("192.0.2.2", "u2"))
			}
			if r := ctl(env, append(base, "reset", "-all")...); r.code != 0 {
				t.Errorf("reset -all: %+v", r)
			}
			if lim.Locked(key("192.0.2.2", "u2")) {
				t.Error("reset -all left a lock")
			}
			// A wrong secret is refused, not silently applied to no key.
			bad := map[string]string{"AXES_SECRET": "another secret of 32 bytes......"}
			if r := ctl(bad, append(base, "lockouts")...); r.code != 1 || !strings.Contains(r.stderr, "secret") {
				t.Errorf("wrong secret: %+v", r)
			}
		})
	}
}

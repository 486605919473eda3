package redisstore

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/redis/go-redis/v9"
)

// server is a throwaway redis-server process on a loopback port.
type server struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func startServer(t *testing.T, port int) *server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "redis-server", err)
	}
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, port: port, cmd: cmd}
	t.Cleanup(s.kill)
	c := redis.NewClient(&redis.Options{Addr: s.addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on port %d did not start", port)
		}
		runtime_Gosched()
	}
	return s
}

func (s *server) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

func (s *server) kill() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Signal(syscall.SIGCONT)
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

// signal sends sig to the server; for SIGSTOP it returns once the
// process is stopped (where /proc tells), so that no command sent after
// it can still run before the pause.
func (s *server) signal(sig os.Signal) {
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
	if sig != syscall.SIGSTOP {
		return
	}
	stat := "/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/stat"
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(stat)
		if err != nil {
			return // no /proc
		}
		// The state follows the command name in parentheses.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'T' {
			return
		}
		runtime_Gosched()
	}
	s.t.Fatal("redis-server did not stop")
}

// timed runs f and fails the test if it took longer than bound.
func timed(t *testing.T, what string, bound time.Duration, f func()) {
	t.Helper()
	start := time.Now()
	f()
	if d := time.Since(start); d > bound {
		t.Errorf("%s took %v, more than %v", what, d, bound)
	}
}

func wait(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestFailureModes stops Redis mid-run (first hung, then dead), restarts
// it, and checks for each failure mode the decisions it promises, that no
// call waits past the timeout, and that the store returns to Redis.
func TestFailureModes(t *testing.T) {
	for _, mode := range []FailureMode{FallbackLocal, FailClosed, FailOpen} {
		t.Run(mode.String(), func(t *testing.T) {
			srv := startServer(t, 0)
			c := redis.NewClient(&redis.Options{Addr: srv.addr(), ContextTimeoutEnabled: true})
			t.Cleanup(func() { c.Close() })
			degraded := make(chan struct{}, 8)
			recovered := make(chan struct{}, 8)
			const timeout = 100 * time.Millisecond
			// NoLocalLocks: the modes as decisions on Redis meet the
			// outage; a lock served locally answers without noticing it.
			s, err := New(c, Options{
				NoLocalLocks: true,
				OnFailure:    mode,
				Timeout:      timeout,
				OnDegraded:   func(error) { degraded <- struct{}{} },
				OnRecovered:  func() { recovered <- struct{}{} },
				Logger:       quiet,
			})
			if err != nil {
				t.Fatal(err)
			}
			l := axes.Must(axes.New(axes.Policy{Limit: 3}, axes.WithSecret(secret), axes.WithStore(s)))
			defer l.Close()
			ip := func(i byte) axes.Key { return axes.Key{IP: netip.AddrFrom4([4]byte{203, 0, 113, i})} }
			for range 3 {
				l.Fail(ip(1))
			}
			if v := l.Check(ip(1)); !v.Locked || v.Reason != axes.ReasonLockout {
				t.Fatalf("before the outage: %+v, want locked", v)
			}
			l.Fail(ip(2))

			// Outage: check what the mode promises.
			const bound = 2 * time.Second
			outage := func(phase string, base byte) {
				t.Helper()
				lockedKey := ip(1)
				ip := func(i byte) axes.Key { return ip(base + i) }
				var v1, v2, v3 axes.Verdict
				timed(t, phase+": Check", bound, func() { v1 = l.Check(lockedKey) })
				timed(t, phase+": Fail", bound, func() { v2 = l.Fail(ip(3)) })
				timed(t, phase+": Begin", bound, func() { a := l.Begin(ip(4)); v3 = a.Verdict(); a.Fail() })
				switch mode {
				case FallbackLocal:
					if !v1.Locked || v1.Reason != axes.ReasonLockout {
						t.Errorf("%s: a lock seen before the outage: %+v, want locked", phase, v1)
					}
					if v2.Locked || v3.Locked {
						t.Errorf("%s: fresh keys refused: %+v %+v", phase, v2, v3)
					}
				case FailClosed:
					for _, v := range []axes.Verdict{v1, v2, v3} {
						if !v.Locked || v.Reason != axes.ReasonUnavailable {
							t.Errorf("%s: %+v, want refused as unavailable", phase, v)
						}
					}
				case FailOpen:
					for _, v := range []axes.Verdict{v1, v2, v3} {
						if v.Locked {
							t.Errorf("%s: %+v, want unlocked", phase, v)
						}
					}
				}
			}

			// A hung server: calls give up at the timeout.
			srv.signal(syscall.SIGSTOP)
			outage("hung", 0)
			wait(t, "degradation", degraded)
			if mode == FallbackLocal {
				// Failures during the outage count locally.
				l.Fail(ip(3))
				if v := l.Fail(ip(3)); !v.Locked { // the third, after outage's
					t.Errorf("local counting during the outage: %+v, want locked", v)
				}
			}
			srv.signal(syscall.SIGCONT)
			wait(t, "recovery", recovered)
			if v := l.Check(ip(1)); !v.Locked {
				t.Errorf("after recovery: %+v, want the lock kept in Redis", v)
			}

			// A dead server, then a fresh one on the same port.
			srv.kill()
			outage("stopped", 100)
			wait(t, "second degradation", degraded)
			startServer(t, srv.port)
			wait(t, "second recovery", recovered)
			if s.Degraded() {
				t.Error("still degraded after recovery")
			}
			// Back on Redis (empty after the restart): a second server
			// sees this one's failures.
			for range 3 {
				l.Fail(ip(9))
			}
			c2 := redis.NewClient(&redis.Options{Addr: srv.addr(), ContextTimeoutEnabled: true})
			defer c2.Close()
			l2 := axes.Must(axes.New(axes.Policy{Limit: 3}, axes.WithSecret(secret), axes.WithStore(mustNew(t, c2, Options{Prefix: "axes:"}))))
			if v := l2.Check(ip(9)); !v.Locked {
				t.Errorf("after recovery another server sees %+v, want locked", v)
			}
			st := s.Stats()
			if st.Degradations != 2 || st.Recoveries != 2 || st.Fallbacks == 0 || st.Errors == 0 {
				t.Errorf("stats %+v", st)
			}
			if ls := l.Stats(); ls.Degradations != 2 || ls.Degraded {
				t.Errorf("the limiter's stats %+v, want 2 degradations and not degraded now", ls)
			}
			if err := l.Close(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestCloseStopsProbe checks that Close waits for the probe of a store
// whose Redis never answers.
func TestCloseStopsProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer c.Close()
	s, err := New(c, Options{OnFailure: FailClosed, Timeout: 50 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Degraded() {
		t.Fatal("not degraded without Redis")
	}
	l := axes.Must(axes.New(axes.Policy{}, axes.WithStore(s)))
	if v := l.Fail(axes.Key{}); v.Reason != axes.ReasonUnavailable {
		t.Errorf("verdict %+v, want unavailable", v)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestNewChecks covers the start-up checks: client options, the secret
// verifier and the eviction policy.
func TestNewChecks(t *testing.T) {
	c := newClient(t)
	if _, err := New(redis.NewClient(&redis.Options{Addr: c.Options().Addr}), Options{}); err == nil {
		t.Error("New accepted a client without ContextTimeoutEnabled")
	}
	p := prefix()
	mustNew(t, c, Options{Prefix: p, Secret: secret})
	mustNew(t, c, Options{Prefix: p, Secret: secret})
	other := []byte("another-secret-of-32-bytes-length")
	if _, err := New(c, Options{Prefix: p, Secret: other}); !errors.Is(err, ErrSecretMismatch) {
		t.Errorf("New with another secret: %v, want ErrSecretMismatch", err)
	}
	srv := startServer(t, 0)
	c2 := redis.NewClient(&redis.Options{Addr: srv.addr(), ContextTimeoutEnabled: true})
	defer c2.Close()
	if err := c2.ConfigSet(context.Background(), "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(c2, Options{RefuseEvictingPolicy: true}); err == nil {
		t.Error("New accepted allkeys-lru with RefuseEvictingPolicy")
	}
	s, err := New(c2, Options{Logger: quiet})
	if err != nil {
		t.Errorf("New refused allkeys-lru without RefuseEvictingPolicy: %v", err)
	} else {
		s.Close()
	}
}

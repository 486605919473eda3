package redisstore

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/redis/go-redis/v9"
)

// haSetup is a topology of Redis with replicas (Sentinel, or a cluster
// whose masters have a replica each) that .ci/redis-ha.sh started for one
// test, on ports and in a directory of its own, stopped at the end.
type haSetup struct {
	t   *testing.T
	dir string
	env map[string]string
}

// startHA starts topology ("sentinel" or "cluster"), or skips the test
// (fails it under CI=true) when redis-server is not installed.
func startHA(t *testing.T, topology string) *haSetup {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		msg := "redis-server is not installed (" + err.Error() + "); .ci/redis-ha.sh installs it"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	script, err := filepath.Abs("../.ci/redis-ha.sh")
	if err != nil {
		t.Fatal(err)
	}
	h := &haSetup{t: t, dir: t.TempDir(), env: map[string]string{}}
	n := 5
	if topology == "cluster" {
		n = 6
	}
	ports := strings.Trim(fmt.Sprint(freePorts(t, n)), "[]")
	cmd := exec.Command(script, "start", h.dir)
	cmd.Env = append(os.Environ(), "AXES_HA_TOPOLOGY="+topology,
		"AXES_HA_SENTINEL_PORTS="+ports, "AXES_HA_CLUSTER_PORTS="+ports)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t.Cleanup(func() { exec.Command(script, "stop", h.dir).Run() })
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("redis-ha.sh start: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			h.env[k] = v
		}
	}
	return h
}

// freePorts returns n consecutive free loopback ports whose cluster bus
// ports (port+10000) are free too.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	free := func(p int) bool {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return false
		}
		ln.Close()
		return true
	}
next:
	for range 100 {
		base := 20000 + rand.IntN(10000)
		ports := make([]int, n)
		for i := range ports {
			ports[i] = base + i
			if !free(ports[i]) || !free(ports[i]+10000) {
				continue next
			}
		}
		return ports
	}
	t.Fatal("no free ports")
	return nil
}

// kill sends SIGKILL to the server on port.
func (h *haSetup) kill(port string) { h.signal(port, syscall.SIGKILL) }

// signal sends sig to the server on port.
func (h *haSetup) signal(port string, sig syscall.Signal) {
	b, err := os.ReadFile(filepath.Join(h.dir, port, "redis.pid"))
	if err != nil {
		h.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		h.t.Fatal(err)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		h.t.Fatal(err)
	}
}

// client returns a new client of the topology: Sentinel's failover client,
// or a cluster client.
func (h *haSetup) client() redis.UniversalClient {
	var c redis.UniversalClient
	if s := h.env["AXES_REDIS_SENTINEL"]; s != "" {
		c = redis.NewFailoverClient(&redis.FailoverOptions{MasterName: h.env["AXES_REDIS_SENTINEL_MASTER"],
			SentinelAddrs: strings.Split(s, ","), ContextTimeoutEnabled: true, DialerRetries: 1})
	} else {
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(h.env["AXES_REDIS_HA_CLUSTER"], ","),
			ContextTimeoutEnabled: true})
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// master returns the port of the master that holds key, and that of its
// replica.
func (h *haSetup) master(c redis.UniversalClient, key string) (master, replica string) {
	h.t.Helper()
	ctx := context.Background()
	var m *redis.Client
	switch c := c.(type) {
	case *redis.ClusterClient:
		var err error
		if m, err = c.MasterForKey(ctx, key); err != nil {
			h.t.Fatal(err)
		}
	case *redis.Client:
		m = c
	}
	port, err := m.ConfigGet(ctx, "port").Result()
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := m.Info(ctx, "replication").Result()
	if err != nil {
		h.t.Fatal(err)
	}
	// slave0:ip=127.0.0.1,port=6491,state=online,offset=...,lag=0
	_, rest, ok := strings.Cut(info, "slave0:")
	if !ok {
		h.t.Fatalf("the master of %s has no replica:\n%s", key, info)
	}
	_, rest, _ = strings.Cut(rest, "port=")
	replica, _, _ = strings.Cut(rest, ",")
	return port["port"], replica
}

// isMaster reports whether the server on port has become a master.
func isMaster(port string) bool {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + port, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r, err := c.Do(ctx, "role").Slice()
	return err == nil && len(r) > 0 && r[0] == "master"
}

// failoverFigures is what one failover run measured.
type failoverFigures struct {
	keys, overLimit, excess, lostLocks, unacked int
	failover, recovery, worst                   time.Duration
}

// TestFailover attacks several limiters sharing Redis with replicas,
// SIGKILLs the master that holds the attacked keys mid-attack, waits for
// its replica's promotion and goes on attacking. It checks the bounds the
// README's "Failover" states: no call waits past Options.Timeout (with a
// scheduling margin), the stores return to Redis by themselves once the
// replica is promoted, each key admits at most Limit plus the attempts
// the failover lost (without WAIT, only attempts admitted within the
// replication lag before the kill; with WaitReplicas 1, only writes the
// replica did not acknowledge, counted in Stats.Unacknowledged), and the
// locks started before the kill are still there after it (with WAIT,
// every acknowledged one).
func TestFailover(t *testing.T) {
	runs := []struct {
		topology string
		wait     int
		lag      bool
	}{{"sentinel", 0, false}, {"sentinel", 1, false}, {"cluster", 0, false}, {"cluster", 1, false},
		{"sentinel", 0, true}, {"sentinel", 1, true}}
	for _, r := range runs {
		topology, wait := r.topology, r.wait
		name := fmt.Sprintf("%s/wait=%d", topology, wait)
		if r.lag {
			name += "/lagging-replica"
		}
		{
			t.Run(name, func(t *testing.T) {
				if os.Getenv("AXES_FAILOVER_ALL") == "" && (wait == 0 || r.lag) {
					t.Skip("one failover per topology (with WAIT) unless AXES_FAILOVER_ALL=1")
				}
				f := runFailover(t, topology, wait, r.lag)
				t.Logf("%s, WaitReplicas %d: %d keys attacked, %d admitted more than Limit (%d attempts beyond it), %d locks lost, %d writes unacknowledged before the promotion; promotion %v after the kill, stores back on Redis %v after it; slowest call %v",
					topology, wait, f.keys, f.overLimit, f.excess, f.lostLocks, f.unacked, f.failover.Round(time.Millisecond), f.recovery.Round(time.Millisecond), f.worst.Round(time.Millisecond))
			})
		}
	}
}

// The failover attack's parameters.
const (
	foLimit     = 5
	foServers   = 3
	foAttackers = 4 // goroutines per server
	foTimeout   = 250 * time.Millisecond
	// foMargin is the margin a call may take beyond foTimeout. On a loaded
	// 2-core machine (load average 5 to 8) under the race detector, calls
	// were seen returning up to 200ms after their context's deadline in
	// steady state and up to 1.3s once during a cluster failover (go-redis
	// reading a reply or greeting a new connection after the deadline,
	// the goroutine then waiting to run). A call that hung would wait out
	// go-redis's own defaults: DialTimeout 5s, ReadTimeout 3s.
	foMargin = time.Second
	// foRecovery bounds the wait for every store to decide in Redis again
	// after the promotion: the probe's back-off (at most 32 ProbeIntervals)
	// and the cluster client's reload of the slots.
	foRecovery = 20 * time.Second
	// foLag bounds the replication lag on loopback: without WAIT, what a
	// failover loses was written less than foLag before the kill.
	foLag = time.Second
	// foLagKeys is how many keys the attack locks while the replica is
	// paused, in the runs with a lagging replica.
	foLagKeys = 3
	// foKeysAfter is how many keys the attack locks after the recovery,
	// before it comes back to every key.
	foKeysAfter = 20
)

func foKey(i int64) axes.Key {
	return axes.Key{IP: netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})}
}

// runFailover runs one failover; with lag, the replica is paused
// (SIGSTOP) and disconnected from the master while the attack locks
// foLagKeys keys before the kill, and resumed just after it, so that it is
// promoted without the writes of the pause: a replication lag of some
// hundreds of milliseconds.
func runFailover(t *testing.T, topology string, wait int, lag bool) failoverFigures {
	h := startHA(t, topology)
	p := axes.Policy{Limit: foLimit, Cooloff: axes.Fixed(time.Hour)}
	o := Options{Prefix: prefix(), Timeout: foTimeout, OnFailure: FailClosed, ProbeInterval: 10 * time.Millisecond,
		WaitReplicas: wait, Logger: quiet}
	var ls []*axes.Limiter
	var stores []*Store
	for range foServers {
		s := mustNew(t, h.client(), o)
		l := axes.Must(axes.New(p, axes.WithSecret(secret), axes.WithStore(s)))
		t.Cleanup(func() { l.Close() })
		ls, stores = append(ls, l), append(stores, s)
	}
	// The checker reads Redis alone (no local lock cache), retrying while
	// its store is unavailable.
	oc := o
	oc.NoLocalLocks = true
	checker := axes.Must(axes.New(p, axes.WithSecret(secret), axes.WithStore(mustNew(t, h.client(), oc))))
	t.Cleanup(func() { checker.Close() })
	check := func(k axes.Key) (v axes.Verdict) {
		waitFor(t, "the checker's store", func() bool {
			v = checker.Check(k)
			return v.Reason != axes.ReasonUnavailable
		})
		return v
	}
	master, replica := h.master(h.client(), stores[0].root)

	// Locks started before the attack, checked during it.
	pre := make([]axes.Key, 8)
	for i := range pre {
		pre[i] = axes.Key{IP: netip.AddrFrom4([4]byte{10, 8, 0, byte(i)})}
		for range foLimit {
			ls[0].Fail(pre[i])
		}
		if v := check(pre[i]); v.Reason != axes.ReasonLockout {
			t.Fatalf("setup: %v is not locked: %+v", pre[i].IP, v)
		}
	}

	// The attack: every goroutine reserves and fails attempts on the
	// current key, until it is locked (or busy), then moves to the next;
	// and checks the locked keys.
	var (
		cur      atomic.Int64
		stop     atomic.Bool
		mu       sync.Mutex
		admitted = map[int64][]time.Time{} // admission instants per key
		lockedAt = map[int64]time.Time{}   // when each key's lock started
		worst    time.Duration
		worstOp  string
		unlocked []string // checks of locked keys that found them unlocked
		wg       sync.WaitGroup
	)
	timed := func(op string, f func()) {
		start := time.Now()
		f()
		d := time.Since(start)
		mu.Lock()
		if d > worst {
			worst, worstOp = d, op
		}
		mu.Unlock()
	}
	for _, l := range ls {
		for g := range foAttackers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; !stop.Load(); n++ {
					i := cur.Load()
					k := foKey(i)
					var a axes.Attempt
					timed("begin", func() { a = l.Begin(k) })
					if !a.Allowed() {
						if r := a.Verdict().Reason; r == axes.ReasonLockout || r == axes.ReasonBusy {
							cur.CompareAndSwap(i, i+1)
						}
					} else {
						at := time.Now()
						var v axes.Verdict
						timed("settle-fail", func() { v = a.Fail() })
						mu.Lock()
						admitted[i] = append(admitted[i], at)
						if v.Reason == axes.ReasonLockout {
							if _, ok := lockedAt[i]; !ok {
								lockedAt[i] = time.Now()
							}
						}
						mu.Unlock()
					}
					if n%4 == g%4 {
						pk := pre[n%len(pre)]
						var v axes.Verdict
						timed("check", func() { v = l.Check(pk) })
						if !v.Locked {
							mu.Lock()
							unlocked = append(unlocked, fmt.Sprintf("%v: %+v", pk.IP, v))
							mu.Unlock()
						}
					}
				}
			}()
		}
	}
	t.Cleanup(func() { stop.Store(true); wg.Wait() })

	waitFor(t, "the attack to lock 10 keys", func() bool { return cur.Load() >= 10 })
	var pausedAt time.Time
	if lag {
		pausedAt = time.Now()
		// The replica pauses and the master drops it: the writes that
		// follow are not replicated (those already sent wait in the
		// paused replica's socket, and it reads them when it resumes).
		h.signal(replica, syscall.SIGSTOP)
		t.Cleanup(func() { h.signal(replica, syscall.SIGCONT) })
		mc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + master, ContextTimeoutEnabled: true})
		err := mc.ClientKillByFilter(context.Background(), "TYPE", "replica").Err()
		mc.Close()
		if err != nil {
			t.Fatal(err)
		}
		paused := cur.Load()
		waitFor(t, "the attack to lock keys while the replica is paused", func() bool { return cur.Load() >= paused+foLagKeys })
	}
	h.kill(master)
	killed := time.Now()
	// What the failover may lose without WAIT was written after lagFrom:
	// within foLag before the kill, or before the replica was dropped
	// (what it had not acknowledged then) and since.
	lagFrom := killed.Add(-foLag)
	if lag {
		lagFrom = pausedAt.Add(-foLag)
	}
	if lag {
		h.signal(replica, syscall.SIGCONT)
	}
	keysAtKill := cur.Load()
	waitFor(t, "the replica's promotion", func() bool { return isMaster(replica) })
	promoted := time.Now()
	// Writes that replicas did not acknowledge before the promotion: the
	// only ones WAIT lets a failover lose (the old master is dead and the
	// new one not yet promoted in between, so no write succeeds there).
	unackedBefore := 0
	for _, s := range stores {
		unackedBefore += int(s.Stats().Unacknowledged)
	}
	// Each store notices the new master by itself: a decision on a fresh
	// key is made in Redis again.
	fresh := int64(60000)
	for i, s := range stores {
		waitWithin(t, foRecovery, fmt.Sprintf("store %d back on Redis", i), func() bool {
			before := s.Stats()
			fresh++
			ls[i].Check(foKey(fresh))
			after := s.Stats()
			return !after.Degraded && after.Fallbacks == before.Fallbacks && after.RoundTrips > before.RoundTrips
		})
	}
	recovered := time.Now()
	keysAtRecovery := cur.Load()
	waitFor(t, "the attack to lock more keys", func() bool { return cur.Load() >= keysAtRecovery+foKeysAfter })
	stop.Store(true)
	wg.Wait()
	// The attacker comes back to every key: what each admits now, after
	// the failover, adds to what it admitted before.
	for i := int64(0); i <= cur.Load(); i++ {
		l, k := ls[i%foServers], foKey(i)
		for {
			var a axes.Attempt
			timed("begin", func() { a = l.Begin(k) })
			if !a.Allowed() {
				if a.Verdict().Reason == axes.ReasonUnavailable {
					continue
				}
				break
			}
			admitted[i] = append(admitted[i], time.Now())
			timed("settle-fail", func() { a.Fail() })
		}
	}

	f := failoverFigures{failover: promoted.Sub(killed), recovery: recovered.Sub(promoted), worst: worst, unacked: unackedBefore}
	for _, s := range stores {
		if st := s.Stats(); wait > 0 && st.Waited == 0 {
			t.Errorf("WaitReplicas %d, but no write waited: %+v", wait, st)
		}
	}
	if worst > foTimeout+foMargin {
		t.Errorf("a call (%s) took %v, past Options.Timeout %v by more than %v", worstOp, worst, foTimeout, foMargin)
	}
	if keysAtKill == keysAtRecovery && cur.Load() == keysAtRecovery {
		t.Errorf("the attack made no progress")
	}
	// Admissions per key: Limit, plus at most what the failover lost.
	for i := int64(0); i <= cur.Load(); i++ {
		at := admitted[i]
		if len(at) == 0 {
			continue
		}
		f.keys++
		if len(at) <= foLimit {
			continue
		}
		f.overLimit++
		f.excess += len(at) - foLimit
		// Admissions the failover may have lost: written on the old master
		// in the lag before the kill. Every admission before the promotion
		// was written on the old master (FailClosed admits nothing in
		// between), some a few milliseconds before the kill but seen by
		// the attacker after it.
		lost := 0
		for _, a := range at {
			if a.Before(promoted) && !a.Before(lagFrom) {
				lost++
			}
		}
		if len(at) > foLimit+lost {
			rel := make([]string, len(at))
			for j, a := range at {
				rel[j] = a.Sub(killed).Round(time.Millisecond).String()
			}
			t.Errorf("key %d admitted %d attempts; the bound is Limit %d + %d admitted within %v before the kill (admitted at %s from the kill; keys %d at the kill)", i, len(at), foLimit, lost, killed.Sub(lagFrom), strings.Join(rel, " "), keysAtKill)
		}
	}
	if wait > 0 && f.excess > f.unacked {
		t.Errorf("with WaitReplicas %d: %d attempts admitted beyond Limit, but only %d writes unacknowledged before the promotion", wait, f.excess, f.unacked)
	}
	// Locks started before the kill are still there (in Redis, read by a
	// store without the local cache), except, without WAIT, those started
	// within the replication lag before the kill.
	for _, k := range pre {
		if v := check(k); v.Reason != axes.ReasonLockout {
			f.lostLocks++
			t.Errorf("lock of %v, started before the attack (before any lag), lost: %+v", k.IP, v)
		}
	}
	for i, at := range lockedAt {
		if !at.Before(promoted) {
			continue
		}
		if v := check(foKey(i)); v.Reason != axes.ReasonLockout {
			f.lostLocks++
			if wait > 0 && f.lostLocks > f.unacked {
				t.Errorf("lock of key %d, started and acknowledged %v before the kill, lost: %+v", i, killed.Sub(at), v)
			}
			if wait == 0 && at.Before(lagFrom) {
				t.Errorf("lock of key %d, started %v before the kill (the lag was %v), lost", i, killed.Sub(at), killed.Sub(lagFrom))
			}
		}
	}
	for _, u := range unlocked {
		t.Errorf("a locked key was found unlocked: %s", u)
	}
	return f
}

// waitWithin polls cond until it holds, failing the test after d.
func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWaitOptions: New checks WaitReplicas and WaitTimeout.
func TestWaitOptions(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer c.Close()
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}, ContextTimeoutEnabled: true})
	defer ring.Close()
	for _, tc := range []struct {
		c redis.UniversalClient
		o Options
	}{
		{c, Options{WaitReplicas: -1}},
		{c, Options{WaitReplicas: 1, WaitTimeout: -time.Millisecond}},
		{c, Options{WaitReplicas: 1, SpreadSlots: true}},
		{ring, Options{WaitReplicas: 1}},
	} {
		if s, err := New(tc.c, tc.o); err == nil {
			s.Close()
			t.Errorf("New(%T, %+v) accepted", tc.c, tc.o)
		} else if !strings.HasPrefix(err.Error(), "redisstore: ") {
			t.Errorf("error %q lacks the package prefix", err)
		}
	}
}

// TestWaitWithoutReplica: on a master without replicas, WaitReplicas 1
// keeps the verdicts and counts every lock-starting write unacknowledged
// (checks do not wait); after the first short WAIT the writes of the next
// second do not wait. The first call also loads the script (NOSCRIPT) on
// this fresh server.
func TestWaitWithoutReplica(t *testing.T) {
	srv := startServer(t, 0)
	c := redis.NewClient(&redis.Options{Addr: srv.addr(), ContextTimeoutEnabled: true})
	defer c.Close()
	const waitTimeout = 200 * time.Millisecond
	s := mustNew(t, c, Options{Timeout: 2 * time.Second, WaitReplicas: 1, WaitTimeout: waitTimeout})
	l := axes.Must(axes.New(axes.Policy{Limit: 3, Cooloff: axes.Fixed(time.Hour)}, axes.WithSecret(secret), axes.WithStore(s)))
	defer l.Close()
	k := axes.Key{IP: netip.MustParseAddr("192.0.2.9")}
	start := time.Now()
	if v := l.Fail(k); v.Locked || v.Failures != 1 {
		t.Fatalf("first failure: %+v", v)
	}
	if d := time.Since(start); d < waitTimeout {
		t.Errorf("the first write returned after %v, before WaitTimeout %v", d, waitTimeout)
	}
	start = time.Now()
	l.Fail(k)
	if v := l.Fail(k); !v.Locked || v.Reason != axes.ReasonLockout {
		t.Fatalf("third failure: %+v, want locked", v)
	}
	if d := time.Since(start); d >= waitTimeout {
		t.Errorf("two writes after a short WAIT took %v; they should not wait", d)
	}
	if v := l.Check(k); !v.Locked {
		t.Fatalf("check: %+v, want locked", v)
	}
	st := s.Stats()
	if st.Waited != 1 || st.Unacknowledged != 3 || st.Degraded || st.Fallbacks != 0 {
		t.Errorf("stats %+v: want 1 write waited, 3 unacknowledged, no fallback", st)
	}
}

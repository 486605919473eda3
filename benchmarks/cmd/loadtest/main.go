// Command loadtest measures redisstore under a mixed load: N server
// processes (this command, run again as workers) share one Redis, each
// under M concurrent clients, some attackers (many failures on a few
// usernames from a few IPs, so that most of their attempts meet a lock) and
// the rest legitimate users (a failure now and then, then a success). For
// every cell (topology, local lock cache on or off, N) it reports the
// decisions per second of all the processes together, the p50 and p99
// latency of one decision, Redis's CPU time per decision (the growth of
// INFO cpu's used_cpu_sys + used_cpu_user over the run, by node for a
// Cluster) and the share of decisions answered from the local lock cache.
//
//	go run ./cmd/loadtest -duration 5s -procs 1,2,4 -clients 64 -topology standalone,cluster
//
// With -workload fresh every decision is instead the first failure of a
// client never seen (its own IP and username), the costliest decision for
// Redis: the "users" columns then count them all.
//
// Every cell runs on a fresh key prefix, deleted afterwards. Redis is
// found at the addresses .ci/redis.sh starts unless -addr and -cluster say
// otherwise.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/redisstore"
	"github.com/redis/go-redis/v9"
)

// config is what the parent passes to each worker.
type config struct {
	Topology  string        `json:"topology"` // standalone or cluster
	Addrs     []string      `json:"addrs"`
	Prefix    string        `json:"prefix"`
	Duration  time.Duration `json:"duration"`
	Clients   int           `json:"clients"`
	Attackers float64       `json:"attackers"` // the share of logins that are attacks
	Fresh     bool          `json:"fresh"`     // every decision a first failure of a new client
	Cache     bool          `json:"cache"`     // the local lock cache
	Worker    int           `json:"worker"`
}

// result is what a worker reports.
type result struct {
	Decisions  uint64   `json:"decisions"`
	Users      uint64   `json:"users"` // decisions of legitimate users
	Errors     uint64   `json:"errors"`
	Seconds    float64  `json:"seconds"`
	Buckets    []uint64 `json:"buckets"`     // latency histogram of the users' decisions, see bucket
	Attacks    []uint64 `json:"attack_hist"` // latency histogram of the attacks
	RoundTrips uint64   `json:"round_trips"`
	Saved      uint64   `json:"saved"`
}

// Latencies are counted in buckets 2% wide from 1µs: bucket(ns) is the
// index, lower(i) its lower bound.
const (
	bucketGrowth = 1.02
	nBuckets     = 1200 // up to about 20s
)

func bucket(d time.Duration) int {
	us := float64(d) / 1e3
	if us <= 1 {
		return 0
	}
	return min(int(math.Log(us)/math.Log(bucketGrowth))+1, nBuckets-1)
}

func lower(i int) time.Duration {
	if i == 0 {
		return 0
	}
	return time.Duration(math.Pow(bucketGrowth, float64(i-1)) * 1e3)
}

// quantile returns the lower bound of the bucket that holds quantile q.
func quantile(b []uint64, q float64) time.Duration {
	var total uint64
	for _, n := range b {
		total += n
	}
	if total == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, n := range b {
		seen += n
		if seen >= want {
			return lower(i)
		}
	}
	return lower(len(b) - 1)
}

// secret is the limiter secret every process shares.
var secret = []byte("loadtest secret, the same for every server process")

// policy is the lockout policy under test: Fail on {IP, IP|Username}.
var policy = axes.Policy{
	Limit:     5,
	LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username},
	Cooloff:   axes.Fixed(10 * time.Minute),
	Window:    10 * time.Minute,

	ResetOnSuccess: true,
}

func newClient(topology string, addrs []string) redis.UniversalClient {
	if topology == "cluster" {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true, PoolSize: 32})
	}
	return redis.NewClient(&redis.Options{Addr: addrs[0], ContextTimeoutEnabled: true, PoolSize: 32})
}

// work runs one worker: it waits for a line on stdin, runs the load for
// the duration and prints its result as JSON.
func work(cfg config, in io.Reader, out io.Writer) error {
	c := newClient(cfg.Topology, cfg.Addrs)
	defer c.Close()
	st, err := redisstore.New(c, redisstore.Options{Prefix: cfg.Prefix, NoLocalLocks: !cfg.Cache, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer st.Close()
	l, err := axes.New(policy, axes.WithSecret(secret), axes.WithStore(st))
	if err != nil {
		return err
	}
	defer l.Close()
	// One decision first, so that the script is loaded before the clock
	// starts.
	l.Check(axes.Key{IP: netip.MustParseAddr("192.0.2.1"), Username: "warmup"})
	if _, err := fmt.Fprintln(out, "ready"); err != nil {
		return err
	}
	if _, err := bufio.NewReader(in).ReadString('\n'); err != nil {
		return err
	}
	before := st.Stats()
	var (
		decisions, users, errs atomic.Uint64
		mu                     sync.Mutex
		hist                   = make([]uint64, nBuckets)
		attacks                = make([]uint64, nBuckets)
		wg                     sync.WaitGroup
	)
	start := time.Now()
	stop := start.Add(cfg.Duration)
	for g := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]uint64, nBuckets)
			rng := mrand.New(mrand.NewPCG(uint64(cfg.Worker), uint64(g)))
			var n, u, e uint64
			attack := make([]uint64, nBuckets)
			timed := func(h []uint64, f func() bool) {
				t := time.Now()
				if !f() {
					e++
				}
				h[bucket(time.Since(t))]++
				n++
			}
			for i := 0; time.Now().Before(stop); i++ {
				if cfg.Fresh {
					// A client never seen, failing once: a decision that
					// reads, counts and writes both dimensions.
					id := uint32(cfg.Worker)<<28 | uint32(g)<<20 | uint32(i&0xfffff)
					k := axes.Key{IP: netip.AddrFrom4([4]byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}),
						Username: "new" + strconv.FormatUint(uint64(id), 36)}
					timed(local, func() bool { return !l.Fail(k).Locked })
					u++
					continue
				}
				if rng.Float64() < cfg.Attackers {
					// A few IPs try a few usernames, shared by every
					// process: after Limit failures each pair is locked.
					k := axes.Key{IP: netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(4))}),
						Username: "admin" + strconv.Itoa(rng.IntN(8))}
					timed(attack, func() bool { l.Fail(k); return true })
					continue
				}
				// A legitimate user: its own address and name; one
				// login in four starts with a mistyped password.
				id := uint32(cfg.Worker)<<24 | uint32(g)<<14 | uint32(i&0x3fff)
				k := axes.Key{IP: netip.AddrFrom4([4]byte{10, byte(id >> 16), byte(id >> 8), byte(id)}),
					Username: "user" + strconv.FormatUint(uint64(id), 36)}
				if rng.IntN(4) == 0 {
					timed(local, func() bool { return !l.Fail(k).Locked })
					u++
				}
				timed(local, func() bool { l.Success(k); return true })
				u++
			}
			decisions.Add(n)
			errs.Add(e)
			users.Add(u)
			mu.Lock()
			for i := range local {
				hist[i] += local[i]
				attacks[i] += attack[i]
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	after := st.Stats()
	r := result{Decisions: decisions.Load(), Users: users.Load(), Errors: errs.Load() + after.Errors - before.Errors,
		Seconds: time.Since(start).Seconds(), Buckets: hist, Attacks: attacks,
		RoundTrips: after.RoundTrips - before.RoundTrips, Saved: after.RoundTripsSaved - before.RoundTripsSaved}
	return json.NewEncoder(out).Encode(r)
}

// cell is one line of the table.
type cell struct {
	Topology    string
	Cache       bool
	Procs       int
	Clients     int
	Decisions   uint64
	Errors      uint64
	PerSecond   float64
	UsersPerSec float64         // the legitimate users' decisions
	P50, P99    time.Duration   // of the users' decisions
	AP50, AP99  time.Duration   // of the attacks
	CPUPerDec   []time.Duration // by node
	TripsPerDec float64
	SavedShare  float64
}

// masters returns a client of each node whose CPU the cell measures.
func masters(ctx context.Context, topology string, addrs []string) ([]*redis.Client, error) {
	if topology != "cluster" {
		return []*redis.Client{redis.NewClient(&redis.Options{Addr: addrs[0]})}, nil
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer cc.Close()
	var mu sync.Mutex
	var out []*redis.Client
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		out = append(out, redis.NewClient(&redis.Options{Addr: c.Options().Addr}))
		return nil
	})
	slices.SortFunc(out, func(a, b *redis.Client) int { return strings.Compare(a.Options().Addr, b.Options().Addr) })
	return out, err
}

// cpu returns each node's used_cpu_sys + used_cpu_user.
func cpu(ctx context.Context, nodes []*redis.Client) ([]float64, error) {
	out := make([]float64, len(nodes))
	for i, c := range nodes {
		info, err := c.Info(ctx, "cpu").Result()
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(info, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return nil, err
				}
				out[i] += f
			}
		}
	}
	return out, nil
}

// runCell starts procs workers, releases them together and merges their
// results.
func runCell(ctx context.Context, self string, cfg config, procs int) (cell, error) {
	cl := cell{Topology: cfg.Topology, Cache: cfg.Cache, Procs: procs, Clients: cfg.Clients}
	var b [6]byte
	rand.Read(b[:])
	cfg.Prefix = "axesload:" + hex.EncodeToString(b[:]) + ":"
	nodes, err := masters(ctx, cfg.Topology, cfg.Addrs)
	if err != nil {
		return cl, err
	}
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	type proc struct {
		cmd *exec.Cmd
		in  io.WriteCloser
		out *bufio.Reader
	}
	ps := make([]proc, procs)
	for i := range ps {
		w := cfg
		w.Worker = i
		j, _ := json.Marshal(w)
		cmd := exec.CommandContext(ctx, self, "-worker", string(j))
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return cl, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return cl, err
		}
		if err := cmd.Start(); err != nil {
			return cl, err
		}
		ps[i] = proc{cmd: cmd, in: in, out: bufio.NewReader(out)}
		defer cmd.Wait()
		defer in.Close()
	}
	for _, p := range ps {
		if line, err := p.out.ReadString('\n'); err != nil || line != "ready\n" {
			return cl, fmt.Errorf("worker did not start: %q %v", line, err)
		}
	}
	cpu0, err := cpu(ctx, nodes)
	if err != nil {
		return cl, err
	}
	for _, p := range ps {
		if _, err := io.WriteString(p.in, "go\n"); err != nil {
			return cl, err
		}
	}
	hist := make([]uint64, nBuckets)
	attacks := make([]uint64, nBuckets)
	var users uint64
	var secs float64
	var trips, saved uint64
	for _, p := range ps {
		var r result
		if err := json.NewDecoder(p.out).Decode(&r); err != nil {
			return cl, fmt.Errorf("worker result: %w", err)
		}
		cl.Decisions += r.Decisions
		cl.Errors += r.Errors
		secs = max(secs, r.Seconds)
		trips += r.RoundTrips
		saved += r.Saved
		for i, x := range r.Buckets {
			hist[i] += x
		}
		for i, x := range r.Attacks {
			attacks[i] += x
		}
		users += r.Users
	}
	cpu1, err := cpu(ctx, nodes)
	if err != nil {
		return cl, err
	}
	if cl.Decisions == 0 || secs == 0 {
		return cl, errors.New("no decisions")
	}
	cl.PerSecond = float64(cl.Decisions) / secs
	cl.UsersPerSec = float64(users) / secs
	cl.P50, cl.P99 = quantile(hist, 0.50), quantile(hist, 0.99)
	cl.AP50, cl.AP99 = quantile(attacks, 0.50), quantile(attacks, 0.99)
	for i := range nodes {
		cl.CPUPerDec = append(cl.CPUPerDec, time.Duration((cpu1[i]-cpu0[i])*1e9/float64(cl.Decisions)))
	}
	cl.TripsPerDec = float64(trips) / float64(cl.Decisions)
	cl.SavedShare = float64(saved) / float64(cl.Decisions)
	cleanup(ctx, cfg)
	return cl, nil
}

// cleanup deletes the cell's keys.
func cleanup(ctx context.Context, cfg config) {
	c := newClient(cfg.Topology, cfg.Addrs)
	defer c.Close()
	st, err := redisstore.New(c, redisstore.Options{Prefix: cfg.Prefix, NoLocalLocks: true, Timeout: 5 * time.Second})
	if err != nil {
		return
	}
	defer st.Close()
	st.ResetAll(ctx)
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func us(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e3, 'f', 0, 64) }

// printTable writes the cells as a Markdown table.
func printTable(w io.Writer, cells []cell) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| topology\t| lock cache\t| processes × clients\t| decisions/s\t| of which users\t| users p50 / p99 µs\t| attacks p50 / p99 µs\t| Redis CPU µs/decision (by node)\t| round trips/decision\t| from cache\t| errors\t|")
	fmt.Fprintln(tw, "| ---\t| ---\t| ---\t| ---:\t| ---:\t| ---:\t| ---:\t| ---\t| ---:\t| ---:\t| ---:\t|")
	for _, c := range cells {
		cache := "off"
		if c.Cache {
			cache = "on"
		}
		var cpus []string
		var total time.Duration
		for _, d := range c.CPUPerDec {
			cpus = append(cpus, strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64))
			total += d
		}
		cpuCol := cpus[0]
		if len(cpus) > 1 {
			cpuCol = strconv.FormatFloat(float64(total)/1e3, 'f', 1, 64) + " (" + strings.Join(cpus, " + ") + ")"
		}
		fmt.Fprintf(tw, "| %s\t| %s\t| %d × %d\t| %.0f\t| %.0f\t| %s / %s\t| %s / %s\t| %s\t| %.3f\t| %.0f%%\t| %d\t|\n",
			c.Topology, cache, c.Procs, c.Clients, c.PerSecond, c.UsersPerSec, us(c.P50), us(c.P99), us(c.AP50), us(c.AP99), cpuCol,
			c.TripsPerDec, 100*c.SavedShare, c.Errors)
	}
	tw.Flush()
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// run is main, with its arguments and streams.
func run(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	var (
		duration  = fs.Duration("duration", 5*time.Second, "length of each cell")
		procs     = fs.String("procs", "1,2,4", "server process counts, comma-separated")
		clients   = fs.Int("clients", 64, "concurrent clients in each process")
		attackers = fs.Float64("attackers", 0.5, "share of the logins that are attacks (the rest are users)")
		workload  = fs.String("workload", "mixed", "mixed (attacks and users), or fresh (every decision the first failure of a new client)")
		topology  = fs.String("topology", "standalone,cluster", "standalone, cluster, or both")
		cache     = fs.String("cache", "on,off", "the local lock cache: on, off, or both")
		addr      = fs.String("addr", envOr("AXES_REDIS_ADDR", "127.0.0.1:6390"), "the standalone Redis")
		cluster   = fs.String("cluster", envOr("AXES_REDIS_CLUSTER", "127.0.0.1:7390,127.0.0.1:7391,127.0.0.1:7392"), "the Cluster's nodes, comma-separated")
		worker    = fs.String("worker", "", "internal: run as a worker with this JSON configuration")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *worker != "" {
		var cfg config
		if err := json.Unmarshal([]byte(*worker), &cfg); err != nil {
			return err
		}
		return work(cfg, stdin, stdout)
	}
	ns, err := ints(*procs)
	if err != nil {
		return err
	}
	if *clients < 1 || *attackers < 0 || *attackers > 1 || *duration <= 0 {
		return errors.New("need -clients >= 1, -attackers in [0, 1] and -duration > 0")
	}
	if *workload != "mixed" && *workload != "fresh" {
		return fmt.Errorf("-workload: unknown %q", *workload)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ctx := context.Background()
	var cells []cell
	for _, topo := range strings.Split(*topology, ",") {
		addrs := []string{*addr}
		switch topo {
		case "standalone":
		case "cluster":
			addrs = strings.Split(*cluster, ",")
		default:
			return fmt.Errorf("unknown topology %q", topo)
		}
		for _, cs := range strings.Split(*cache, ",") {
			if cs != "on" && cs != "off" {
				return fmt.Errorf("-cache: unknown %q", cs)
			}
			for _, n := range ns {
				cfg := config{Topology: topo, Addrs: addrs, Duration: *duration, Clients: *clients,
					Attackers: *attackers, Cache: cs == "on", Fresh: *workload == "fresh"}
				c, err := runCell(ctx, self, cfg, n)
				if err != nil {
					return fmt.Errorf("%s, cache %s, %d processes: %w", topo, cs, n, err)
				}
				cells = append(cells, c)
				fmt.Fprintf(os.Stderr, "%s cache=%s procs=%d: %.0f decisions/s\n", topo, cs, n, c.PerSecond)
			}
		}
	}
	printTable(stdout, cells)
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

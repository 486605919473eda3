package redisstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Batching: the script calls of concurrent decisions share round trips.
//
// A decision whose call finds fewer than maxFlights pipelines in flight
// sends its call at once, alone; the calls that arrive while maxFlights are
// in flight wait in a queue, and the pipeline that ends first takes them
// all (up to maxBatch) into its next round trip, on a goroutine of its own,
// so that no caller waits for the calls of others once its own reply is in.
// In the one-slot layout the calls of a pipeline are merged into script
// calls of up to maxMerge decisions each, which run the decisions one after
// the other, each atomic as alone and answered on its own; a merged call
// pays the script's fixed cost (the call, its setup, the footprint count)
// once for all of them. Under SpreadSlots every call stays a call of its own.
// A pipeline saves the round trips, the system calls and the reply parsing
// of the calls it groups. Each caller waits on
// its own context: one that gives up returns at once (the script's deadline
// argument keeps a call that starts late from taking effect), and one that
// gave up before its call was sent is dropped from the pipeline. A
// pipeline's own context ends at the latest deadline of its calls.
//
// In Cluster mode go-redis splits a pipeline by node; in the default
// one-slot layout every call goes to the node of the hash tag.

// maxFlights is the number of pipelines of decisions in flight at once.
const maxFlights = 2

// maxBatch bounds the calls in one pipeline.
const maxBatch = 256

// call is the script call of one decision.
type call struct {
	ctx  context.Context
	cmd  *redis.Cmd
	done chan struct{}
}

// batcher queues calls while maxFlights pipelines are in flight.
type batcher struct {
	mu      sync.Mutex
	flights int
	queue   []*call
}

// decide sends the script call of one decision, the command args
// (FCALL or EVALSHA, the function or the script, the keys and the
// arguments), and returns
// its reply. It is the one place where a decision's script call leaves
// for Redis: alone, or in the pipeline of the decisions queued while
// others were in flight (see exec).
func (s *Store) decide(ctx context.Context, args []any) (any, error) {
	c := &call{ctx: ctx, cmd: redis.NewCmd(ctx, args...)}
	b := &s.batch
	b.mu.Lock()
	if b.flights < maxFlights {
		b.flights++
		b.mu.Unlock()
		s.exec([]*call{c})
		s.next()
		return c.cmd.Val(), c.cmd.Err()
	}
	c.done = make(chan struct{})
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	select {
	case <-c.done:
		return c.cmd.Val(), c.cmd.Err()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// next hands the flight just ended to the queued calls, if any, on a new
// goroutine that runs pipelines until the queue is empty.
func (s *Store) next() {
	b := &s.batch
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.flights--
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	go func() {
		for {
			b.mu.Lock()
			if len(b.queue) == 0 {
				b.flights--
				b.mu.Unlock()
				return
			}
			n := min(len(b.queue), maxBatch)
			batch := make([]*call, n)
			copy(batch, b.queue)
			rest := copy(b.queue, b.queue[n:])
			clear(b.queue[rest:])
			b.queue = b.queue[:rest]
			b.mu.Unlock()
			s.exec(batch)
			for _, c := range batch {
				close(c.done)
			}
		}
	}()
}

// exec sends the calls of batch in one round trip (two when the script
// must be loaded first), leaving each reply or error in its call's cmd.
// Calls whose caller gave up before the round trip are not sent. A batch
// of one call runs on its caller's context; a larger one until the latest
// deadline of its calls. In the one-slot layout the calls of a batch are
// merged, up to maxMerge at a time, into one script call that runs their
// decisions in order, each as before (see merge).
func (s *Store) exec(batch []*call) {
	live := batch[:0:0]
	var end time.Time
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.cmd.SetErr(err)
			continue
		}
		dl, ok := c.ctx.Deadline()
		if !ok {
			dl = time.Now().Add(s.o.Timeout)
		}
		if dl.After(end) {
			end = dl
		}
		live = append(live, c)
	}
	switch len(live) {
	case 0:
		return
	case 1:
		c := live[0]
		s.n.trips.Add(1)
		_ = s.c.Process(c.ctx, c.cmd)
		if err := c.cmd.Err(); err != nil && missingScript(err) {
			s.reload(c.ctx, live)
		}
		unwrap(c.cmd)
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	// The script calls: one per group of merged calls, or per call.
	var groups [][]*call
	sent := live
	if !s.o.SpreadSlots {
		sent = nil
		for i := 0; i < len(live); i += maxMerge {
			g := live[i:min(i+maxMerge, len(live))]
			groups = append(groups, g)
			sent = append(sent, &call{ctx: ctx, cmd: merge(ctx, g)})
		}
	}
	s.n.trips.Add(1)
	pipe := s.c.Pipeline()
	for _, c := range sent {
		_ = pipe.Process(ctx, c.cmd)
	}
	_, _ = pipe.Exec(ctx)
	var again []*call
	for _, c := range sent {
		if err := c.cmd.Err(); err != nil && missingScript(err) {
			again = append(again, c)
		}
	}
	if len(again) > 0 {
		s.reload(ctx, again)
	}
	if groups == nil {
		for _, c := range sent {
			unwrap(c.cmd)
		}
		return
	}
	for i, g := range groups {
		split(sent[i].cmd, g)
	}
}

// maxMerge bounds the decisions merged into one script call, which holds
// Redis for all of them at once.
const maxMerge = 32

// merge returns one script call that runs the decisions of calls in
// order. Each call is FCALL or EVALSHA, the function or the script, its
// number of keys, its keys (the budget keys, the same for every call in
// the one-slot layout, then its dimension keys), its number of rules
// (one), its rule and its decision;
// the merged call has the budget keys once, every call's dimension keys,
// the distinct rules, then every decision, renumbered to its rule's
// position (see Protocol in script.go).
func merge(ctx context.Context, calls []*call) *redis.Cmd {
	nk := keyDims - 1
	for _, c := range calls {
		nk += c.cmd.Args()[2].(int) - (keyDims - 1)
	}
	first := calls[0].cmd.Args()
	args := make([]any, 0, 4+nk+2*len(calls))
	args = append(args, first[0], first[1], nk)
	args = append(args, first[3:3+keyDims-1]...)
	for _, c := range calls {
		a := c.cmd.Args()
		args = append(args, a[3+keyDims-1:3+a[2].(int)]...)
	}
	var rules [4]any
	seen := rules[:0]
	at := len(args)
	args = append(args, 0)
	decisions := make([]any, len(calls))
	for i, c := range calls {
		a := c.cmd.Args()
		k := a[2].(int)
		rule, d := a[4+k], a[5+k].([]byte)
		j := slices.Index(seen, rule)
		if j < 0 {
			j = len(seen)
			seen = append(seen, rule)
		}
		if j > 0 {
			// The call keeps its own argument (numbered 1), for a resend
			// of its own.
			d = slices.Clone(d)
			putNum(d, numRule, float64(j+1))
		}
		decisions[i] = d
	}
	args[at] = len(seen)
	args = append(args, seen...)
	args = append(args, decisions...)
	return redis.NewCmd(ctx, args...)
}

// split gives each of calls its reply from the merged call m: its own
// reply, or its own error (a decision that started past its deadline),
// or m's error.
func split(m *redis.Cmd, calls []*call) {
	if err := m.Err(); err != nil {
		for _, c := range calls {
			c.cmd.SetErr(err)
		}
		return
	}
	v, ok := m.Val().([]any)
	if !ok || len(v) != len(calls) {
		err := fmt.Errorf("redisstore: unexpected script reply %T of length %d for %d decisions", m.Val(), len(v), len(calls))
		for _, c := range calls {
			c.cmd.SetErr(err)
		}
		return
	}
	for i, c := range calls {
		if err, ok := v[i].(error); ok {
			c.cmd.SetErr(err)
			continue
		}
		c.cmd.SetVal(v[i])
	}
}

// unwrap replaces the reply of a script call of one decision (a list of
// one reply) by that reply, or by its error.
func unwrap(cmd *redis.Cmd) {
	if cmd.Err() != nil {
		return
	}
	if v, ok := cmd.Val().([]any); ok && len(v) == 1 {
		if err, ok := v[0].(error); ok {
			cmd.SetErr(err)
			return
		}
		cmd.SetVal(v[0])
	}
}

// reload runs again the calls that found the script missing (they did
// not run). As a function, the library is loaded on every node and the
// calls run again in one pipeline. By EVALSHA (or when FUNCTION LOAD now
// fails, from then on), the first runs with EVAL, which loads the script on
// its node, the others then with EVALSHA in one pipeline, so that the
// script's source (tens of kilobytes) crosses the network once rather than
// once per call and a batch reloaded after a failover or a SCRIPT FLUSH
// stays about as quick as any other. Calls that still find no script
// (another node, under SpreadSlots) run with EVAL.
func (s *Store) reload(ctx context.Context, calls []*call) {
	if s.fn.Load() {
		s.n.trips.Add(1)
		if err := s.loadFunction(ctx); err == nil {
			s.rerun(ctx, calls)
			return
		}
		s.evalMode()
	}
	for _, c := range calls {
		s.retarget(c.cmd.Args())
	}
	s.eval(ctx, calls[:1])
	if again := s.rerun(ctx, calls[1:]); len(again) > 0 {
		s.eval(ctx, again)
	}
}

// rerun runs calls again in one pipeline and returns those that still
// find no script, their replies unset.
func (s *Store) rerun(ctx context.Context, calls []*call) []*call {
	if len(calls) == 0 {
		return nil
	}
	s.n.trips.Add(1)
	pipe := s.c.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for i, c := range calls {
		cmds[i] = pipe.Do(ctx, c.cmd.Args()...)
	}
	_, _ = pipe.Exec(ctx)
	var again []*call
	for i, c := range calls {
		if err := cmds[i].Err(); err != nil && missingScript(err) && !s.fn.Load() {
			again = append(again, c)
			continue
		}
		c.cmd.SetErr(cmds[i].Err())
		c.cmd.SetVal(cmds[i].Val())
	}
	return again
}

// eval runs calls with EVAL and the script's source, in one pipeline.
func (s *Store) eval(ctx context.Context, calls []*call) {
	s.n.trips.Add(1)
	pipe := s.c.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for i, c := range calls {
		args := append([]any(nil), c.cmd.Args()...)
		args[0], args[1] = "eval", applySrc
		cmds[i] = pipe.Do(ctx, args...)
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range calls {
		c.cmd.SetErr(cmds[i].Err())
		c.cmd.SetVal(cmds[i].Val())
	}
}

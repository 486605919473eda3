// Package storetest checks that an store.Store honours the semantics of
// axes.Policy, in the manner of testing/fstest: a store passes when every
// decision a limiter makes on it matches the contract, step by step, at
// named instants of a fake clock.
//
// The store returned by the factory must take time from Request.Now (the
// limiter's fake clock), not from a clock of its own; a networked store
// offers an option for that. Each subtest gets a fresh store and may leave
// state behind; the factory should isolate them (a fresh key prefix, say).
package storetest

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
)

// T0 is the instant at which every scenario starts.
var T0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Secret is the limiter secret used by every scenario.
var Secret = []byte("storetest-secret-0123456789abcdef")

// Run runs the conformance suite against stores made by newStore. A
// factory that returns nil tests the limiter's default memory store.
func Run(t *testing.T, newStore func() store.Store) {
	t.Helper()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			sc.run(t, newStore)
		})
	}
}

// Harness is a limiter on a store under a fake clock.
type Harness struct {
	T      testing.TB
	L      *axes.Limiter
	now    atomic.Int64 // offset from T0 in nanoseconds
	mu     sync.Mutex
	events []axes.Event
}

// NewHarness returns a limiter on store with policy p and a fake clock at T0.
// Events are recorded for Events.
func NewHarness(t testing.TB, store store.Store, p axes.Policy, opts ...axes.Option) *Harness {
	t.Helper()
	h := &Harness{T: t}
	user := p.OnEvent
	p.OnEvent = func(e axes.Event) {
		h.mu.Lock()
		h.events = append(h.events, e)
		h.mu.Unlock()
		if user != nil {
			user(e)
		}
	}
	all := []axes.Option{axes.WithClock(h.Now), axes.WithSecret(Secret)}
	if store != nil {
		all = append(all, axes.WithStore(store))
	}
	l, err := axes.New(p, append(all, opts...)...)
	if err != nil {
		t.Fatalf("axes.New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	h.L = l
	return h
}

// Now is the harness clock.
func (h *Harness) Now() time.Time { return T0.Add(time.Duration(h.now.Load())) }

// At sets the clock to T0+d.
func (h *Harness) At(d time.Duration) { h.now.Store(int64(d)) }

// Events returns the events recorded so far and forgets them.
func (h *Harness) Events() []axes.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.events
	h.events = nil
	return e
}

// Addr parses an address or fails the test.
func Addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// V is the expected part of a verdict. By is checked only when not zero;
// RetryAfter always.
type V struct {
	Locked     bool
	Failures   int
	RetryAfter time.Duration
	Reason     axes.Reason
	By         axes.Fields
	WouldLock  bool
}

// Expect compares a verdict with want, naming the step.
func Expect(t testing.TB, step string, got axes.Verdict, want V) {
	t.Helper()
	reason := want.Reason
	if want.Locked && reason == axes.ReasonNone {
		reason = axes.ReasonLockout
	}
	if got.Locked != want.Locked || got.Failures != want.Failures || got.RetryAfter != want.RetryAfter ||
		got.Reason != reason || (want.By != 0 && got.By != want.By) || got.WouldLock != want.WouldLock {
		t.Errorf("%s: got %+v, want %+v (reason %v)", step, got, want, reason)
	}
}

// Step is one operation at an instant and the verdict it must give.
type Step struct {
	At   time.Duration
	Op   string // "fail", "check", "success", "reset", "locked"
	Key  axes.Key
	Want V
}

// Steps runs steps in order on h.
func (h *Harness) Steps(steps []Step) {
	h.T.Helper()
	for i, s := range steps {
		h.At(s.At)
		name := fmt.Sprintf("step %d (%s at %v, %v/%q)", i, s.Op, s.At, s.Key.IP, s.Key.Username)
		switch s.Op {
		case "fail":
			Expect(h.T, name, h.L.Fail(s.Key), s.Want)
		case "check":
			Expect(h.T, name, h.L.Check(s.Key), s.Want)
		case "locked":
			if got := h.L.Locked(s.Key); got != s.Want.Locked {
				h.T.Errorf("%s: Locked = %v, want %v", name, got, s.Want.Locked)
			}
		case "success":
			h.L.Success(s.Key)
		case "reset":
			h.L.Reset(s.Key)
		default:
			h.T.Fatalf("%s: unknown op", name)
		}
	}
}

type scenario struct {
	name string
	run  func(t *testing.T, newStore func() store.Store)
}

var scenarios []scenario

func add(name string, run func(t *testing.T, newStore func() store.Store)) {
	scenarios = append(scenarios, scenario{name, run})
}

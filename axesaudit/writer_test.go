package axesaudit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/axes-go/axes"
)

func failure(i int, user string) axes.Event {
	return axes.Event{Kind: axes.EventFailure, Time: t0.Add(time.Duration(i) * time.Second), By: axes.Username,
		Key: axes.Key{IP: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Username: user}, Failures: i, Limit: 5}
}

// TestPerUsernameCap: each username keeps its newest MaxRowsPerUsername
// failure, lockout and refused rows; other kinds and other names stay.
func TestPerUsernameCap(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		tr := newTrail(t, tdb, Config{MaxRowsPerUsername: 5, BatchSize: 4})
		for i := range 30 {
			tr.OnEvent(failure(i, "alice"))
			if i%10 == 0 {
				tr.OnEvent(axes.Event{Kind: axes.EventSuccess, Time: t0.Add(time.Duration(i) * time.Second), Key: axes.Key{Username: "alice"}})
				tr.OnEvent(failure(i, "bob"))
			}
		}
		flush(t, tr)
		rs, err := tr.Query(context.Background(), Filter{Username: "alice", Kinds: []Kind{Failure}})
		if err != nil {
			t.Fatalf("Query: %v", err)
		}
		var got []int
		for _, r := range rs {
			got = append(got, r.Failures)
		}
		if want := []int{29, 28, 27, 26, 25}; !slices.Equal(got, want) {
			t.Errorf("alice's failures kept: %v, want the newest five %v", got, want)
		}
		if n := count(t, tdb, "SELECT COUNT(*) FROM axes_audit_events WHERE kind = 'success'"); n != 3 {
			t.Errorf("%d success rows, want 3", n)
		}
		if n := count(t, tdb, "SELECT COUNT(*) FROM axes_audit_events WHERE kind = 'failure' AND username = 'b***'"); n != 3 {
			t.Errorf("%d failure rows of bob, want 3", n)
		}
		if n := count(t, tdb, "SELECT COUNT(*) FROM axes_audit_events"); n != 11 {
			t.Errorf("%d rows, want 11", n)
		}
	})
}

// TestPerUsernameCapBoundedWork: a batch deletes at most BatchSize rows per
// username, so lowering the cap under a large table costs no more than
// the rows written.
func TestPerUsernameCapBoundedWork(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		tr := newTrail(t, tdb, Config{MaxRowsPerUsername: -1})
		for i := range 40 {
			tr.OnEvent(failure(i, "dave"))
		}
		flush(t, tr)
		if err := tr.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		tr = newTrail(t, tdb, Config{MaxRowsPerUsername: 10, BatchSize: 8})
		tr.OnEvent(failure(40, "dave"))
		flush(t, tr)
		if n := count(t, tdb, "SELECT COUNT(*) FROM axes_audit_events"); n != 41-8 {
			t.Errorf("%d rows after one batch, want %d: a batch deletes at most BatchSize rows per username", n, 41-8)
		}
		for i := range 8 {
			tr.OnEvent(failure(41+i, "dave"))
			flush(t, tr)
		}
		if n := count(t, tdb, "SELECT COUNT(*) FROM axes_audit_events"); n != 10 {
			t.Errorf("%d rows, want the cap, 10", n)
		}
	})
}

// TestRetention: DeleteOlderThan deletes the events and the quiet, unlocked
// attempts older than the age, and nothing else.
func TestRetention(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		clk := &fakeClock{}
		tr := newTrail(t, tdb, Config{Clock: clk.Now})
		day := 24 * time.Hour
		for i := range 10 {
			tr.OnEvent(axes.Event{Kind: axes.EventFailure, Time: t0.Add(time.Duration(i) * day), By: axes.IP,
				Key: axes.Key{IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})}})
		}
		// An old client still locked for good is kept.
		tr.OnEvent(axes.Event{Kind: axes.EventLockout, Time: t0, By: axes.IP, Key: axes.Key{IP: netip.MustParseAddr("10.9.9.9")}})
		flush(t, tr)
		clk.Set(10 * day)
		ctx := context.Background()
		n, err := tr.DeleteOlderThan(ctx, 5*day)
		if err != nil {
			t.Fatalf("DeleteOlderThan: %v", err)
		}
		if n != 6+5 {
			t.Errorf("DeleteOlderThan deleted %d rows, want %d: events of days 0-4 and the lockout, attempts of days 0-4", n, 6+5)
		}
		rs, err := tr.Query(ctx, Filter{Limit: MaxLimit})
		if err != nil {
			t.Fatalf("Query: %v", err)
		}
		if len(rs) != 5 {
			t.Fatalf("%d records left, want 5", len(rs))
		}
		if want := t0.Add(5 * day); rs[4].Time != want {
			t.Errorf("the oldest record left is of %v, want %v", rs[4].Time, want)
		}
		atts, err := tr.Attempts(ctx, Filter{})
		if err != nil {
			t.Fatalf("Attempts: %v", err)
		}
		if len(atts) != 6 {
			t.Fatalf("%d attempts left, want 6", len(atts))
		}
		if atts[5].LockedUntil != Forever {
			t.Errorf("the old locked client's LockedUntil = %v, want Forever", atts[5].LockedUntil)
		}
		n, err = tr.DeleteOlderThan(ctx, 5*day)
		if err != nil {
			t.Fatalf("second DeleteOlderThan: %v", err)
		}
		if n != 0 {
			t.Errorf("a second DeleteOlderThan deleted %d rows, want 0 (idempotent)", n)
		}
		_, err = tr.DeleteOlderThan(ctx, 0)
		if err == nil || !strings.Contains(err.Error(), "axes: ") {
			t.Errorf("DeleteOlderThan(0): error %v, want one containing \"axes: \"", err)
		}
	})
}

// TestRetentionChunks: retention deletes more than one chunk.
func TestRetentionChunks(t *testing.T) {
	tdb := openSQLite(t)
	clk := &fakeClock{}
	tr := newTrail(t, tdb, Config{Clock: clk.Now, MaxRowsPerUsername: -1, BatchSize: MaxBatchSize, QueueSize: 2 * deleteChunk})
	const n = deleteChunk + 7
	for i := range n {
		tr.OnEvent(axes.Event{Kind: axes.EventSuccess, Time: t0, Key: axes.Key{Username: "erin"}})
		if i%1000 == 999 {
			flush(t, tr)
		}
	}
	flush(t, tr)
	if w := tr.Stats().Written; w != n {
		t.Fatalf("Stats().Written = %d, want %d", w, n)
	}
	clk.Set(time.Hour)
	got, err := tr.DeleteOlderThan(context.Background(), time.Minute)
	if err != nil {
		t.Fatalf("DeleteOlderThan: %v", err)
	}
	if got != n+1 {
		t.Errorf("DeleteOlderThan deleted %d rows, want %d: every event and the one attempt", got, n+1)
	}
}

// TestFlood: while the database blocks every write, 100,000 events are
// given to OnEvent on the test goroutine. Each call returns at once (a
// blocked call would hang the test: a watchdog fails it), the queue stays
// bounded, and once the database is released every event is either
// written or counted as dropped. Close leaves no goroutine behind.
func TestFlood(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		const (
			sent      = 100_000
			queueSize = 1000
			batchSize = 100
		)
		before := writerGoroutines()
		tr := newTrail(t, tdb, Config{QueueSize: queueSize, BatchSize: batchSize, MaxRowsPerUsername: -1})
		release := tdb.block(t)
		defer release()

		done := make(chan struct{})
		go func() {
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				panic("TestFlood: OnEvent blocked for 2 minutes")
			}
		}()
		maxQueued := 0
		for i := range sent {
			tr.OnEvent(failure(i, fmt.Sprint("user", i%1000)))
			if i%997 == 0 {
				maxQueued = max(maxQueued, tr.Stats().Queued)
			}
		}
		close(done)
		s := tr.Stats()
		t.Logf("blocked: %+v, most queued %d", s, maxQueued)
		if maxQueued > queueSize+batchSize {
			t.Errorf("queue unbounded: %d queued, want at most %d", maxQueued, queueSize+batchSize)
		}
		if s.Written != 0 {
			t.Errorf("%d events written while blocked, want none", s.Written)
		}
		if got := s.Dropped + uint64(s.Queued); got != sent {
			t.Errorf("dropped %d + queued %d = %d, want the %d sent", s.Dropped, s.Queued, got, sent)
		}
		if s.Dropped < sent-queueSize-batchSize {
			t.Errorf("%d dropped, want at least %d", s.Dropped, sent-queueSize-batchSize)
		}

		release()
		flush(t, tr)
		s = tr.Stats()
		t.Logf("released: %+v", s)
		if got := s.Written + s.Dropped; got != sent {
			t.Errorf("written %d + dropped %d = %d, want every one of the %d events written or dropped", s.Written, s.Dropped, got, sent)
		}
		if s.Queued != 0 {
			t.Errorf("%d events still queued after Flush", s.Queued)
		}
		if s.Errors != 0 {
			t.Errorf("Stats().Errors = %d, want 0", s.Errors)
		}
		if s.Written == 0 {
			t.Error("nothing written after the release")
		}
		if n := count(t, tdb, "SELECT COUNT(*) FROM axes_audit_events"); n != int(s.Written) {
			t.Errorf("%d rows, want the %d written", n, s.Written)
		}

		if err := tr.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := tr.Close(); err != nil {
			t.Fatalf("second Close (idempotent): %v", err)
		}
		if n := writerGoroutinesSettle(before); n != before {
			t.Errorf("%d writer goroutines after Close, want %d: the writer goroutine is gone", n, before)
		}
		tr.OnEvent(failure(0, "late"))
		if got := tr.Stats().Dropped; got != s.Dropped+1 {
			t.Errorf("Stats().Dropped = %d after an event after Close, want %d: it is dropped", got, s.Dropped+1)
		}
		if err := tr.Flush(context.Background()); err != nil {
			t.Fatalf("Flush after Close: %v", err)
		}
	})
}

// TestCloseDeadline: Close gives up writing at CloseTimeout, counts what it
// could not write as dropped, says so, and still stops the writer.
func TestCloseDeadline(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		before := writerGoroutines()
		var errs []error
		tr := newTrail(t, tdb, Config{CloseTimeout: 50 * time.Millisecond, OnError: func(err error) { errs = append(errs, err) }})
		release := tdb.block(t)
		defer release()
		for i := range 50 {
			tr.OnEvent(failure(i, "frank"))
		}
		err := tr.Close()
		if err == nil {
			t.Fatal("Close past its deadline: no error")
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close: %v, want context.DeadlineExceeded", err)
		}
		if !strings.Contains(err.Error(), "axes: ") {
			t.Errorf("Close: error %q does not contain \"axes: \"", err)
		}
		if err2 := tr.Close(); err2 != err {
			t.Errorf("second Close: %v, want the same error %v (idempotent)", err2, err)
		}
		s := tr.Stats()
		if want := (Stats{Dropped: 50, Errors: s.Errors}); s != want {
			t.Errorf("Stats() = %+v, want %+v", s, want)
		}
		if s.Errors == 0 {
			t.Error("Stats().Errors = 0, want > 0")
		}
		if len(errs) != int(s.Errors) {
			t.Errorf("OnError called %d times, want Stats().Errors = %d", len(errs), s.Errors)
		}
		if n := writerGoroutinesSettle(before); n != before {
			t.Errorf("%d writer goroutines after Close, want %d", n, before)
		}
	})
}

// TestOnEventAllocs: queueing an event allocates nothing, whether it is
// queued or dropped.
func TestOnEventAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation allocates")
	}
	tdb := openSQLite(t)
	tr := newTrail(t, tdb, Config{QueueSize: 300})
	release := tdb.block(t)
	defer release()
	e := failure(1, "grace")
	e.Key.UserAgent = "Mozilla/5.0"
	// Park the writer at the gate, so that only OnEvent runs.
	tr.OnEvent(e)
	for tdb.gate.waiting.Load() == 0 {
		runtime.Gosched()
	}
	if n := testing.AllocsPerRun(200, func() { tr.OnEvent(e) }); n != 0 {
		t.Errorf("queued: OnEvent allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(200, func() { tr.OnEvent(e) }); n != 0 {
		t.Errorf("dropped: OnEvent allocates %v times, want 0", n)
	}
	if tr.Stats().Dropped == 0 {
		t.Error("Stats().Dropped = 0, want > 0: the second run did not drop")
	}
}

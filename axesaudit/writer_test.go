package axesaudit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
		require.NoError(t, err)
		var got []int
		for _, r := range rs {
			got = append(got, r.Failures)
		}
		assert.Equal(t, []int{29, 28, 27, 26, 25}, got, "the newest five failures")
		assert.Equal(t, 3, count(t, tdb, "SELECT COUNT(*) FROM axes_audit_events WHERE kind = 'success'"))
		assert.Equal(t, 3, count(t, tdb, "SELECT COUNT(*) FROM axes_audit_events WHERE kind = 'failure' AND username = 'b***'"))
		assert.Equal(t, 11, count(t, tdb, "SELECT COUNT(*) FROM axes_audit_events"))
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
		require.NoError(t, tr.Close())
		tr = newTrail(t, tdb, Config{MaxRowsPerUsername: 10, BatchSize: 8})
		tr.OnEvent(failure(40, "dave"))
		flush(t, tr)
		assert.Equal(t, 41-8, count(t, tdb, "SELECT COUNT(*) FROM axes_audit_events"))
		for i := range 8 {
			tr.OnEvent(failure(41+i, "dave"))
			flush(t, tr)
		}
		assert.Equal(t, 10, count(t, tdb, "SELECT COUNT(*) FROM axes_audit_events"))
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
		require.NoError(t, err)
		assert.Equal(t, int64(6+5), n, "events of days 0-4 and the lockout, attempts of days 0-4")
		rs, err := tr.Query(ctx, Filter{Limit: MaxLimit})
		require.NoError(t, err)
		require.Len(t, rs, 5)
		assert.Equal(t, t0.Add(5*day), rs[4].Time)
		atts, err := tr.Attempts(ctx, Filter{})
		require.NoError(t, err)
		require.Len(t, atts, 6)
		assert.Equal(t, Forever, atts[5].LockedUntil)
		n, err = tr.DeleteOlderThan(ctx, 5*day)
		require.NoError(t, err)
		assert.Zero(t, n, "idempotent")
		_, err = tr.DeleteOlderThan(ctx, 0)
		assert.ErrorContains(t, err, "axes: ")
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
	require.Equal(t, uint64(n), tr.Stats().Written)
	clk.Set(time.Hour)
	got, err := tr.DeleteOlderThan(context.Background(), time.Minute)
	require.NoError(t, err)
	assert.Equal(t, int64(n+1), got, "every event and the one attempt")
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
		assert.LessOrEqual(t, maxQueued, queueSize+batchSize, "queue bounded")
		assert.Zero(t, s.Written, "nothing written while blocked")
		assert.Equal(t, uint64(sent), s.Dropped+uint64(s.Queued))
		assert.GreaterOrEqual(t, s.Dropped, uint64(sent-queueSize-batchSize))

		release()
		flush(t, tr)
		s = tr.Stats()
		t.Logf("released: %+v", s)
		assert.Equal(t, uint64(sent), s.Written+s.Dropped, "every event written or dropped")
		assert.Zero(t, s.Queued)
		assert.Zero(t, s.Errors)
		assert.Positive(t, s.Written)
		assert.Equal(t, int(s.Written), count(t, tdb, "SELECT COUNT(*) FROM axes_audit_events"))

		require.NoError(t, tr.Close())
		require.NoError(t, tr.Close(), "idempotent")
		assert.Equal(t, before, writerGoroutines(), "the writer goroutine is gone")
		tr.OnEvent(failure(0, "late"))
		assert.Equal(t, s.Dropped+1, tr.Stats().Dropped, "an event after Close is dropped")
		require.NoError(t, tr.Flush(context.Background()))
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
		require.Error(t, err)
		assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
		assert.ErrorContains(t, err, "axes: ")
		assert.Equal(t, err, tr.Close(), "idempotent")
		s := tr.Stats()
		assert.Equal(t, Stats{Dropped: 50, Errors: s.Errors}, s)
		assert.Positive(t, s.Errors)
		assert.Len(t, errs, int(s.Errors))
		assert.Equal(t, before, writerGoroutines())
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
	assert.Zero(t, testing.AllocsPerRun(200, func() { tr.OnEvent(e) }), "queued")
	assert.Zero(t, testing.AllocsPerRun(200, func() { tr.OnEvent(e) }), "dropped")
	assert.Positive(t, tr.Stats().Dropped)
}

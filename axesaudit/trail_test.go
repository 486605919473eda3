package axesaudit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewValidation(t *testing.T) {
	db, err := OpenSQLite(filepath.Join(t.TempDir(), "a.db"))
	require.NoError(t, err)
	defer db.Close()
	for _, c := range []struct {
		name string
		c    Config
		want string
	}{
		{"no key", Config{}, "needs a Key"},
		{"short key", Config{Key: []byte("short")}, "at least 16 bytes"},
		{"dialect", Config{Key: testKey, Dialect: 9}, "Dialect"},
		{"batch", Config{Key: testKey, BatchSize: MaxBatchSize + 1}, "BatchSize"},
		{"negative queue", Config{Key: testKey, QueueSize: -1}, "QueueSize"},
	} {
		_, err := New(db, c.c)
		require.Error(t, err, c.name)
		assert.True(t, strings.HasPrefix(err.Error(), "axes: "), "%s: %v", c.name, err)
		assert.Contains(t, err.Error(), c.want, c.name)
	}
	_, err = New(nil, Config{Key: testKey})
	assert.ErrorContains(t, err, "axes: ")
	tr, err := New(db, Config{RawIdentity: true})
	require.NoError(t, err, "RawIdentity needs no key")
	require.NoError(t, tr.Close())
	_, err = OpenSQLite(":memory:")
	assert.ErrorContains(t, err, "axes: ")
}

func TestMigrate(t *testing.T) {
	require.Equal(t, len(migrations)-1, SchemaVersion)
	eachDB(t, func(t *testing.T, tdb *testDB) {
		tr := newTrail(t, tdb, Config{})
		ctx := context.Background()
		require.NoError(t, tr.Migrate(ctx), "second Migrate")
		require.NoError(t, tr.Migrate(ctx), "third Migrate")
		assert.Equal(t, 1, count(t, tdb, "SELECT COUNT(*) FROM axes_audit_schema"))
		assert.Equal(t, SchemaVersion, count(t, tdb, "SELECT MAX(version) FROM axes_audit_schema"))
		assert.Equal(t, 0, count(t, tdb, "SELECT COUNT(*) FROM axes_audit_events"))
		assert.Equal(t, 0, count(t, tdb, "SELECT COUNT(*) FROM axes_audit_attempts"))
		// A database migrated by a newer version is refused.
		d := &dialects[tdb.dialect]
		_, err := tdb.db.Exec(d.rebind("INSERT INTO axes_audit_schema (version, applied_at) VALUES (?, ?)"), SchemaVersion+1, d.timeArg(t0))
		require.NoError(t, err)
		assert.ErrorContains(t, tr.Migrate(ctx), "newer")
	})
}

// TestLimiterEvents drives a real limiter with the Trail chained into its
// OnEvent and searches what it wrote.
func TestLimiterEvents(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		clk := &fakeClock{}
		tr := newTrail(t, tdb, Config{Clock: clk.Now})
		var logged []string
		lim, err := axes.New(axes.Policy{
			Limit:     3,
			LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username},
			Cooloff:   axes.Fixed(15 * time.Minute),
			OnEvent:   tr.Chain(func(e axes.Event) { logged = append(logged, e.Kind.String()) }),
		}, axes.WithClock(clk.Now))
		require.NoError(t, err)
		defer lim.Close()

		ip1, ip2 := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8::1")
		alice := axes.Key{IP: ip1, Username: "Alice", UserAgent: "curl/8.5"}
		bob := axes.Key{IP: ip2, Username: "bob", UserAgent: "Mozilla/5.0 (X11)"}
		for i := range 3 {
			clk.Set(time.Duration(i) * time.Minute)
			lim.Fail(alice)
		}
		clk.Set(3 * time.Minute)
		require.Equal(t, axes.ReasonLockout, lim.Fail(alice).Reason, "refused while locked")
		clk.Set(4 * time.Minute)
		lim.Success(bob)
		clk.Set(5 * time.Minute)
		tr.Logout(bob)
		clk.Set(6 * time.Minute)
		lim.ResetIP(ip1)
		flush(t, tr)
		require.Equal(t, Stats{Written: uint64(len(logged)) + 1}, tr.Stats(), "every event and the logout written")

		ctx := context.Background()
		query := func(f Filter) []Record {
			t.Helper()
			rs, err := tr.Query(ctx, f)
			require.NoError(t, err)
			return rs
		}
		kinds := func(rs []Record) string {
			var s []string
			for _, r := range rs {
				s = append(s, fmt.Sprintf("%s@%v", r.Kind, r.Time.Sub(t0)))
			}
			return strings.Join(s, " ")
		}
		// Newest first: reset (by IP only), logout, success, refused,
		// lockouts and failures of the third failure, ...
		all := query(Filter{})
		assert.Equal(t, "reset@6m0s logout@5m0s success@4m0s refused@3m0s lockout@2m0s failure@2m0s lockout@2m0s failure@2m0s failure@1m0s failure@1m0s failure@0s failure@0s", kinds(all))

		for _, c := range []struct {
			name string
			f    Filter
			want string
		}{
			{"ip", Filter{IP: ip1}, "reset@6m0s refused@3m0s lockout@2m0s failure@2m0s lockout@2m0s failure@2m0s failure@1m0s failure@1m0s failure@0s failure@0s"},
			{"ip6", Filter{IP: ip2}, "logout@5m0s success@4m0s"},
			{"username normalised", Filter{Username: "  ALICE"}, "refused@3m0s lockout@2m0s failure@2m0s lockout@2m0s failure@2m0s failure@1m0s failure@1m0s failure@0s failure@0s"},
			{"user agent", Filter{UserAgent: "Mozilla/5.0 (X11)"}, "logout@5m0s success@4m0s"},
			{"user agent is exact", Filter{UserAgent: "Mozilla/5.0"}, ""},
			{"time range", Filter{Since: clk.At(time.Minute), Until: clk.At(2 * time.Minute)}, "failure@1m0s failure@1m0s"},
			{"since", Filter{Since: clk.At(4 * time.Minute)}, "reset@6m0s logout@5m0s success@4m0s"},
			{"kinds", Filter{Kinds: []Kind{Lockout, Refused}}, "refused@3m0s lockout@2m0s lockout@2m0s"},
			{"ip and kind", Filter{IP: ip1, Kinds: []Kind{Success}}, ""},
			{"username and time", Filter{Username: "alice", Until: clk.At(time.Minute)}, "failure@0s failure@0s"},
			{"limit", Filter{Limit: 2}, "reset@6m0s logout@5m0s"},
		} {
			assert.Equal(t, c.want, kinds(query(c.f)), c.name)
		}

		// Pages, newest first, meet exactly the whole.
		var paged []Record
		f := Filter{Limit: 5}
		for {
			page := query(f)
			paged = append(paged, page...)
			if len(page) < f.Limit {
				break
			}
			f.Before = page[len(page)-1].Cursor()
		}
		assert.Equal(t, all, paged)

		// Fields of the records.
		lo := query(Filter{Kinds: []Kind{Lockout}})
		require.Len(t, lo, 2)
		for _, r := range lo {
			assert.Equal(t, clk.At(17*time.Minute), r.Until)
			assert.Equal(t, 3, r.Failures)
			assert.Equal(t, 3, r.Limit)
			assert.Equal(t, "203.0.*.*", r.IP)
			assert.Equal(t, "a***", r.Username)
			assert.Equal(t, "curl/***", r.UserAgent)
		}
		assert.ElementsMatch(t, []axes.Fields{axes.IP, axes.IP | axes.Username}, []axes.Fields{lo[0].By, lo[1].By})
		ref := query(Filter{Kinds: []Kind{Refused}})[0]
		assert.Equal(t, axes.ReasonLockout, ref.Reason)
		assert.Equal(t, clk.At(17*time.Minute), ref.Until)
		reset := query(Filter{Kinds: []Kind{Reset}})[0]
		assert.Equal(t, int64(2), reset.Count)
		assert.Equal(t, "", reset.Username)
		bobs := query(Filter{Username: "bob"})
		assert.Equal(t, "2001:db8::/64", bobs[0].IP)
		assert.Equal(t, "Mozilla/***", bobs[0].UserAgent)

		// Attempts: one row per client; three failed logins although each
		// counted in two dimensions; the lock lifted by ResetIP.
		atts, err := tr.Attempts(ctx, Filter{})
		require.NoError(t, err)
		require.Len(t, atts, 2)
		b, a := atts[0], atts[1]
		assert.Equal(t, Attempt{ID: b.ID, IP: "2001:db8::/64", Username: "b***", UserAgent: "Mozilla/***",
			Successes: 1, FirstSeen: clk.At(4 * time.Minute), LastSeen: clk.At(4 * time.Minute)}, b)
		assert.Equal(t, Attempt{ID: a.ID, IP: "203.0.*.*", Username: "a***", UserAgent: "curl/***",
			Failures: 3, Refused: 1, FirstSeen: t0, LastSeen: clk.At(3 * time.Minute)}, a)
		one, err := tr.Attempts(ctx, Filter{Username: "ALICE", UserAgent: "curl/8.5", IP: ip1})
		require.NoError(t, err)
		assert.Equal(t, []Attempt{a}, one)
		one, err = tr.Attempts(ctx, Filter{Since: clk.At(4 * time.Minute)})
		require.NoError(t, err)
		assert.Equal(t, []Attempt{b}, one)
		one, err = tr.Attempts(ctx, Filter{Limit: 1, Before: b.Cursor()})
		require.NoError(t, err)
		assert.Equal(t, []Attempt{a}, one)
		_, err = tr.Attempts(ctx, Filter{Kinds: []Kind{Failure}})
		assert.ErrorContains(t, err, "axes: ")
		_, err = tr.Query(ctx, Filter{Limit: MaxLimit + 1})
		assert.ErrorContains(t, err, "axes: ")
	})
}

// TestAttemptLock: the attempts table records the latest lock end, and a
// reset clears it.
func TestAttemptLock(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		tr := newTrail(t, tdb, Config{})
		k := axes.Key{IP: netip.MustParseAddr("192.0.2.1"), Username: "carol"}
		tr.OnEvent(axes.Event{Kind: axes.EventLockout, Time: t0, Key: k, By: axes.IP, Until: t0.Add(time.Hour)})
		tr.OnEvent(axes.Event{Kind: axes.EventLockout, Time: t0, Key: k, By: axes.Username, Until: t0.Add(time.Minute)})
		flush(t, tr)
		atts, err := tr.Attempts(context.Background(), Filter{})
		require.NoError(t, err)
		require.Len(t, atts, 1)
		assert.Equal(t, t0.Add(time.Hour), atts[0].LockedUntil)
		tr.OnEvent(axes.Event{Kind: axes.EventRefused, Reason: axes.ReasonLockout, Time: t0.Add(time.Second), Key: k, By: axes.IP})
		flush(t, tr)
		atts, _ = tr.Attempts(context.Background(), Filter{})
		assert.Equal(t, Forever, atts[0].LockedUntil, "a lock with no end")
		tr.OnEvent(axes.Event{Kind: axes.EventReset, Time: t0.Add(2 * time.Second), Key: axes.Key{Username: "Carol"}, Count: 1})
		flush(t, tr)
		atts, _ = tr.Attempts(context.Background(), Filter{})
		assert.True(t, atts[0].LockedUntil.IsZero())
		assert.Equal(t, int64(1), atts[0].Refused)
	})
}

// TestMasking: by default no raw IP, username or user agent reaches the
// database; RawIdentity stores them.
func TestMasking(t *testing.T) {
	const (
		user = "Alice.Secret-Name"
		ip   = "198.51.100.203"
		ua   = "SecretBrowser/9.1 (Hidden OS)"
	)
	secrets := []string{user, strings.ToLower(user), ip, ua, "Secret"}
	k := axes.Key{IP: netip.MustParseAddr(ip), Username: user, UserAgent: ua}
	write := func(t *testing.T, tdb *testDB, c Config) {
		tr := newTrail(t, tdb, c)
		for i, kind := range []axes.EventKind{axes.EventFailure, axes.EventLockout, axes.EventRefused, axes.EventSuccess, axes.EventReset} {
			tr.OnEvent(axes.Event{Kind: kind, Time: t0.Add(time.Duration(i) * time.Second), Key: k, By: axes.IP})
		}
		tr.Logout(k)
		// Identities no database keeps as text: NUL bytes, invalid UTF-8.
		tr.OnEvent(axes.Event{Kind: axes.EventFailure, Time: t0, Key: axes.Key{Username: "nul\x00\xff", UserAgent: "\xfe\x00"}})
		flush(t, tr)
		require.Equal(t, Stats{Written: 7}, tr.Stats())
		require.NoError(t, tr.Close())
		rs, err := tr.Query(context.Background(), Filter{Username: user})
		require.NoError(t, err)
		require.Len(t, rs, 6, "found by the raw username")
	}
	// cells returns every cell of both tables as text.
	cells := func(t *testing.T, tdb *testDB) string {
		var b strings.Builder
		for _, table := range []string{"axes_audit_events", "axes_audit_attempts"} {
			rows, err := tdb.db.Query("SELECT * FROM " + table)
			require.NoError(t, err)
			cols, _ := rows.Columns()
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				require.NoError(t, rows.Scan(ptrs...))
				for _, v := range vals {
					if bs, ok := v.([]byte); ok {
						b.Write(bs)
					} else {
						fmt.Fprint(&b, v)
					}
					b.WriteByte('|')
				}
			}
			require.NoError(t, rows.Err())
			rows.Close()
		}
		return b.String()
	}
	// files returns the bytes of the SQLite database and its journals.
	files := func(t *testing.T, tdb *testDB) []byte {
		if tdb.path == "" {
			return nil
		}
		var all []byte
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			b, err := os.ReadFile(tdb.path + suffix)
			if err == nil {
				all = append(all, b...)
			}
		}
		require.NotEmpty(t, all)
		return all
	}
	eachBackend(t, func(t *testing.T, open func(*testing.T) *testDB) {
		t.Run("masked", func(t *testing.T) {
			tdb := open(t)
			write(t, tdb, Config{})
			c := cells(t, tdb)
			assert.Contains(t, c, "198.51.*.*")
			assert.Contains(t, c, "a***")
			assert.Contains(t, c, "SecretBrowser/***", "the product name is kept")
			c = strings.ReplaceAll(c, "SecretBrowser/***", "")
			f := bytes.ReplaceAll(files(t, tdb), []byte("SecretBrowser/***"), nil)
			for _, s := range secrets {
				assert.NotContains(t, c, s)
				assert.False(t, bytes.Contains(f, []byte(s)), "%q in the database file", s)
			}
			if f != nil {
				assert.False(t, bytes.Contains(f, netip.MustParseAddr(ip).AsSlice()), "the IP's bytes in the database file")
			}
		})
		t.Run("raw", func(t *testing.T) {
			tdb := open(t)
			write(t, tdb, Config{RawIdentity: true})
			c := cells(t, tdb)
			for _, s := range []string{user, ip, ua} {
				assert.Contains(t, c, s)
			}
			assert.Contains(t, c, "nul\uFFFD\uFFFD", "NUL and invalid UTF-8 stored as U+FFFD")
			if f := files(t, tdb); f != nil {
				assert.True(t, bytes.Contains(f, []byte(user)))
			}
		})
	})
}

// TestMaskedIPAsLogEvents: the stored form of a masked IP is the one
// axes.LogEvents prints.
func TestMaskedIPAsLogEvents(t *testing.T) {
	id := identity{}
	for _, s := range []string{"192.0.2.1", "10.200.3.4", "::ffff:198.51.100.9", "2001:db8:1:2:3:4:5:6", "fe80::1%eth0", "::1"} {
		a := netip.MustParseAddr(s)
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, nil))
		axes.LogEvents(log)(axes.Event{Kind: axes.EventLockout, Key: axes.Key{IP: a}})
		assert.Contains(t, buf.String(), " ip="+id.displayIP(a)+" ", s)
	}
}

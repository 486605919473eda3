package axesaudit

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/axes-go/axes"
)

func TestNewValidation(t *testing.T) {
	db, err := OpenSQLite(filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
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
		if err == nil {
			t.Fatalf("%s: New: no error", c.name)
		}
		if !strings.HasPrefix(err.Error(), "axes: ") {
			t.Errorf("%s: error %q does not start with \"axes: \"", c.name, err)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not contain %q", c.name, err, c.want)
		}
	}
	_, err = New(nil, Config{Key: testKey})
	if err == nil || !strings.Contains(err.Error(), "axes: ") {
		t.Errorf("New(nil, ...): error %v, want one containing \"axes: \"", err)
	}
	tr, err := New(db, Config{RawIdentity: true})
	if err != nil {
		t.Fatalf("New with RawIdentity and no key: %v (RawIdentity needs no key)", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err = OpenSQLite(":memory:")
	if err == nil || !strings.Contains(err.Error(), "axes: ") {
		t.Errorf("OpenSQLite(\":memory:\"): error %v, want one containing \"axes: \"", err)
	}
}

func TestMigrate(t *testing.T) {
	if SchemaVersion != len(migrations)-1 {
		t.Fatalf("SchemaVersion = %d, want the last migration's %d", SchemaVersion, len(migrations)-1)
	}
	eachDB(t, func(t *testing.T, tdb *testDB) {
		tr := newTrail(t, tdb, Config{})
		ctx := context.Background()
		if err := tr.Migrate(ctx); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		if err := tr.Migrate(ctx); err != nil {
			t.Fatalf("third Migrate: %v", err)
		}
		if n := count(t, tdb, "SELECT COUNT(*) FROM axes_audit_schema"); n != 1 {
			t.Errorf("%d rows in axes_audit_schema, want 1", n)
		}
		if v := count(t, tdb, "SELECT MAX(version) FROM axes_audit_schema"); v != SchemaVersion {
			t.Errorf("schema version %d, want %d", v, SchemaVersion)
		}
		if n := count(t, tdb, "SELECT COUNT(*) FROM axes_audit_events"); n != 0 {
			t.Errorf("%d rows in axes_audit_events, want 0", n)
		}
		if n := count(t, tdb, "SELECT COUNT(*) FROM axes_audit_attempts"); n != 0 {
			t.Errorf("%d rows in axes_audit_attempts, want 0", n)
		}
		// A database migrated by a newer version is refused.
		d := &dialects[tdb.dialect]
		_, err := tdb.db.Exec(d.rebind("INSERT INTO axes_audit_schema (version, applied_at) VALUES (?, ?)"), SchemaVersion+1, d.timeArg(t0))
		if err != nil {
			t.Fatalf("inserting a newer schema version: %v", err)
		}
		if err := tr.Migrate(ctx); err == nil || !strings.Contains(err.Error(), "newer") {
			t.Errorf("Migrate on a newer schema: error %v, want one containing %q", err, "newer")
		}
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
		if err != nil {
			t.Fatalf("axes.New: %v", err)
		}
		defer lim.Close()

		ip1, ip2 := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8::1")
		alice := axes.Key{IP: ip1, Username: "Alice", UserAgent: "curl/8.5"}
		bob := axes.Key{IP: ip2, Username: "bob", UserAgent: "Mozilla/5.0 (X11)"}
		for i := range 3 {
			clk.Set(time.Duration(i) * time.Minute)
			lim.Fail(alice)
		}
		clk.Set(3 * time.Minute)
		if r := lim.Fail(alice).Reason; r != axes.ReasonLockout {
			t.Fatalf("Fail while locked: Reason %v, want %v (refused while locked)", r, axes.ReasonLockout)
		}
		clk.Set(4 * time.Minute)
		lim.Success(bob)
		clk.Set(5 * time.Minute)
		tr.Logout(bob)
		clk.Set(6 * time.Minute)
		lim.ResetIP(ip1)
		flush(t, tr)
		if got, want := tr.Stats(), (Stats{Written: uint64(len(logged)) + 1}); got != want {
			t.Fatalf("Stats() = %+v, want %+v: every event and the logout written", got, want)
		}

		ctx := context.Background()
		query := func(f Filter) []Record {
			t.Helper()
			rs, err := tr.Query(ctx, f)
			if err != nil {
				t.Fatalf("Query(%+v): %v", f, err)
			}
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
		if got, want := kinds(all), "reset@6m0s logout@5m0s success@4m0s refused@3m0s lockout@2m0s failure@2m0s lockout@2m0s failure@2m0s failure@1m0s failure@1m0s failure@0s failure@0s"; got != want {
			t.Errorf("all records:\n got %s\nwant %s", got, want)
		}

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
			if got := kinds(query(c.f)); got != c.want {
				t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
			}
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
		if !slices.Equal(paged, all) {
			t.Errorf("pages of 5 give\n%s\nwant the whole\n%s", kinds(paged), kinds(all))
		}

		// Fields of the records.
		lo := query(Filter{Kinds: []Kind{Lockout}})
		if len(lo) != 2 {
			t.Fatalf("%d lockout records, want 2", len(lo))
		}
		for _, r := range lo {
			if want := clk.At(17 * time.Minute); r.Until != want {
				t.Errorf("lockout by %v: Until %v, want %v", r.By, r.Until, want)
			}
			if r.Failures != 3 {
				t.Errorf("lockout by %v: Failures %d, want 3", r.By, r.Failures)
			}
			if r.Limit != 3 {
				t.Errorf("lockout by %v: Limit %d, want 3", r.By, r.Limit)
			}
			if r.IP != "203.0.*.*" {
				t.Errorf("lockout by %v: IP %q, want %q", r.By, r.IP, "203.0.*.*")
			}
			if r.Username != "a***" {
				t.Errorf("lockout by %v: Username %q, want %q", r.By, r.Username, "a***")
			}
			if r.UserAgent != "curl/***" {
				t.Errorf("lockout by %v: UserAgent %q, want %q", r.By, r.UserAgent, "curl/***")
			}
		}
		if got, want := []axes.Fields{lo[0].By, lo[1].By}, []axes.Fields{axes.IP, axes.IP | axes.Username}; !sameElements(got, want) {
			t.Errorf("lockouts by %v, want %v in any order", got, want)
		}
		ref := query(Filter{Kinds: []Kind{Refused}})[0]
		if ref.Reason != axes.ReasonLockout {
			t.Errorf("refused record: Reason %v, want %v", ref.Reason, axes.ReasonLockout)
		}
		if want := clk.At(17 * time.Minute); ref.Until != want {
			t.Errorf("refused record: Until %v, want %v", ref.Until, want)
		}
		reset := query(Filter{Kinds: []Kind{Reset}})[0]
		if reset.Count != 2 {
			t.Errorf("reset record: Count %d, want 2", reset.Count)
		}
		if reset.Username != "" {
			t.Errorf("reset record of an IP: Username %q, want none", reset.Username)
		}
		bobs := query(Filter{Username: "bob"})
		if bobs[0].IP != "2001:db8::/64" {
			t.Errorf("bob's record: IP %q, want %q", bobs[0].IP, "2001:db8::/64")
		}
		if bobs[0].UserAgent != "Mozilla/***" {
			t.Errorf("bob's record: UserAgent %q, want %q", bobs[0].UserAgent, "Mozilla/***")
		}

		// Attempts: one row per client; three failed logins although each
		// counted in two dimensions; the lock lifted by ResetIP.
		atts, err := tr.Attempts(ctx, Filter{})
		if err != nil {
			t.Fatalf("Attempts: %v", err)
		}
		if len(atts) != 2 {
			t.Fatalf("%d attempts, want 2: %+v", len(atts), atts)
		}
		b, a := atts[0], atts[1]
		if want := (Attempt{ID: b.ID, IP: "2001:db8::/64", Username: "b***", UserAgent: "Mozilla/***",
			Successes: 1, FirstSeen: clk.At(4 * time.Minute), LastSeen: clk.At(4 * time.Minute)}); b != want {
			t.Errorf("bob's attempts\n got %+v\nwant %+v", b, want)
		}
		if want := (Attempt{ID: a.ID, IP: "203.0.*.*", Username: "a***", UserAgent: "curl/***",
			Failures: 3, Refused: 1, FirstSeen: t0, LastSeen: clk.At(3 * time.Minute)}); a != want {
			t.Errorf("alice's attempts\n got %+v\nwant %+v", a, want)
		}
		one, err := tr.Attempts(ctx, Filter{Username: "ALICE", UserAgent: "curl/8.5", IP: ip1})
		if err != nil {
			t.Fatalf("Attempts by IP, username and user agent: %v", err)
		}
		if want := []Attempt{a}; !slices.Equal(one, want) {
			t.Errorf("Attempts by IP, username and user agent\n got %+v\nwant %+v", one, want)
		}
		one, err = tr.Attempts(ctx, Filter{Since: clk.At(4 * time.Minute)})
		if err != nil {
			t.Fatalf("Attempts since 4m: %v", err)
		}
		if want := []Attempt{b}; !slices.Equal(one, want) {
			t.Errorf("Attempts since 4m\n got %+v\nwant %+v", one, want)
		}
		one, err = tr.Attempts(ctx, Filter{Limit: 1, Before: b.Cursor()})
		if err != nil {
			t.Fatalf("Attempts before bob's: %v", err)
		}
		if want := []Attempt{a}; !slices.Equal(one, want) {
			t.Errorf("Attempts before bob's\n got %+v\nwant %+v", one, want)
		}
		_, err = tr.Attempts(ctx, Filter{Kinds: []Kind{Failure}})
		if err == nil || !strings.Contains(err.Error(), "axes: ") {
			t.Errorf("Attempts filtered by kind: error %v, want one containing \"axes: \"", err)
		}
		_, err = tr.Query(ctx, Filter{Limit: MaxLimit + 1})
		if err == nil || !strings.Contains(err.Error(), "axes: ") {
			t.Errorf("Query with Limit MaxLimit+1: error %v, want one containing \"axes: \"", err)
		}
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
		if err != nil {
			t.Fatalf("Attempts: %v", err)
		}
		if len(atts) != 1 {
			t.Fatalf("%d attempts, want 1: %+v", len(atts), atts)
		}
		if want := t0.Add(time.Hour); atts[0].LockedUntil != want {
			t.Errorf("LockedUntil = %v, want the latest lock end %v", atts[0].LockedUntil, want)
		}
		tr.OnEvent(axes.Event{Kind: axes.EventRefused, Reason: axes.ReasonLockout, Time: t0.Add(time.Second), Key: k, By: axes.IP})
		flush(t, tr)
		atts, _ = tr.Attempts(context.Background(), Filter{})
		if atts[0].LockedUntil != Forever {
			t.Errorf("LockedUntil = %v after a refusal with no end, want Forever (a lock with no end)", atts[0].LockedUntil)
		}
		tr.OnEvent(axes.Event{Kind: axes.EventReset, Time: t0.Add(2 * time.Second), Key: axes.Key{Username: "Carol"}, Count: 1})
		flush(t, tr)
		atts, _ = tr.Attempts(context.Background(), Filter{})
		if !atts[0].LockedUntil.IsZero() {
			t.Errorf("LockedUntil = %v after a reset, want zero", atts[0].LockedUntil)
		}
		if atts[0].Refused != 1 {
			t.Errorf("Refused = %d, want 1", atts[0].Refused)
		}
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
		if got, want := tr.Stats(), (Stats{Written: 7}); got != want {
			t.Fatalf("Stats() = %+v, want %+v", got, want)
		}
		if err := tr.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		rs, err := tr.Query(context.Background(), Filter{Username: user})
		if err != nil {
			t.Fatalf("Query: %v", err)
		}
		if len(rs) != 6 {
			t.Fatalf("%d records found by the raw username, want 6", len(rs))
		}
	}
	// cells returns every cell of both tables as text.
	cells := func(t *testing.T, tdb *testDB) string {
		var b strings.Builder
		for _, table := range []string{"axes_audit_events", "axes_audit_attempts"} {
			rows, err := tdb.db.Query("SELECT * FROM " + table)
			if err != nil {
				t.Fatalf("SELECT * FROM %s: %v", table, err)
			}
			cols, _ := rows.Columns()
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatalf("scanning %s: %v", table, err)
				}
				for _, v := range vals {
					if bs, ok := v.([]byte); ok {
						b.Write(bs)
					} else {
						fmt.Fprint(&b, v)
					}
					b.WriteByte('|')
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("reading %s: %v", table, err)
			}
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
		if len(all) == 0 {
			t.Fatalf("no bytes in %s and its journals", tdb.path)
		}
		return all
	}
	eachBackend(t, func(t *testing.T, open func(*testing.T) *testDB) {
		t.Run("masked", func(t *testing.T) {
			tdb := open(t)
			write(t, tdb, Config{})
			c := cells(t, tdb)
			if !strings.Contains(c, "198.51.*.*") {
				t.Errorf("the tables lack the masked IP %q:\n%s", "198.51.*.*", c)
			}
			if !strings.Contains(c, "a***") {
				t.Errorf("the tables lack the masked username %q:\n%s", "a***", c)
			}
			if !strings.Contains(c, "SecretBrowser/***") {
				t.Errorf("the tables lack %q: the product name is kept\n%s", "SecretBrowser/***", c)
			}
			c = strings.ReplaceAll(c, "SecretBrowser/***", "")
			f := bytes.ReplaceAll(files(t, tdb), []byte("SecretBrowser/***"), nil)
			for _, s := range secrets {
				if strings.Contains(c, s) {
					t.Errorf("%q in the tables:\n%s", s, c)
				}
				if bytes.Contains(f, []byte(s)) {
					t.Errorf("%q in the database file", s)
				}
			}
			if f != nil && bytes.Contains(f, netip.MustParseAddr(ip).AsSlice()) {
				t.Error("the IP's bytes in the database file")
			}
		})
		t.Run("raw", func(t *testing.T) {
			tdb := open(t)
			write(t, tdb, Config{RawIdentity: true})
			c := cells(t, tdb)
			for _, s := range []string{user, ip, ua} {
				if !strings.Contains(c, s) {
					t.Errorf("the tables lack the raw %q:\n%s", s, c)
				}
			}
			if !strings.Contains(c, "nul\uFFFD\uFFFD") {
				t.Errorf("the tables lack %q: NUL and invalid UTF-8 stored as U+FFFD\n%s", "nul\uFFFD\uFFFD", c)
			}
			if f := files(t, tdb); f != nil && !bytes.Contains(f, []byte(user)) {
				t.Errorf("the raw username %q is not in the database file", user)
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
		if want := " ip=" + id.displayIP(a) + " "; !strings.Contains(buf.String(), want) {
			t.Errorf("%s: LogEvents printed %q, want it to contain %q", s, buf.String(), want)
		}
	}
}

// sameElements reports whether a and b hold the same elements the same
// number of times, in any order.
func sameElements[T cmp.Ordered](a, b []T) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

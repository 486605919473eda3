package axeshttp

import (
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/axes-go/axes"
)

// TestAdminRowsGroupByClient: the locks of one IP, username and user agent
// make one row listing their dimensions, with the longest time left (no
// end beating any end); other clients, even on the same IP, get their own.
func TestAdminRowsGroupByClient(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	a := &admin{now: func() time.Time { return now }}
	ip := netip.MustParsePrefix("192.0.2.1/32")
	v6 := netip.MustParsePrefix("2001:db8::/64")
	d := func(n uint64) axes.Digest { return axes.Digest{Hi: n, Lo: n} }
	locks := []axes.Lockout{
		{IP: ip, Username: "bob", UserAgent: "ua", By: axes.IP | axes.Username, Failures: 3, Until: now.Add(14 * time.Minute), Digest: d(1)},
		{IP: ip, Username: "eve", UserAgent: "ua", By: axes.IP | axes.Username, Failures: 4, Until: now.Add(20 * time.Minute), Digest: d(2)},
		{IP: ip, Username: "bob", UserAgent: "ua", By: axes.IP, Failures: 5, Until: now.Add(2 * time.Hour), Digest: d(3)},
		{IP: v6, Username: "root", By: axes.Username, Failures: 3, Until: now.Add(time.Minute), Digest: d(4)},
		{IP: v6, Username: "root", By: axes.IP, Failures: 3, Digest: d(5)}, // no end
	}
	rows, total := a.rows(locks, 10)
	if total != 3 || len(rows) != 3 {
		t.Fatalf("%d rows of %d: %+v", len(rows), total, rows)
	}
	type row struct{ ip, user, by, left, until string }
	var got []row
	for _, r := range rows {
		got = append(got, row{r.IP, r.Username, strings.Join(r.By, ", "), r.Left, r.Until})
	}
	want := []row{
		{"192.0.2.1", "eve", "ip+username", "20 minutes", "2026-01-01 12:20:00 UTC"},
		{"192.0.2.1", "bob", "ip, ip+username", "2 hours", "2026-01-01 14:00:00 UTC"},
		{"2001:db8::/64", "root", "ip, username", "indefinite", ""},
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows\n got %v\nwant %v", got, want)
	}
	if rows[1].Failures != 5 {
		t.Errorf("failures %d, want the most of its locks", rows[1].Failures)
	}
	if rows, total := a.rows(locks, 1); len(rows) != 1 || total != 3 {
		t.Errorf("limit 1: %d of %d", len(rows), total)
	}
	for d, want := range map[time.Duration]string{
		0: "0 seconds", time.Second: "1 second", 59*time.Second + 1: "1 minute", time.Minute: "1 minute",
		14*time.Minute - time.Second: "14 minutes", 119 * time.Minute: "119 minutes", 2 * time.Hour: "2 hours",
		47 * time.Hour: "47 hours", 48 * time.Hour: "2 days", -time.Minute: "0 seconds",
	} {
		if got := inWords(d); got != want {
			t.Errorf("inWords(%v) = %q, want %q", d, got, want)
		}
	}
}

// rowsFixture: clients A and B each locked in three dimensions, and C by
// IP alone, on an admin with the fixture's token.
func rowsFixture(t *testing.T) (*adminFixture, [3]axes.Key) {
	t.Helper()
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Limit: 2, LockoutBy: []axes.Fields{axes.IP, axes.Username, axes.IP | axes.Username}}, clk)
	keys := [3]axes.Key{
		{IP: netip.MustParseAddr("192.0.2.1"), Username: "alice", UserAgent: "a"},
		{IP: netip.MustParseAddr("192.0.2.2"), Username: "bob", UserAgent: "b"},
		{IP: netip.MustParseAddr("192.0.2.3"), Username: "carol", UserAgent: "c"},
	}
	for _, k := range keys[:2] {
		lim.Fail(k)
		lim.Fail(k)
	}
	lim.Fail(keys[2])
	lim.Fail(axes.Key{IP: keys[2].IP, Username: "dave"})
	if n := len(lim.Lockouts()); n != 7 {
		t.Fatalf("setup: %d locks, want 7", n)
	}
	h := mustAdmin(t, lim, AdminToken(testAdminToken), AdminClock(clk.Now))
	return &adminFixture{clk: clk, lim: lim, h: mountAdmin(h)}, keys
}

// pageRows returns the row token of each row of the page, by the row's IP.
func pageRows(t *testing.T, f *adminFixture) map[string]string {
	t.Helper()
	body := f.do("GET", "/axes/", "").Body.String()
	out := map[string]string{}
	re := regexp.MustCompile(`(?s)<td data-label="IP" class="mono">([^<]*)</td>.*?name="row" value="([^"]+)"`)
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// lockedBy lists the dimensions locked now for the IP.
func lockedBy(f *adminFixture, ip string) []string {
	var out []string
	for _, l := range f.lim.Lockouts() {
		if l.IP.Addr().String() == ip {
			out = append(out, l.By.String())
		}
	}
	slices.Sort(out)
	return out
}

// TestAdminRowResetExact: a row's button lifts every lock of its client and
// nothing else; a row token that the admin did not sign, or that was
// changed, is refused and resets nothing.
func TestAdminRowResetExact(t *testing.T) {
	f, keys := rowsFixture(t)
	tok := f.token(t)
	rows := pageRows(t, f)
	if len(rows) != 3 {
		t.Fatalf("%d rows: %v", len(rows), rows)
	}
	a, b := rows["192.0.2.1"], rows["192.0.2.2"]

	// Forgeries: each would reset something on code that trusts the row.
	bPayload := b[:strings.LastIndexByte(b, '.')]
	aSig := a[strings.LastIndexByte(a, '.')+1:]
	flip := func(s string, i int) string {
		c := byte('0')
		if s[i] == '0' {
			c = '1'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	other, _ := rowsFixture(t)
	forged := []string{
		bPayload + "." + aSig,                   // B's locks under A's signature
		flip(a, strings.Index(a, "-")+1),        // one digest changed
		flip(a, len(a)-2),                       // the signature changed
		a[:strings.LastIndexByte(a, '.')],       // unsigned
		a[:strings.LastIndexByte(a, '.')] + ".", // empty signature
		pageRows(t, other)["192.0.2.1"],         // signed by another admin
		"1.AA.AA.AA." + strings.Repeat("A", 43), // the old format, any signature
		strings.Repeat("A", 20000),              // over the body bound
	}
	for i, row := range forged {
		w := f.postForm(url.Values{"action": {"row"}, "row": {row}, "csrf": {tok}})
		if w.Code != 400 {
			t.Errorf("forgery %d: %d %s, want 400", i, w.Code, w.Body)
		}
	}
	if n := len(f.lim.Lockouts()); n != 7 {
		t.Fatalf("forged rows reset locks: %d left of 7", n)
	}

	// A's row: its three locks go, B's and C's stay.
	w := f.postForm(url.Values{"action": {"row"}, "row": {a}, "csrf": {tok}})
	if w.Code != 303 || w.Header().Get("Location") != "./?reset=3" {
		t.Fatalf("row A: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if got := lockedBy(f, "192.0.2.1"); len(got) != 0 {
		t.Errorf("A still locked by %v", got)
	}
	if got := lockedBy(f, "192.0.2.2"); !slices.Equal(got, []string{"ip", "ip+username", "username"}) {
		t.Errorf("B locked by %v", got)
	}
	if got := lockedBy(f, "192.0.2.3"); !slices.Equal(got, []string{"ip"}) {
		t.Errorf("C locked by %v", got)
	}
	if f.lim.Locked(keys[0]) || !f.lim.Locked(keys[1]) || !f.lim.Locked(keys[2]) {
		t.Error("Locked after A's reset")
	}
	// Replaying the row is harmless: the locks are gone.
	if w := f.postForm(url.Values{"action": {"row"}, "row": {a}, "csrf": {tok}}); w.Code != 303 || len(f.lim.Lockouts()) != 4 {
		t.Errorf("replay: %d, %d locks", w.Code, len(f.lim.Lockouts()))
	}
}

// TestAdminRowsWithoutIdentity: once the identity budget is spent, locks
// are kept by digest alone; each is a row of its own, and its button lifts
// exactly that lock (an attacker's long user agents cannot merge many
// clients into one row that cannot be reset).
func TestAdminRowsWithoutIdentity(t *testing.T) {
	clk := newClock()
	lim, err := axes.New(axes.Policy{Limit: 1}, axes.WithClock(clk.Now), axes.WithMaxEntries(64))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Close() })
	long := strings.Repeat("x", 256)
	for i := range 40 {
		lim.Fail(axes.Key{IP: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), Username: long, UserAgent: long})
	}
	anonymous := 0
	for _, l := range lim.Lockouts() {
		if !l.IP.IsValid() {
			anonymous++
		}
	}
	if anonymous < 2 {
		t.Fatalf("setup: %d locks without identity, want several", anonymous)
	}
	f := &adminFixture{clk: clk, lim: lim, h: mountAdmin(mustAdmin(t, lim, AdminToken(testAdminToken), AdminClock(clk.Now)))}
	body := f.do("GET", "/axes/", "").Body.String()
	rows := regexp.MustCompile(`name="row" value="([^"]+)"`).FindAllStringSubmatch(body, -1)
	if len(rows) != 40 {
		t.Fatalf("%d rows for 40 locked clients", len(rows))
	}
	// Reset the last row (a lock without identity comes last or first; any
	// row must lift exactly one lock here).
	w := f.postForm(url.Values{"action": {"row"}, "row": {rows[len(rows)-1][1]}, "csrf": {f.token(t)}})
	if w.Code != 303 || w.Header().Get("Location") != "./?reset=1" {
		t.Fatalf("row reset: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if n := len(lim.Lockouts()); n != 39 {
		t.Errorf("%d locks left, want 39", n)
	}
}

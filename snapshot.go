package axes

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/axes-go/axes/store"
	"hash/crc32"
	"io"
	"net/netip"
	"time"
)

// Snapshots let a deploy or restart keep every lock and count instead of
// granting every attacker an amnesty. The format (version 2: the digests of version 1 were
// computed otherwise, so its snapshots do not restore) is binary,
// little-endian:
//
//	header, 64 bytes:
//	  0   magic "AXESSNAP"
//	  8   version uint16 (2)
//	  10  flags uint16 (bit 0: identities of locks included)
//	  12  reserved uint32 (0)
//	  16  written at, int64 Unix milliseconds
//	  24  secret fingerprint [16]byte: a digest under the limiter's secret
//	  40  entry count uint64
//	  48  reserved [16]byte (0)
//	entry, 56 bytes, then the identity if its flag is set:
//	  0   digest [16]byte
//	  16  fields uint8 (bits 6-7: the store.Kind of a Policy.Spray entry), level uint8, generation uint8, has identity uint8
//	  20  failures uint16, reservations uint16
//	  24  IP tag uint32, username tag uint32
//	  32  last failure, last reservation: int64 Unix milliseconds each
//	  48  lock end int64 Unix milliseconds (0 none, -1 no end)
//	identity:
//	  family uint8 (0 unknown, 4, 6), prefix bits uint8, address [16]byte,
//	  username length uint16, user agent length uint16 (each at most
//	  MaxIdentityBytes), then the bytes of both
//	trailer: CRC-32C (Castagnoli) uint32 of everything before it
//
// Times are wall-clock, so a snapshot restores correctly in another
// process. Entries hold digests only: no raw IP or username bytes appear
// except the identities of current locks, which WithoutIdentities leaves
// out.

const (
	snapMagic      = "AXESSNAP"
	snapVersion    = 2
	snapHeaderLen  = 64
	snapEntryLen   = 56
	snapFlagIdents = 1
)

// SnapshotOption configures Limiter.Snapshot.
type SnapshotOption func(*snapConfig)

type snapConfig struct{ noIdentities bool }

// WithoutIdentities leaves the identities of current locks (IP prefix,
// username and user agent, as Lockouts shows them) out of a snapshot, so
// that it holds no personal data at all; the locks themselves are kept.
func WithoutIdentities() SnapshotOption { return func(c *snapConfig) { c.noIdentities = true } }

// ErrSnapshotSecret is returned by Restore for a snapshot written by a
// limiter with another secret: its digests would match nothing.
var ErrSnapshotSecret = errors.New("axes: snapshot was written under another secret")

// snapEntry is one decoded entry, on the wall clock.
type snapEntry struct {
	sl       slot
	lastFail int64
	lastBeg  int64
	lockEnd  int64
	id       *store.Identity
}

func (l *Limiter) fingerprint() [16]byte {
	d := l.h.fieldDigest('S', "axes snapshot fingerprint v1")
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], d.Hi)
	binary.LittleEndian.PutUint64(b[8:], d.Lo)
	return b
}

// Snapshot writes the state of every tracked dimension to w in the format
// described in the package's snapshot.go. Each shard is copied under its
// lock, one at a time; the limiter keeps serving meanwhile. It returns an
// error if the store is not the memory store (a shared store keeps its own
// state) or if w fails.
func (l *Limiter) Snapshot(w io.Writer, opts ...SnapshotOption) error {
	var c snapConfig
	for _, o := range opts {
		o(&c)
	}
	st, ok := l.store.(*memStore)
	if !ok {
		return errors.New("axes: Snapshot needs the memory store")
	}
	now := l.clock()
	st.init(now, &l.rule)
	nowInst := st.instant(now)
	var entries []snapEntry
	st.eachShard(func(sh *shard) {
		sh.eachFull(func(i int) {
			sl := sh.slots[i]
			e := snapEntry{sl: sl}
			if sl.flags&flagIdentity != 0 && !c.noIdentities {
				id := unpackIdentity(sh.ids[sl.k])
				e.id = &id
			}
			entries = append(entries, e)
		})
	})
	bw := bufio.NewWriter(w)
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	out := io.MultiWriter(bw, crc)
	var hdr [snapHeaderLen]byte
	copy(hdr[:], snapMagic)
	binary.LittleEndian.PutUint16(hdr[8:], snapVersion)
	if !c.noIdentities {
		binary.LittleEndian.PutUint16(hdr[10:], snapFlagIdents)
	}
	binary.LittleEndian.PutUint64(hdr[16:], uint64(now.UnixMilli()))
	fp := l.fingerprint()
	copy(hdr[24:], fp[:])
	binary.LittleEndian.PutUint64(hdr[40:], uint64(len(entries)))
	out.Write(hdr[:])
	wall := func(s uint32) int64 {
		if s == 0 {
			return 0
		}
		return wall(now, nowInst, fromSec(s)).UnixMilli()
	}
	var buf [snapEntryLen + 2 + 16 + 4 + 2*MaxIdentityBytes]byte
	for i := range entries {
		e := &entries[i]
		sl := &e.sl
		b := buf[:snapEntryLen]
		k := sl.k.digest()
		binary.LittleEndian.PutUint64(b[0:], k.Hi)
		binary.LittleEndian.PutUint64(b[8:], k.Lo)
		b[16], b[17], b[18] = sl.flags&(flagFields|flagKind), sl.level, sl.gen
		if e.id != nil {
			b[19] = 1
		} else {
			b[19] = 0
		}
		binary.LittleEndian.PutUint16(b[20:], sl.fails)
		binary.LittleEndian.PutUint16(b[22:], sl.pending)
		binary.LittleEndian.PutUint32(b[24:], sl.ipTag)
		binary.LittleEndian.PutUint32(b[28:], sl.userTag)
		binary.LittleEndian.PutUint64(b[32:], uint64(wall(sl.lastFail)))
		binary.LittleEndian.PutUint64(b[40:], uint64(wall(sl.lastBegin)))
		lockEnd := int64(0)
		switch sl.lockEnd {
		case 0:
		case secForever:
			lockEnd = -1
		default:
			lockEnd = wall(sl.lockEnd)
		}
		binary.LittleEndian.PutUint64(b[48:], uint64(lockEnd))
		if e.id != nil {
			b = appendIdentity(b, e.id)
		}
		if _, err := out.Write(b); err != nil {
			return fmt.Errorf("axes: writing snapshot: %w", err)
		}
	}
	var tr [4]byte
	binary.LittleEndian.PutUint32(tr[:], crc.Sum32())
	bw.Write(tr[:])
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("axes: writing snapshot: %w", err)
	}
	return nil
}

func appendIdentity(b []byte, id *store.Identity) []byte {
	var fam, nbits byte
	var a16 [16]byte
	if id.IP.IsValid() {
		fam, nbits = 6, byte(id.IP.Bits())
		if id.IP.Addr().Is4() {
			fam = 4
		}
		a16 = id.IP.Addr().As16()
	}
	u, ua := truncate(id.Username), truncate(id.UserAgent)
	b = append(b, fam, nbits)
	b = append(b, a16[:]...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(u)))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(ua)))
	b = append(b, u...)
	return append(b, ua...)
}

// Restore reads a snapshot written by Snapshot and loads it into the
// limiter's memory store: restored entries replace tracked entries with the
// same digest, entries that have expired by now are dropped, and the entry
// cap applies as usual. The limiter must use the secret of the limiter that
// wrote the snapshot (WithSecret), else Restore returns ErrSnapshotSecret.
// Nothing is loaded unless the whole snapshot is intact: a truncated,
// corrupt or unknown-version snapshot returns an error, never panics, and
// never allocates much more than the size of its input.
func (l *Limiter) Restore(r io.Reader) error {
	st, ok := l.store.(*memStore)
	if !ok {
		return errors.New("axes: Restore needs the memory store")
	}
	entries, err := l.decodeSnapshot(r)
	if err != nil {
		return err
	}
	now := l.clock()
	st.init(now, &l.rule)
	st.restore(entries, now)
	return nil
}

func (l *Limiter) decodeSnapshot(r io.Reader) ([]snapEntry, error) {
	br := bufio.NewReader(r)
	consumed := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	read := func(b []byte) error {
		if _, err := io.ReadFull(br, b); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return errors.New("axes: snapshot is truncated")
			}
			return fmt.Errorf("axes: reading snapshot: %w", err)
		}
		consumed.Write(b)
		return nil
	}
	var hdr [snapHeaderLen]byte
	if err := read(hdr[:]); err != nil {
		return nil, err
	}
	if string(hdr[:8]) != snapMagic {
		return nil, errors.New("axes: not a snapshot (bad magic)")
	}
	if v := binary.LittleEndian.Uint16(hdr[8:]); v != snapVersion {
		return nil, fmt.Errorf("axes: snapshot version %d is not supported (want %d)", v, snapVersion)
	}
	flags := binary.LittleEndian.Uint16(hdr[10:])
	if flags&^snapFlagIdents != 0 || binary.LittleEndian.Uint32(hdr[12:]) != 0 {
		return nil, errors.New("axes: snapshot has unknown flags")
	}
	count := binary.LittleEndian.Uint64(hdr[40:])
	fp := l.fingerprint()
	secretOK := [16]byte(hdr[24:40]) == fp
	entries := make([]snapEntry, 0, min(count, 1<<12))
	var b [snapEntryLen]byte
	var ib [2 + 16 + 4]byte
	var strs [2 * MaxIdentityBytes]byte
	for i := uint64(0); i < count; i++ {
		if err := read(b[:]); err != nil {
			return nil, err
		}
		var e snapEntry
		sl := &e.sl
		d := Digest{Hi: binary.LittleEndian.Uint64(b[0:]), Lo: binary.LittleEndian.Uint64(b[8:])}
		if d.IsZero() || b[16]&flagFields == 0 || b[16]&^(flagFields|flagKind) != 0 || store.Kind(b[16]>>kindShift) > store.KindSpray || b[19] > 1 {
			return nil, fmt.Errorf("axes: snapshot entry %d is malformed", i)
		}
		sl.k = toSlotKey(d)
		sl.flags, sl.level, sl.gen = b[16], b[17], b[18]
		sl.fails = binary.LittleEndian.Uint16(b[20:])
		sl.pending = binary.LittleEndian.Uint16(b[22:])
		sl.ipTag = binary.LittleEndian.Uint32(b[24:])
		sl.userTag = binary.LittleEndian.Uint32(b[28:])
		e.lastFail = int64(binary.LittleEndian.Uint64(b[32:]))
		e.lastBeg = int64(binary.LittleEndian.Uint64(b[40:]))
		e.lockEnd = int64(binary.LittleEndian.Uint64(b[48:]))
		if e.lastFail < 0 || e.lastBeg < 0 || e.lockEnd < -1 {
			return nil, fmt.Errorf("axes: snapshot entry %d has a negative time", i)
		}
		if b[19] == 1 {
			if flags&snapFlagIdents == 0 {
				return nil, fmt.Errorf("axes: snapshot entry %d has an identity the header does not announce", i)
			}
			if err := read(ib[:]); err != nil {
				return nil, err
			}
			fam, nbits := ib[0], int(ib[1])
			ul, al := int(binary.LittleEndian.Uint16(ib[18:])), int(binary.LittleEndian.Uint16(ib[20:]))
			if ul > MaxIdentityBytes || al > MaxIdentityBytes {
				return nil, fmt.Errorf("axes: snapshot entry %d has an identity over %d bytes", i, MaxIdentityBytes)
			}
			id := &store.Identity{}
			switch fam {
			case 0:
			case 4:
				if nbits > 32 {
					return nil, fmt.Errorf("axes: snapshot entry %d has a bad prefix", i)
				}
				id.IP = netip.PrefixFrom(netip.AddrFrom16([16]byte(ib[2:18])).Unmap(), nbits)
			case 6:
				if nbits > 128 {
					return nil, fmt.Errorf("axes: snapshot entry %d has a bad prefix", i)
				}
				id.IP = netip.PrefixFrom(netip.AddrFrom16([16]byte(ib[2:18])), nbits)
			default:
				return nil, fmt.Errorf("axes: snapshot entry %d has a bad address family", i)
			}
			if err := read(strs[:ul+al]); err != nil {
				return nil, err
			}
			id.Username = string(strs[:ul])
			id.UserAgent = string(strs[ul : ul+al])
			e.id = id
			sl.flags |= flagIdentity
		}
		entries = append(entries, e)
	}
	sum := consumed.Sum32()
	var tr [4]byte
	if _, err := io.ReadFull(br, tr[:]); err != nil {
		return nil, errors.New("axes: snapshot is truncated")
	}
	if binary.LittleEndian.Uint32(tr[:]) != sum {
		return nil, errors.New("axes: snapshot checksum mismatch")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, errors.New("axes: snapshot has trailing data")
	}
	if !secretOK {
		return nil, ErrSnapshotSecret
	}
	return entries, nil
}

// restore loads decoded entries at now.
func (st *memStore) restore(entries []snapEntry, t time.Time) {
	now := st.instant(t)
	toStore := func(ms int64) uint32 {
		if ms == 0 {
			return 0
		}
		d := time.UnixMilli(ms).Sub(t)
		if d > maxFinite-now {
			return secMax
		}
		return max(toSec(now+d), 1)
	}
	for i := range entries {
		e := &entries[i]
		sl := e.sl
		sl.lastFail = toStore(e.lastFail)
		sl.lastBegin = toStore(e.lastBeg)
		switch e.lockEnd {
		case 0:
			sl.lockEnd = 0
		case -1:
			sl.lockEnd = secForever
		default:
			sl.lockEnd = toStore(e.lockEnd)
		}
		sl.flags &^= flagFiltered
		if st.expired(&sl, now) {
			continue
		}
		d := sl.k.digest()
		sh := &st.shards[st.shardOf(d)]
		sh.mu.Lock()
		if j := sh.find(sl.k, d); j >= 0 {
			st.remove(sh, j)
		}
		if st.makeRoom(sh, d, now) {
			j := sh.place(sl.k, d)
			hasID := sl.flags&flagIdentity != 0
			sl.flags &^= flagIdentity
			sh.slots[j] = sl
			locked := sl.lockEnd == secForever || (sl.lockEnd != 0 && now < fromSec(sl.lockEnd))
			if locked || sl.pending != 0 {
				st.filter[st.filterIndex(d)].Add(1)
				sh.slots[j].flags |= flagFiltered
				if locked && hasID && e.id != nil {
					st.setIdentity(sh, j, e.id)
				}
			}
		} else {
			// No slot: the sketch keeps it, reservations as failures.
			s := sl.state()
			s.Failures = min(s.Failures+s.Pending, MaxFailures)
			s.Pending = 0
			if s.Failures > 0 {
				s.LastFail = max(s.LastFail, s.LastBegin)
			}
			if r := st.base.ForKind(slotKind(&sl)); slotKind(&sl) != store.KindMember {
				st.sk.record(d, &s, now, r.Window, r.Decay)
			}
			sh.overflows++
		}
		sh.mu.Unlock()
	}
}

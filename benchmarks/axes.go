package benchmarks

import (
	"github.com/axes-go/axes"
)

var axesMaker = Maker{
	Name:      "axes",
	Desc:      "axes: the full default policy (Fixed cooloff = window), keyed by IP or username, WithMaxEntries cap",
	Capped:    true,
	FakeClock: true,
	New: func(c Config) (Subject, error) {
		if err := c.validate(); err != nil {
			return nil, err
		}
		by := axes.IP
		if c.By == ByUsername {
			by = axes.Username
		}
		opts := []axes.Option{}
		if c.MaxKeys > 0 {
			opts = append(opts, axes.WithMaxEntries(c.MaxKeys))
		}
		if c.Clock != nil {
			opts = append(opts, axes.WithClock(c.Clock))
		}
		l, err := axes.New(axes.Policy{
			Limit:     c.Limit,
			LockoutBy: []axes.Fields{by},
			Cooloff:   axes.Fixed(c.Window),
			Window:    c.Window,
		}, opts...)
		if err != nil {
			return nil, err
		}
		return &axesSubject{l: l, byIP: c.By == ByIP}, nil
	},
}

// axesSubject passes IP workloads as Key.IP and username workloads as
// Key.Username; the limiter only reads the field its policy counts by.
type axesSubject struct {
	l    *axes.Limiter
	byIP bool
}

func (s *axesSubject) key(k Key) axes.Key {
	if s.byIP {
		return axes.Key{IP: k.IP}
	}
	return axes.Key{IP: k.IP, Username: k.S}
}

func (s *axesSubject) Fail(k Key) bool   { return s.l.Fail(s.key(k)).Locked }
func (s *axesSubject) Locked(k Key) bool { return s.l.Locked(s.key(k)) }
func (s *axesSubject) Close()            { _ = s.l.Close() }

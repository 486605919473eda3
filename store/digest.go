package store

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Digest is a keyed 128-bit digest of one dimension of a Key: the fields the
// dimension counts, each tagged and length-prefixed, hashed with the
// limiter's secret. Stores index entries by it and compare it whole.
type Digest struct{ Hi, Lo uint64 }

// String returns the digest as 32 hexadecimal digits.
func (d Digest) String() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], d.Hi)
	binary.BigEndian.PutUint64(b[8:], d.Lo)
	return hex.EncodeToString(b[:])
}

// ParseDigest parses the 32 hexadecimal digits of Digest.String.
func ParseDigest(s string) (Digest, error) {
	var b [16]byte
	if len(s) != 32 {
		return Digest{}, errors.New("axes: a digest is 32 hexadecimal digits")
	}
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return Digest{}, fmt.Errorf("axes: bad digest: %w", err)
	}
	return Digest{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}, nil
}

// IsZero reports whether d is the zero digest.
func (d Digest) IsZero() bool { return d.Hi == 0 && d.Lo == 0 }

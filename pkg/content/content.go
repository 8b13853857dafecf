// Package content is topod's content addressing: a blob is named by the
// SHA-256 digest of its bytes, so a name denotes exactly one value and a
// reader can verify what it got against the name it asked for.
package content

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Size is the length of a Hash in bytes.
const Size = sha256.Size

// Hash is the SHA-256 digest of a blob. Its String form is lower-case hex.
// The zero Hash is not the digest of any known value; it is what Parse
// returns with an error.
type Hash [Size]byte

// Sum returns the hash of data: its SHA-256 digest.
func Sum(data []byte) Hash {
	return sha256.Sum256(data)
}

// Parse parses the 64-character hex form of a hash, as returned by
// Hash.String. Upper-case hex digits are accepted.
func Parse(s string) (Hash, error) {
	var h Hash
	if len(s) != hex.EncodedLen(Size) {
		return Hash{}, fmt.Errorf("content: parse hash %q: want %d hex characters, got %d", s, hex.EncodedLen(Size), len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return Hash{}, fmt.Errorf("content: parse hash %q: %w", s, err)
	}
	return h, nil
}

// String returns the hash in lower-case hex.
func (h Hash) String() string {
	return hex.EncodeToString(h[:])
}

// IsZero reports whether h is the zero Hash.
func (h Hash) IsZero() bool {
	return h == Hash{}
}

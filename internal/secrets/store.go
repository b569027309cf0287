package secrets

import "github.com/provisiond/provisiond/internal/inventory"

// Sealed is where sealed secrets are kept (the inventory's database): it
// never sees a value in the clear.
type Sealed interface {
	SealedSecret(name string) ([]byte, error)
	PutSecret(name string, sealed []byte) error
	Secrets() ([]inventory.SecretInfo, error)
	DeleteSecret(name string) error
}

// Store keeps secrets sealed with the data directory's key in a Sealed
// backend, and opens them for the boots and BMC calls that need them.
type Store struct {
	sealed Sealed
	box    *Box
}

// NewStore returns a Store.
func NewStore(sealed Sealed, box *Box) *Store {
	return &Store{sealed: sealed, box: box}
}

// Secret returns a secret's value.
func (s *Store) Secret(name string) (string, error) {
	sealed, err := s.sealed.SealedSecret(name)
	if err != nil {
		return "", err
	}
	v, err := s.box.Open(name, sealed)
	return string(v), err
}

// SetSecret seals and stores a value.
func (s *Store) SetSecret(name, value string) error {
	if err := inventory.ValidSecretName(name); err != nil {
		return err
	}
	sealed, err := s.box.Seal(name, []byte(value))
	if err != nil {
		return err
	}
	return s.sealed.PutSecret(name, sealed)
}

// Secrets lists the secrets' names.
func (s *Store) Secrets() ([]inventory.SecretInfo, error) { return s.sealed.Secrets() }

// DeleteSecret removes a secret.
func (s *Store) DeleteSecret(name string) error { return s.sealed.DeleteSecret(name) }

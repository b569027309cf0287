package daemon

import (
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/secrets"
)

// SecretStore keeps secrets sealed in the inventory under the data
// directory's key.
type SecretStore struct {
	store *inventory.Store
	box   *secrets.Box
}

// NewSecretStore returns a SecretStore.
func NewSecretStore(store *inventory.Store, box *secrets.Box) *SecretStore {
	return &SecretStore{store: store, box: box}
}

// Secret returns a secret's value.
func (s *SecretStore) Secret(name string) (string, error) {
	sealed, err := s.store.SealedSecret(name)
	if err != nil {
		return "", err
	}
	v, err := s.box.Open(name, sealed)
	return string(v), err
}

// SetSecret seals and stores a value.
func (s *SecretStore) SetSecret(name, value string) error {
	if err := inventory.ValidSecretName(name); err != nil {
		return err
	}
	sealed, err := s.box.Seal(name, []byte(value))
	if err != nil {
		return err
	}
	return s.store.PutSecret(name, sealed)
}

// Secrets lists the secrets' names.
func (s *SecretStore) Secrets() ([]inventory.SecretInfo, error) { return s.store.Secrets() }

// DeleteSecret removes a secret.
func (s *SecretStore) DeleteSecret(name string) error { return s.store.DeleteSecret(name) }

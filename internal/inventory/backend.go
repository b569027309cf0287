package inventory

import (
	"io"

	"github.com/provisiond/provisiond/internal/events"
)

// The store's contract, split by concern. *Store (bbolt, one file) keeps
// them all; another backend implements Backend and must pass
// inventorytest.Conformance. Consumers ask for the part they use.

// Machines are the machine records, indexed by name and by MAC. Every
// change is one transaction; UpdateMachine's fn runs on the current record
// inside it, so concurrent writers never lose each other's updates.
type Machines interface {
	Machine(name string) (*Machine, error)
	MachineByMAC(mac string) (*Machine, error)
	// BootSettingsByMAC is the DHCP path's lookup: only what a boot
	// decision needs, without decoding the whole record.
	BootSettingsByMAC(mac string) (bs BootSettings, found bool, err error)
	Machines() ([]Machine, error)
	// WriteMachines streams the machines q picks to w as a JSON array,
	// from the stored records; it returns the next page's After.
	WriteMachines(w io.Writer, q ListQuery) (next string, err error)
	PutMachine(m Machine) (*Machine, error)
	UpdateMachine(name string, fn func(m *Machine) error) (*Machine, error)
	// SyncMachine is UpdateMachine on behalf of source (the history names
	// it); with create, a missing machine starts empty.
	SyncMachine(name, source string, create bool, fn func(m *Machine) error) (*Machine, error)
	DeleteMachine(name string) error
	// ConsumeOnce ends a one-shot assignment of profile and returns the
	// profile the machine reverts to ("" when there was none any more).
	ConsumeOnce(name, profile string) (string, error)
}

// Timelines are the machines' boot steps, bounded per machine.
type Timelines interface {
	// AppendEvents stores a batch in one transaction and returns the
	// events as stored (machine and sequence number filled in).
	AppendEvents(batch []events.Event) ([]events.Event, error)
	// Events is a machine's timeline after sequence number after, oldest
	// first: with limit > 0 only the newest limit of those steps.
	Events(name string, after uint64, limit int) ([]events.Event, error)
}

// SealedSecrets keeps secrets the caller sealed; it never sees plain text.
type SealedSecrets interface {
	PutSecret(name string, sealed []byte) error
	SealedSecret(name string) ([]byte, error)
	Secrets() ([]SecretInfo, error)
	DeleteSecret(name string) error
	// KeyCanary returns the value sealed with the deployment's key that
	// the store keeps to tell that key from another; the first call
	// stores sealed, and so does a call with replace (once no stored
	// secret needs the old key). Every instance opens it with its key
	// file before it serves.
	KeyCanary(sealed []byte, replace bool) ([]byte, error)
}

// HardwareRecords are what the machines are made of and where they stand:
// observed hardware, imports and exports, enclosures, spare parts, roles and
// the history of every hardware change.
type HardwareRecords interface {
	Observe(name string, obs Observed) (*Machine, []FieldChange, error)
	AcceptObserved(name string) (*Machine, []FieldChange, error)
	// Adopt merges a discovered machine into a machine (or a new one).
	Adopt(discovered, name string) (*Machine, []FieldChange, error)
	Import(doc *Document, apply bool) (*ImportResult, error)
	Export() (*Document, error)
	Systems() ([]System, error)
	Parts() ([]Part, error)
	Roles() ([]Role, error)
	History(name string) ([]Change, error)
}

// Backend is a whole store.
type Backend interface {
	Machines
	Timelines
	SealedSecrets
	HardwareRecords
	// WriteSnapshot writes a consistent copy of the store (for backups).
	WriteSnapshot(w io.Writer) (size int64, machines int, err error)
	// DiscoveryRefused counts steps of unknown MACs not kept because the
	// bound on discovered machines was reached.
	DiscoveryRefused() uint64
	// Revision changes whenever this process changes a record other than
	// a timeline; ok false: other processes change the store too.
	Revision() (rev uint64, ok bool)
	Close() error
}

var _ Backend = (*Store)(nil)

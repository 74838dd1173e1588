package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sshchat-dev/sshchat/keys"
)

// Moderation is shared through one key ("state") of the JetStream
// key-value bucket PREFIX_moderation (dots in the prefix become '_'),
// whose value is the whole keys.Moderation as JSON: every node keeps its
// own moderation file, and the bucket is the cluster's copy of it. An edit
// (from chat, on any node) reads the bucket, applies it to the node's file,
// makes the change there and writes the result back only if nobody wrote
// the bucket in between (compare-and-set on the key's revision; on a
// conflict it starts again). Every node watches the key and writes each
// new value to its own file, then revalidates its sessions: a ban on one
// node disconnects the user and refuses their logins on all of them as
// soon as the value arrives. What arrives is checked like a file read from
// disk (keys.EditModeration refuses anything invalid). At start-up the
// bucket wins over the node's file; a node whose bucket is empty seeds it.
//
// An edit of a node's file made outside chat (the sshchat CLI, or by hand)
// is shared the same way once the node's watcher has reloaded it (Share),
// unless another node changed the moderation since this node last applied
// it: that change wins, is applied to the file then (a change refused
// while the file was invalid arrives that way once it is repaired), and
// the edit is logged as not shared. The node keeps what it last applied
// or shared, so it tells an edit of the file from a file that holds the
// shared moderation: a change from another node that overwrites an edit
// not yet shared is logged so, and sharing a file that holds nothing new
// writes nothing.
//
// If NATS cannot be reached, an edit is made on the node's file only, and
// logged as not shared; the next edit anywhere, or a restart of the node,
// brings it back in line with the bucket, which then wins.

// Sanctions is a node's moderation file: keys.ModerationStore.
type Sanctions interface {
	Current() *keys.Moderation
	Edit(fn func(*keys.Moderation) error) (*keys.Moderation, error)
}

// moderationKey is the key of the shared moderation in its bucket.
const moderationKey = "state"

// maxEditAttempts bounds the retries of an edit that keeps losing the
// race to other nodes' edits.
const maxEditAttempts = 5

// SharedSanctions is a node's moderation file kept in step with the
// cluster's. It implements sshchat.Sanctions.
type SharedSanctions struct {
	local Sanctions
	kv    jetstream.KeyValue
	link  *Link

	mu      sync.Mutex // one edit or update at a time
	applied uint64     // the bucket revision the file holds
	// appliedData is the moderation last applied to the file or shared,
	// encoded: what the file holds unless it was edited since. Nil until
	// then.
	appliedData []byte

	stop    context.CancelFunc
	stopped chan struct{}
}

// ShareModeration opens (creating it if need be) the cluster's moderation
// bucket and brings local in line with it, or seeds it from local if it is
// empty. Call Follow to keep following it. It fails if NATS is not
// reachable.
func (l *Link) ShareModeration(local Sanctions) (*SharedSanctions, error) {
	js, err := jetstream.New(l.nc)
	if err != nil {
		return nil, fmt.Errorf("cluster: moderation: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*flushTimeout)
	defer cancel()
	bucket := strings.ReplaceAll(l.prefix, ".", "_") + "_moderation"
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "sshchat bans, mutes and message of the day, shared by every node",
		History:     16,
		MaxBytes:    16 * keys.MaxModerationFileSize,
	})
	if err != nil {
		if !l.nc.IsConnected() {
			return nil, fmt.Errorf("cluster: moderation bucket %s: NATS %s: %w", bucket, needNATS, err)
		}
		return nil, fmt.Errorf("cluster: moderation bucket %s (is JetStream enabled on the NATS server?): %w", bucket, err)
	}
	s := &SharedSanctions{local: local, kv: kv, link: l}
	entry, err := kv.Get(ctx, moderationKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		data, err := encodeModeration(local.Current())
		if err != nil {
			return nil, err
		}
		rev, err := kv.Create(ctx, moderationKey, data)
		if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("cluster: seeding the moderation bucket: %w", err)
		}
		s.applied, s.appliedData = rev, data // rev 0 if another node seeded it first: Follow applies theirs
	case err != nil:
		return nil, fmt.Errorf("cluster: reading the moderation bucket: %w", err)
	default:
		// At start-up the bucket wins: nothing was shared yet to tell
		// an edit by.
		if _, err := s.apply(entry); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Current returns the moderation in force on this node.
func (s *SharedSanctions) Current() *keys.Moderation { return s.local.Current() }

// Edit applies fn to the cluster's moderation and this node's file; see
// the package documentation for how it resolves concurrent edits.
func (s *SharedSanctions) Edit(fn func(*keys.Moderation) error) (*keys.Moderation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 1; ; attempt++ {
		m, err := s.editOnce(fn)
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) || attempt == maxEditAttempts {
			return m, err
		}
	}
}

// editOnce is one attempt of Edit. It returns an error wrapping
// ErrKeyRevisionMismatch or ErrKeyExists if another node wrote first.
func (s *SharedSanctions) editOnce(fn func(*keys.Moderation) error) (*keys.Moderation, error) {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	var shared *keys.Moderation
	entry, err := s.kv.Get(ctx, moderationKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		entry = nil
	case err != nil:
		m, err2 := s.local.Edit(fn)
		if err2 == nil {
			s.link.log.Error("cluster: moderation changed on this node only: NATS unreachable", "err", err)
		}
		return m, err2
	default:
		if shared, err = decodeModeration(entry.Value()); err != nil {
			s.link.log.Error("cluster: the shared moderation is invalid; replacing it", "revision", entry.Revision(), "err", err)
		}
	}
	m, err := s.local.Edit(func(m *keys.Moderation) error {
		if shared != nil {
			replaceModeration(m, shared)
		}
		return fn(m)
	})
	if err != nil {
		return nil, err
	}
	data, err := encodeModeration(m)
	if err != nil {
		return nil, err
	}
	var rev uint64
	if entry == nil {
		rev, err = s.kv.Create(ctx, moderationKey, data)
	} else {
		rev, err = s.kv.Update(ctx, moderationKey, data, entry.Revision())
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists):
		return nil, err
	case err != nil:
		s.link.log.Error("cluster: moderation changed on this node only: writing the shared copy failed", "err", err)
	default:
		s.applied, s.appliedData = rev, data
	}
	return m, nil
}

// Share puts an edit of the node's file made outside chat (by hand, or by
// the sshchat CLI in another process) into the shared moderation; main
// calls it when the file's watcher reloads such an edit. It writes the
// bucket only if nobody has written it since this node last applied it:
// otherwise that newer change wins and is applied to the file now (it may
// have been refused while the file was invalid, and would not come again),
// and the edit is logged as not shared.
func (s *SharedSanctions) Share() {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := encodeModeration(s.local.Current())
	if err != nil {
		s.link.log.Error("cluster: the edit of the moderation file is not shared", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	entry, err := s.kv.Get(ctx, moderationKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		entry = nil
	case err != nil:
		s.link.log.Error("cluster: the edit of the moderation file is not shared: NATS is unreachable; "+
			"the shared moderation wins at the next change or restart, so make the edit again", "err", err)
		return
	}
	if entry != nil && entry.Revision() > s.applied {
		s.applyNewer(entry)
		return
	}
	if bytes.Equal(data, s.appliedData) {
		return // the file holds what was applied or shared last: nothing to share
	}
	var rev uint64
	if entry == nil {
		rev, err = s.kv.Create(ctx, moderationKey, data)
	} else {
		rev, err = s.kv.Update(ctx, moderationKey, data, entry.Revision())
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		// Another node wrote in between: its change wins.
		if entry, err2 := s.kv.Get(ctx, moderationKey); err2 == nil && entry.Revision() > s.applied {
			s.applyNewer(entry)
			return
		}
	}
	if err != nil {
		s.link.log.Error("cluster: the edit of the moderation file is not shared: another node changed the moderation meanwhile, or NATS is unreachable; "+
			"the shared moderation wins at the next change or restart, so make the edit again", "err", err)
		return
	}
	s.applied, s.appliedData = rev, data
	s.link.log.Info("cluster: edit of the moderation file shared with the other nodes", "revision", rev)
}

// applyNewer applies to the file, for Share, a change another node made
// since the file was last applied or shared.
func (s *SharedSanctions) applyNewer(entry jetstream.KeyValueEntry) {
	overwrote, err := s.apply(entry)
	switch {
	case err != nil:
		s.link.log.Error("cluster: the edit of the moderation file is not shared, and another node's newer change cannot be applied to it",
			"revision", entry.Revision(), "err", err)
	case overwrote:
		s.link.log.Warn("cluster: the edit of the moderation file is not shared: another node changed the moderation meanwhile, and its change "+
			"replaced the file's content; make the edit again", "revision", entry.Revision())
	default:
		s.link.log.Info("cluster: applied a change another node made to the moderation", "revision", entry.Revision())
	}
}

// Follow applies every change another node makes to the shared
// moderation, calling changed after each (the server's Revalidate), until
// Close.
func (s *SharedSanctions) Follow(changed func()) error {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := s.kv.Watch(ctx, moderationKey)
	if err != nil {
		cancel()
		return fmt.Errorf("cluster: watching the moderation bucket: %w", err)
	}
	s.stop, s.stopped = cancel, make(chan struct{})
	go func() {
		defer close(s.stopped)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case entry, ok := <-w.Updates():
				if !ok {
					return
				}
				if entry == nil || entry.Operation() != jetstream.KeyValuePut {
					continue // nil: the current value has been sent
				}
				s.mu.Lock()
				overwrote, err := s.apply(entry)
				s.mu.Unlock()
				if err != nil {
					s.link.log.Error("cluster: moderation from another node refused", "revision", entry.Revision(), "err", err)
					continue
				}
				if overwrote {
					s.link.log.Warn("cluster: an edit of the moderation file not yet shared was overwritten by another node's change; make it again",
						"revision", entry.Revision())
				}
				if changed != nil {
					changed()
				}
			}
		}
	}()
	return nil
}

// apply makes the node's file hold entry, if it is newer than what it
// holds. It reports whether that replaced an edit of the file that was
// not shared.
func (s *SharedSanctions) apply(entry jetstream.KeyValueEntry) (overwrote bool, err error) {
	if entry.Revision() <= s.applied {
		return false, nil
	}
	shared, err := decodeModeration(entry.Value())
	if err != nil {
		return false, err
	}
	m, err := s.local.Edit(func(m *keys.Moderation) error {
		// What the file holds now, read from disk: an edit the watcher
		// has not reloaded yet counts.
		if s.appliedData != nil {
			data, err := encodeModeration(m)
			overwrote = err != nil || !bytes.Equal(data, s.appliedData)
		}
		replaceModeration(m, shared)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("cluster: applying the shared moderation: %w", err)
	}
	s.applied = entry.Revision()
	if s.appliedData, err = encodeModeration(m); err != nil {
		s.appliedData = nil // Share then compares with nothing, and shares
	}
	return overwrote, nil
}

// Close stops following the shared moderation.
func (s *SharedSanctions) Close() {
	if s.stop != nil {
		s.stop()
		<-s.stopped
	}
}

func replaceModeration(m, shared *keys.Moderation) {
	m.Bans, m.Mutes, m.MOTD = maps.Clone(shared.Bans), maps.Clone(shared.Mutes), shared.MOTD
}

// moderationJSON is keys.Moderation as it is stored in the bucket.
type moderationJSON struct {
	Bans  map[string]keys.Sanction `json:"bans"`
	Mutes map[string]keys.Sanction `json:"mutes"`
	MOTD  keys.MOTD                `json:"motd,omitzero"`
}

func encodeModeration(m *keys.Moderation) ([]byte, error) {
	data, err := json.Marshal(moderationJSON{m.Bans, m.Mutes, m.MOTD})
	if err != nil {
		return nil, fmt.Errorf("cluster: encoding moderation: %w", err)
	}
	return data, nil
}

// decodeModeration parses the shared moderation. Its content is checked
// when it is written to the node's file.
func decodeModeration(data []byte) (*keys.Moderation, error) {
	if len(data) > keys.MaxModerationFileSize {
		return nil, fmt.Errorf("cluster: shared moderation of %d bytes is longer than %d", len(data), keys.MaxModerationFileSize)
	}
	var mj moderationJSON
	if err := json.Unmarshal(data, &mj); err != nil {
		return nil, fmt.Errorf("cluster: shared moderation: %w", err)
	}
	m := &keys.Moderation{Bans: mj.Bans, Mutes: mj.Mutes, MOTD: mj.MOTD}
	if m.Bans == nil {
		m.Bans = map[string]keys.Sanction{}
	}
	if m.Mutes == nil {
		m.Mutes = map[string]keys.Sanction{}
	}
	return m, nil
}

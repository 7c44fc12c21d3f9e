package vault

import (
	"container/list"
	"sync"
)

// cache keeps unwrapped DEKs, least recently used first out, by key id (see
// Key.ID), and for each lead the key its data is sealed with next. DEKs
// leave it by copy and are zeroed when evicted, so that a shredded key is
// not left in a slice someone still reads. Go gives no guarantee this erases
// every copy: the runtime may have moved or copied the memory, and the AES
// key schedules built from a DEK are garbage-collected, never wiped.
type cache struct {
	mu      sync.Mutex
	max     int
	order   *list.List // of *cacheEntry, most recently used at the front
	entries map[string]*list.Element
	byLead  map[string]map[string]bool // lead id -> cached key ids
	sealing map[string]string          // lead id -> key id to seal with
	// epoch counts evictions by Shred. A reader notes it before loading a
	// key and caches the key only if it has not moved, so that a key loaded
	// just before a purge is not cached just after it.
	epoch uint64
}

type cacheEntry struct {
	leadID, id string
	dek        [keySize]byte
}

func newCache(max int) *cache {
	return &cache{max: max, order: list.New(), entries: map[string]*list.Element{},
		byLead: map[string]map[string]bool{}, sealing: map[string]string{}}
}

func (c *cache) currentEpoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// get returns a copy of a DEK by key id; the caller zeroes it after use.
func (c *cache) get(id string) ([keySize]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[id]
	if !ok {
		return [keySize]byte{}, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*cacheEntry).dek, true
}

// sealingKey returns the key a lead's data is sealed with next, if cached.
func (c *cache) sealingKey(leadID string) (string, [keySize]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.sealing[leadID]
	if !ok {
		return "", [keySize]byte{}, false
	}
	el, ok := c.entries[id]
	if !ok {
		return "", [keySize]byte{}, false
	}
	c.order.MoveToFront(el)
	return id, el.Value.(*cacheEntry).dek, true
}

// add caches a DEK loaded since epoch, unless a Shred came in between;
// sealing makes it the key the lead's data is sealed with next.
func (c *cache) add(epoch uint64, leadID, id string, dek *[keySize]byte, sealing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return
	}
	c.put(leadID, id, dek, sealing)
}

// addKeys caches keys saved since epoch, unless a Shred came in between.
func (c *cache) addKeys(epoch uint64, keys []*Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return
	}
	for _, k := range keys {
		c.put(k.leadID, k.ID(), &k.dek, true)
	}
}

func (c *cache) put(leadID, id string, dek *[keySize]byte, sealing bool) {
	if sealing {
		c.sealing[leadID] = id
	}
	if el, ok := c.entries[id]; ok {
		el.Value.(*cacheEntry).dek = *dek
		c.order.MoveToFront(el)
		return
	}
	c.entries[id] = c.order.PushFront(&cacheEntry{leadID: leadID, id: id, dek: *dek})
	if c.byLead[leadID] == nil {
		c.byLead[leadID] = map[string]bool{}
	}
	c.byLead[leadID][id] = true
	for c.order.Len() > c.max {
		c.evict(c.order.Back())
	}
}

// remove evicts every DEK of the lead and moves the epoch.
func (c *cache) remove(leadID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for id := range c.byLead[leadID] {
		c.evict(c.entries[id])
	}
	delete(c.sealing, leadID)
}

func (c *cache) evict(el *list.Element) {
	e := c.order.Remove(el).(*cacheEntry)
	delete(c.entries, e.id)
	if ids := c.byLead[e.leadID]; ids != nil {
		delete(ids, e.id)
		if len(ids) == 0 {
			delete(c.byLead, e.leadID)
		}
	}
	if c.sealing[e.leadID] == e.id {
		delete(c.sealing, e.leadID)
	}
	clear(e.dek[:])
}

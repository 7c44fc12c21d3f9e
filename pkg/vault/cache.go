package vault

import (
	"container/list"
	"sync"
)

// cache keeps unwrapped DEKs, least recently used first out. DEKs leave it
// by copy and are zeroed when evicted, so that a shredded key is not left in
// a slice someone still reads. Go gives no guarantee this erases every copy:
// the runtime may have moved or copied the memory, and the AES key schedules
// built from a DEK are garbage-collected, never wiped.
type cache struct {
	mu      sync.Mutex
	max     int
	order   *list.List // of *cacheEntry, most recently used at the front
	entries map[string]*list.Element
	// epoch counts evictions by Shred. A reader notes it before loading a
	// key and caches the key only if it has not moved, so that a key loaded
	// just before a purge is not cached just after it.
	epoch uint64
}

type cacheEntry struct {
	leadID string
	dek    [keySize]byte
}

func newCache(max int) *cache {
	return &cache{max: max, order: list.New(), entries: make(map[string]*list.Element)}
}

func (c *cache) currentEpoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// get returns a copy of the lead's DEK; the caller zeroes it after use.
func (c *cache) get(leadID string) ([keySize]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[leadID]
	if !ok {
		return [keySize]byte{}, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*cacheEntry).dek, true
}

// add caches a DEK loaded since epoch, unless a Shred came in between.
func (c *cache) add(epoch uint64, leadID string, dek *[keySize]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return
	}
	c.put(leadID, dek)
}

// addKeys caches keys saved since epoch, unless a Shred came in between.
func (c *cache) addKeys(epoch uint64, keys []*Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return
	}
	for _, k := range keys {
		c.put(k.leadID, &k.dek)
	}
}

func (c *cache) put(leadID string, dek *[keySize]byte) {
	if el, ok := c.entries[leadID]; ok {
		el.Value.(*cacheEntry).dek = *dek
		c.order.MoveToFront(el)
		return
	}
	c.entries[leadID] = c.order.PushFront(&cacheEntry{leadID: leadID, dek: *dek})
	for c.order.Len() > c.max {
		c.evict(c.order.Back())
	}
}

// remove evicts the lead's DEK and moves the epoch.
func (c *cache) remove(leadID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if el, ok := c.entries[leadID]; ok {
		c.evict(el)
	}
}

func (c *cache) evict(el *list.Element) {
	e := c.order.Remove(el).(*cacheEntry)
	delete(c.entries, e.leadID)
	clear(e.dek[:])
}

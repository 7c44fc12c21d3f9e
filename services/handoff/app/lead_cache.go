package app

import (
	"container/list"
	"sync"
)

// leadCache keeps the folds of recently seen leads, so routing a lead's
// LeadQualified reads nothing when the lead consumer saw every event
// before it: the fold is extended event by event, and only by an event
// appended at the fold's version (version_before), so a fold that missed
// events (another replica had the partition) is never trusted; it is
// read from the stream instead. A fold is taken out while in use and put
// back only after a successful write, so a failure leaves nothing half
// applied. It is bounded: the least recently used lead is dropped.
type leadCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // front: most recently used; values are *lead
	byID  map[string]*list.Element
}

func newLeadCache(max int) *leadCache {
	return &leadCache{max: max, order: list.New(), byID: map[string]*list.Element{}}
}

// take removes and returns a lead's fold.
func (c *leadCache) take(id string) (*lead, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[id]
	if !ok {
		return nil, false
	}
	c.order.Remove(e)
	delete(c.byID, id)
	return e.Value.(*lead), true
}

func (c *leadCache) has(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.byID[id]
	return ok
}

// put stores a lead's fold, dropping the least recently used beyond max.
func (c *leadCache) put(l *lead) {
	if c.max <= 0 || l == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[l.id]; ok {
		c.order.Remove(e)
	}
	c.byID[l.id] = c.order.PushFront(l)
	for c.order.Len() > c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.byID, old.Value.(*lead).id)
	}
}

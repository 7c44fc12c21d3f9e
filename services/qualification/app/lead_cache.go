package app

import (
	"container/list"
	"sync"
)

// leadCache keeps the folds of recently scored leads, so that scoring a
// lead's next event reads only the events appended since (a load after
// the cached version) instead of the whole lead. The stream stays the
// source of truth: every use reads forward from the cached version, so a
// lead changed by another writer, another replica or a re-score is
// caught up, never trusted. A fold is taken out while in use and put back
// only after a successful write, so a failure leaves nothing half applied.
//
// It is bounded: the least recently used lead is dropped, and a dropped
// lead is loaded in full next time.
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

// put stores a lead's fold, dropping the least recently used beyond max.
func (c *leadCache) put(l *lead) {
	if c.max <= 0 {
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

package jfile

const (
	windowSize   = 32 << 10
	cacheWindows = 32
)

// cache holds a few windows of the files of a journal, replaced
// round-robin: its memory (cacheWindows × windowSize) bounds what reading
// costs however many files there are. Journal readers touch two regions of
// a file: the newest objects (an entry and the data written just before
// it) and a few long-lived data objects (host name, boot ID, unit), which
// come back into the cache as they are used.
type cache struct {
	mem   []byte // cacheWindows windows, allocated on first use
	owner [cacheWindows]*File
	base  [cacheWindows]int64
	n     [cacheWindows]int // valid bytes of each window
	hand  int
}

// drop forgets f's windows.
func (c *cache) drop(f *File) {
	for i := range c.owner {
		if c.owner[i] == f {
			c.owner[i], c.n[i] = nil, 0
		}
	}
}

// get returns n bytes of f at off when they lie in one window: ok. A nil
// slice with !ok: they do not (read them directly); a non-nil empty slice
// with !ok: they lie past the end of the file.
func (c *cache) get(f *File, off, n uint64) (p []byte, ok bool) {
	w := int64(off) &^ (windowSize - 1)
	if uint64(w)+windowSize < off+n {
		return nil, false
	}
	if c.mem == nil {
		c.mem = make([]byte, cacheWindows*windowSize)
	}
	i := 0
	for ; i < cacheWindows; i++ {
		if c.owner[i] == f && c.base[i] == w {
			break
		}
	}
	if i == cacheWindows {
		i = c.hand
		c.hand = (c.hand + 1) % cacheWindows
		buf := c.mem[i*windowSize : (i+1)*windowSize]
		k, _ := f.f.ReadAt(buf, w)
		c.owner[i], c.base[i], c.n[i] = f, w, k
	}
	start := int(int64(off) - w)
	if start+int(n) > c.n[i] {
		return []byte{}, false
	}
	return c.mem[i*windowSize+start : i*windowSize+start+int(n)], true
}

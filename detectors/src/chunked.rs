//! A vector in fixed-size chunks: it grows without ever moving what it holds, so a million
//! detector states cost no copying and no moment with two slabs alive (a plain `Vec` doubles,
//! and the allocator copies the whole slab each time).

/// Elements per chunk (a power of two).
const CHUNK: usize = 4096;
const SHIFT: u32 = CHUNK.trailing_zeros();

#[derive(Clone, Debug)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, value: T) {
        if self.len == self.chunks.len() * CHUNK {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(last) = self.chunks.last_mut() {
            last.push(value);
            self.len += 1;
        }
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks.get_mut(i >> SHIFT)?.get_mut(i & (CHUNK - 1))
    }

    /// Swaps two elements (both must exist).
    pub fn swap(&mut self, a: usize, b: usize) {
        if a == b || a >= self.len || b >= self.len {
            return;
        }
        let (lo, hi) = (a.min(b), a.max(b));
        let (ca, oa) = (lo >> SHIFT, lo & (CHUNK - 1));
        let (cb, ob) = (hi >> SHIFT, hi & (CHUNK - 1));
        if ca == cb {
            self.chunks[ca].swap(oa, ob);
        } else {
            let (left, right) = self.chunks.split_at_mut(cb);
            std::mem::swap(&mut left[ca][oa], &mut right[0][ob]);
        }
    }

    /// Keeps the first `n` elements and gives back whole chunks beyond them.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.len {
            return;
        }
        let chunks = n.div_ceil(CHUNK);
        self.chunks.truncate(chunks);
        if let Some(last) = self.chunks.last_mut() {
            last.truncate(n - (chunks - 1) * CHUNK);
        }
        self.len = n;
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        self.chunks.iter_mut().flatten()
    }

    /// Bytes written: every element plus the chunk table (chunks are allocated whole, but
    /// only their written part is ever touched).
    pub fn bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>() + self.chunks.len() * std::mem::size_of::<Vec<T>>()
    }
}

impl<T> std::ops::Index<usize> for Chunked<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> SHIFT][i & (CHUNK - 1)]
    }
}

impl<T> std::ops::IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> SHIFT][i & (CHUNK - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_swaps_and_truncates_across_chunks() {
        let mut c = Chunked::default();
        for i in 0..(CHUNK * 2 + 10) {
            c.push(i);
        }
        assert_eq!(c.len(), CHUNK * 2 + 10);
        assert_eq!(c[CHUNK + 5], CHUNK + 5);
        c.swap(3, CHUNK * 2 + 1);
        assert_eq!((c[3], c[CHUNK * 2 + 1]), (CHUNK * 2 + 1, 3));
        c.swap(1, 2);
        assert_eq!((c[1], c[2]), (2, 1));
        c.truncate(CHUNK + 1);
        assert_eq!(c.len(), CHUNK + 1);
        assert_eq!(c.iter().count(), CHUNK + 1);
        assert_eq!(c.get_mut(CHUNK + 1), None);
        c.push(7);
        assert_eq!(c[CHUNK + 1], 7);
    }
}

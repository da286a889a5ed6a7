//! The buffer the pipeline works on: a frame with headroom in front, so that MPLS push and
//! VXLAN encapsulation prepend in place, and decapsulation trims the front.
//!
//! [`VecFrame`] is the heap implementation used by tests, `replay` and `trace`; the AF_XDP
//! workers implement [`Frame`] over UMEM chunks.

/// A packet buffer with adjustable start and end.
pub trait Frame {
    /// The frame's bytes, from the Ethernet header on.
    fn data(&self) -> &[u8];
    /// The frame's bytes, mutable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Bytes free in front of the data.
    fn headroom(&self) -> usize;
    /// Grow the frame at the front by `n` bytes (their content is unspecified).
    /// `false`, and nothing changed, when the headroom is too small.
    fn push_front(&mut self, n: usize) -> bool;
    /// Drop `n` bytes at the front. `false`, and nothing changed, when shorter than `n`.
    fn pull_front(&mut self, n: usize) -> bool;
    /// Set the length: shorten, or grow into the tailroom (new bytes unspecified).
    /// `false`, and nothing changed, when the tailroom is too small.
    fn resize(&mut self, len: usize) -> bool;
    /// The frame's length.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// True for an empty frame.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes frames for head-end replication and for packets the router originates.
pub trait FramePool<F: Frame> {
    /// A new frame holding a copy of `data`, with the standard headroom; `None` when the pool is
    /// empty (the copy is then counted as a drop).
    fn copy_of(&mut self, data: &[u8]) -> Option<F>;
}

/// A frame on the heap with fixed headroom and tailroom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VecFrame {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl VecFrame {
    /// Headroom given to every frame: enough for an outer Ethernet+VLAN, IPv4, UDP and VXLAN
    /// header plus a three-label stack, with room to spare.
    pub const HEADROOM: usize = 256;
    /// Room behind the data for ICMP errors that grow a short packet.
    pub const TAILROOM: usize = 128;

    /// A frame holding a copy of `data`.
    pub fn new(data: &[u8]) -> VecFrame {
        let mut buf = vec![0u8; Self::HEADROOM + data.len() + Self::TAILROOM];
        buf[Self::HEADROOM..Self::HEADROOM + data.len()].copy_from_slice(data);
        VecFrame { buf, start: Self::HEADROOM, end: Self::HEADROOM + data.len() }
    }
}

impl Frame for VecFrame {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
    fn headroom(&self) -> usize {
        self.start
    }
    fn push_front(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }
    fn pull_front(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }
    fn resize(&mut self, len: usize) -> bool {
        if self.start + len > self.buf.len() {
            return false;
        }
        self.end = self.start + len;
        true
    }
}

/// A pool that allocates [`VecFrame`]s on the heap, without limit.
#[derive(Debug, Default)]
pub struct VecPool;

impl FramePool<VecFrame> for VecPool {
    fn copy_of(&mut self, data: &[u8]) -> Option<VecFrame> {
        Some(VecFrame::new(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_pull_resize() {
        let mut f = VecFrame::new(&[1, 2, 3]);
        assert!(f.push_front(2));
        assert_eq!(f.len(), 5);
        f.data_mut()[0] = 9;
        assert!(f.pull_front(2));
        assert_eq!(f.data(), &[1, 2, 3]);
        assert!(!f.pull_front(4));
        assert!(!f.push_front(VecFrame::HEADROOM + 1));
        assert!(f.resize(1));
        assert_eq!(f.data(), &[1]);
        assert!(!f.resize(3 + VecFrame::TAILROOM + 1));
    }
}

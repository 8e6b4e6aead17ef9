//! The payload of one request: encoded units (Datadog entries, Firehose records) back to back
//! in one buffer, each with the positions in the batch of the records it carries (one for a
//! Datadog entry, one or many for a Firehose record packed by `simple_aggregation`).

/// Encoded units and the records behind each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Units {
    buf: Vec<u8>,
    ends: Vec<usize>,
    positions: Vec<usize>,
    position_ends: Vec<usize>,
}

impl Units {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of every committed unit.
    pub fn bytes(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    pub fn unit(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.unit(i))
    }

    /// Positions in the batch of the records unit `i` carries.
    pub fn positions_of(&self, i: usize) -> &[usize] {
        let start = if i == 0 { 0 } else { self.position_ends[i - 1] };
        &self.positions[start..self.position_ends[i]]
    }

    /// Positions of the records of every unit.
    pub fn positions(&self) -> &[usize] {
        &self.positions
    }

    /// Appends a unit.
    pub fn push(&mut self, bytes: &[u8], positions: &[usize]) {
        self.buf.truncate(self.bytes());
        self.buf.extend_from_slice(bytes);
        self.commit(positions);
    }

    /// The buffer the next unit is written into, after the committed ones; [`Units::commit`]
    /// makes what was written a unit, [`Units::uncommitted`] shows it.
    pub fn writer(&mut self) -> &mut Vec<u8> {
        self.buf.truncate(self.bytes());
        &mut self.buf
    }

    /// The bytes written since the last unit was committed.
    pub fn uncommitted(&self) -> &[u8] {
        &self.buf[self.bytes()..]
    }

    pub fn commit(&mut self, positions: &[usize]) {
        self.ends.push(self.buf.len());
        self.positions.extend_from_slice(positions);
        self.position_ends.push(self.positions.len());
    }

    /// The units at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Units {
        let mut out = Units::default();
        for &i in indices.iter().filter(|&&i| i < self.len()) {
            out.push(self.unit(i), self.positions_of(i));
        }
        out
    }

    /// The first and second half (by unit count) of these units.
    pub fn halves(&self) -> (Units, Units) {
        let middle = self.len() / 2;
        let first: Vec<usize> = (0..middle).collect();
        let second: Vec<usize> = (middle..self.len()).collect();
        (self.subset(&first), self.subset(&second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_keep_their_records_through_subsets_and_halves() {
        let mut units = Units::default();
        units.push(b"aa", &[0]);
        units.writer().extend_from_slice(b"bbb");
        assert_eq!(units.uncommitted(), b"bbb");
        units.commit(&[1, 2]);
        units.push(b"c", &[4]);
        units.writer().extend_from_slice(b"dropped before commit");
        units.push(b"d", &[5]);
        assert_eq!(units.len(), 4);
        assert_eq!(units.bytes(), 7);
        assert_eq!(units.unit(1), b"bbb");
        assert_eq!(units.positions_of(1), &[1, 2]);
        assert_eq!(units.positions(), &[0, 1, 2, 4, 5]);
        let picked = units.subset(&[3, 1]);
        assert_eq!(picked.iter().collect::<Vec<_>>(), vec![&b"d"[..], b"bbb"]);
        assert_eq!(picked.positions(), &[5, 1, 2]);
        let (a, b) = units.halves();
        assert_eq!((a.len(), b.len()), (2, 2));
        assert_eq!(b.positions(), &[4, 5]);
    }
}

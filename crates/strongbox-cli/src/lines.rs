//! Reading lines with a bound: a line longer than the bound is never held whole, so that a
//! single huge line (a file that is not JSON lines, a runaway producer) costs no memory.

use std::io::{self, BufRead};

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum LineRead {
    /// The end of the input.
    End,
    /// A line, in the buffer; this many bytes were read.
    Line(usize),
    /// A line longer than the limit: this many bytes of it were read, the rest is unread.
    TooLong(usize),
}

/// Reads one line (newline included) into `buffer`, but never more than `max` bytes of it:
/// a longer line is left unread past the limit, so that memory stays bounded.
pub fn read_line(
    source: &mut dyn BufRead,
    buffer: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    buffer.clear();
    let mut read = 0;
    loop {
        let available = match source.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok(if read == 0 {
                LineRead::End
            } else {
                LineRead::Line(read)
            });
        }
        let (take, complete) = match available.iter().position(|&byte| byte == b'\n') {
            Some(newline) => (newline + 1, true),
            None => (available.len(), false),
        };
        // The newline does not count against the limit.
        let content = take - usize::from(complete);
        if buffer.len() + content > max {
            let within = max.saturating_sub(buffer.len()).min(take);
            source.consume(within);
            return Ok(LineRead::TooLong(read + within));
        }
        buffer.extend_from_slice(&available[..take]);
        source.consume(take);
        read += take;
        if complete {
            return Ok(LineRead::Line(read));
        }
    }
}

/// Reads and drops the rest of a line, newline included; returns how many bytes that was.
pub fn skip_line(source: &mut dyn BufRead) -> io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let available = match source.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok(skipped);
        }
        let (take, complete) = match available.iter().position(|&byte| byte == b'\n') {
            Some(newline) => (newline + 1, true),
            None => (available.len(), false),
        };
        source.consume(take);
        skipped += take as u64;
        if complete {
            return Ok(skipped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its bytes a few at a time, as pipes do.
    fn trickle(text: &[u8], step: usize) -> impl std::io::BufRead + use<> {
        std::io::BufReader::with_capacity(step, std::io::Cursor::new(text.to_vec()))
    }

    #[test]
    fn lines_are_read_up_to_the_bound_and_no_further() {
        for step in [1, 3, 8, 1024] {
            let mut source = trickle(b"short\n0123456789abcdef\nexact\nlast", step);
            let mut buffer = Vec::new();
            assert_eq!(
                read_line(&mut source, &mut buffer, 5).unwrap(),
                LineRead::Line(6)
            );
            assert_eq!(buffer, b"short\n");
            // 16 bytes over a bound of 5: at most 5 read, the rest left for skip_line.
            assert_eq!(
                read_line(&mut source, &mut buffer, 5).unwrap(),
                LineRead::TooLong(5)
            );
            assert!(buffer.len() <= 5, "{step}: {}", buffer.len());
            assert_eq!(skip_line(&mut source).unwrap(), 12);
            assert_eq!(
                read_line(&mut source, &mut buffer, 5).unwrap(),
                LineRead::Line(6)
            );
            assert_eq!(buffer, b"exact\n", "the newline does not count");
            assert_eq!(
                read_line(&mut source, &mut buffer, 5).unwrap(),
                LineRead::Line(4)
            );
            assert_eq!(buffer, b"last");
            assert_eq!(
                read_line(&mut source, &mut buffer, 5).unwrap(),
                LineRead::End
            );
        }
    }
}

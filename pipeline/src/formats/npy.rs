//! A minimal NumPy `.npy` (format 1.0) writer for 2-D little-endian float64 arrays, so that
//! `bf-pipeline convert` output loads with `numpy.load`. Written here because the format is a
//! 10-line header plus raw bytes; a crate would add more than it saves.

use std::io::Write;

/// Writes the `.npy` header for a C-ordered `<f8` array of `shape`.
pub fn write_header_f64(w: &mut impl Write, shape: (usize, usize)) -> std::io::Result<()> {
    let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {}), }}", shape.0, shape.1);
    // magic(6) + version(2) + header_len(2) + dict + '\n', padded with spaces to a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let header_len = (total - 10) as u16;
    w.write_all(b"\x93NUMPY\x01\x00")?;
    w.write_all(&header_len.to_le_bytes())?;
    w.write_all(dict.as_bytes())?;
    w.write_all(&vec![b' '; total - unpadded])?;
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_64_byte_aligned_and_parsable() {
        let mut buf = Vec::new();
        write_header_f64(&mut buf, (3, 12345)).unwrap();
        assert_eq!(buf.len() % 64, 0);
        assert_eq!(&buf[..6], b"\x93NUMPY");
        let text = std::str::from_utf8(&buf[10..]).unwrap();
        assert!(text.contains("'shape': (3, 12345)"));
        assert!(text.ends_with('\n'));
    }
}

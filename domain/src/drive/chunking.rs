//! Chunk sizes and the arithmetic of cutting a file into chunks.

/// 4 MiB, the default and the largest chunk.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 * 1024 * 1024;
pub const MIN_CHUNK_SIZE: u64 = 64 * 1024;
pub const MAX_CHUNK_SIZE: u64 = DEFAULT_CHUNK_SIZE;

/// A chunk size must be a power of two from 64 KiB to 4 MiB.
pub fn validate_chunk_size(size: u64) -> Result<(), String> {
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&size) || !size.is_power_of_two() {
        return Err(format!(
            "chunk_size must be a power of two between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}"
        ));
    }
    Ok(())
}

/// How many chunks a file of `file_size` bytes has. An empty file has none.
pub fn total_chunks(file_size: u64, chunk_size: u64) -> u64 {
    if chunk_size == 0 {
        return 0;
    }
    file_size.div_ceil(chunk_size)
}

/// The length chunk `index` must have (the last one may be short).
pub fn expected_chunk_len(file_size: u64, chunk_size: u64, index: u64) -> Option<u64> {
    let total = total_chunks(file_size, chunk_size);
    if index >= total {
        return None;
    }
    let start = index * chunk_size;
    Some((file_size - start).min(chunk_size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chunk_sizes_must_be_powers_of_two_in_range() {
        assert!(validate_chunk_size(DEFAULT_CHUNK_SIZE).is_ok());
        assert!(validate_chunk_size(65536).is_ok());
        assert!(validate_chunk_size(32768).is_err());
        assert!(validate_chunk_size(100_000).is_err());
        assert!(validate_chunk_size(8 * 1024 * 1024).is_err());
    }

    #[test]
    fn empty_files_have_no_chunks() {
        assert_eq!(total_chunks(0, DEFAULT_CHUNK_SIZE), 0);
        assert_eq!(expected_chunk_len(0, DEFAULT_CHUNK_SIZE, 0), None);
    }

    proptest! {
        #[test]
        fn chunk_lengths_add_up_to_the_file(size in 0u64..50_000_000, exp in 16u32..=22) {
            let cs = 1u64 << exp;
            let n = total_chunks(size, cs);
            let sum: u64 = (0..n).map(|i| expected_chunk_len(size, cs, i).unwrap_or(0)).sum();
            prop_assert_eq!(sum, size);
            for i in 0..n {
                let len = expected_chunk_len(size, cs, i).unwrap_or(0);
                prop_assert!(len > 0 && len <= cs);
            }
            prop_assert_eq!(expected_chunk_len(size, cs, n), None);
        }
    }
}

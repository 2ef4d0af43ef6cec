//! How many hosts a batch has. Elastic Beanstalk does not document its rounding for
//! deployments; this rounds up, as its one documented rounding does (`MaxBatchSize`: "rounded
//! to the next highest integer"), so a batch is never empty and a deployment always moves:
//! `clamp(ceil(N × BatchSize / 100), 1, N)` for `Percentage`, `clamp(BatchSize, 1, N)` for
//! `Fixed`. Examples: 6 hosts at 34 % → 3 per batch, 2 batches; 4 at 30 % → 2; 3 at 1 % → 1.

use crate::options::{BatchSizeType, CommandOptions};

/// Hosts per batch for `hosts` members (at least 1, even for an empty fleet).
pub fn batch_size(options: &CommandOptions, hosts: usize) -> usize {
    let hosts = hosts.max(1);
    let size = match options.batch_size_type {
        BatchSizeType::Percentage => (hosts * options.batch_size as usize).div_ceil(100),
        BatchSizeType::Fixed => options.batch_size as usize,
    };
    size.clamp(1, hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(kind: BatchSizeType, size: u32, hosts: usize) -> usize {
        let options = CommandOptions {
            batch_size_type: kind,
            batch_size: size,
            ..CommandOptions::default()
        };
        batch_size(&options, hosts)
    }

    #[test]
    fn percentages_round_up_and_never_make_an_empty_batch() {
        assert_eq!(sized(BatchSizeType::Percentage, 34, 6), 3);
        assert_eq!(sized(BatchSizeType::Percentage, 30, 4), 2);
        assert_eq!(sized(BatchSizeType::Percentage, 1, 3), 1);
        assert_eq!(sized(BatchSizeType::Percentage, 100, 7), 7);
        assert_eq!(sized(BatchSizeType::Percentage, 50, 5), 3);
        assert_eq!(sized(BatchSizeType::Percentage, 25, 0), 1);
    }

    #[test]
    fn fixed_sizes_are_capped_by_the_fleet() {
        assert_eq!(sized(BatchSizeType::Fixed, 2, 6), 2);
        assert_eq!(sized(BatchSizeType::Fixed, 10, 6), 6);
        assert_eq!(sized(BatchSizeType::Fixed, 1, 1), 1);
    }
}

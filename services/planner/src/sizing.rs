//! The seed's auto-scaling rule, kept exactly: aim for `target_batches`
//! batches, round the batch size to the nearest `rounding_step`, clamp it to
//! [`min_batch_size`, `max_batch_size`], and cover every device.

use std::fmt::Write as _;

use netward_shared::status::FieldViolation;
use serde::Deserialize;

/// The policy; settable in config (`[planner.sizing]`) and over gRPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SizingPolicy {
    pub target_batches: u32,
    pub rounding_step: u32,
    pub min_batch_size: u32,
    pub max_batch_size: u32,
}

impl Default for SizingPolicy {
    fn default() -> Self {
        Self {
            target_batches: 10,
            rounding_step: 50,
            min_batch_size: 50,
            max_batch_size: 500,
        }
    }
}

/// Upper bound on any size in the policy: a batch is probed by one executor
/// within one interval, so anything larger is a typo.
pub const MAX_POLICY_VALUE: u32 = 100_000;

impl SizingPolicy {
    /// Every problem with the policy, by field.
    pub fn violations(&self) -> Vec<FieldViolation> {
        let mut v = Vec::new();
        for (field, value) in [
            ("target_batches", self.target_batches),
            ("rounding_step", self.rounding_step),
            ("min_batch_size", self.min_batch_size),
            ("max_batch_size", self.max_batch_size),
        ] {
            if !(1..=MAX_POLICY_VALUE).contains(&value) {
                v.push(FieldViolation::new(
                    field,
                    value,
                    format!("must be 1..={MAX_POLICY_VALUE}"),
                ));
            }
        }
        if self.min_batch_size > self.max_batch_size {
            v.push(FieldViolation::new(
                "min_batch_size",
                self.min_batch_size,
                format!("must not exceed max_batch_size ({})", self.max_batch_size),
            ));
        }
        v
    }
}

/// A sizing decision and its arithmetic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizing {
    pub device_count: u64,
    pub batch_size: u32,
    pub batch_count: u32,
    pub unclamped_batch_size: u32,
    pub clamped: bool,
    pub explanation: String,
}

/// Sizes batches for `devices` under a valid `policy`.
pub fn size(devices: u64, policy: &SizingPolicy) -> Sizing {
    let target = u64::from(policy.target_batches.max(1));
    let step = u64::from(policy.rounding_step.max(1));
    // Nearest multiple of `step` to devices / target, halves rounding up,
    // in integers: floor((2·devices + target·step) / (2·target·step)) · step.
    let steps = (2 * devices + target * step) / (2 * target * step);
    let rounded = (steps * step).min(u64::from(u32::MAX)) as u32;
    let batch_size = rounded.clamp(policy.min_batch_size.max(1), policy.max_batch_size.max(1));
    let batch_count = devices
        .div_ceil(u64::from(batch_size))
        .min(u64::from(u32::MAX)) as u32;

    let mut explanation = String::new();
    let per_batch = devices as f64 / target as f64;
    let _ = write!(
        explanation,
        "{devices} devices / {target} target batches = {} → nearest {step} = {rounded}",
        trim_float(per_batch)
    );
    let _ = write!(
        explanation,
        " → clamp [{}, {}] = {batch_size} → ceil({devices} / {batch_size}) = {batch_count} batches",
        policy.min_batch_size, policy.max_batch_size
    );
    Sizing {
        device_count: devices,
        batch_size,
        batch_count,
        unclamped_batch_size: rounded,
        clamped: rounded != batch_size,
        explanation,
    }
}

/// The seed's log line, word for word.
pub fn log_line(sizing: &Sizing) -> String {
    format!(
        "AUTO-SCALING: {} devices → batch size {} → {} batches",
        sizing.device_count, sizing.batch_size, sizing.batch_count
    )
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_table_comes_out_exactly() {
        let table = [
            (100, 50, 2),
            (500, 50, 10),
            (675, 50, 14),
            (875, 100, 9),
            (1_375, 150, 10),
            (1_500, 150, 10),
            (2_000, 200, 10),
            (3_000, 300, 10),
            (5_000, 500, 10),
            (10_000, 500, 20),
        ];
        let policy = SizingPolicy::default();
        for (devices, batch_size, batches) in table {
            let sizing = size(devices, &policy);
            assert_eq!(
                (sizing.batch_size, sizing.batch_count),
                (batch_size, batches),
                "{devices} devices"
            );
        }
    }

    #[test]
    fn edges_and_rounding_boundaries() {
        let policy = SizingPolicy::default();
        let cases = [
            (0, 50, 0),
            (1, 50, 1),
            (49, 50, 1),
            (50, 50, 1),
            (51, 50, 2),
            // 749/10 = 74.9 → 50; 750/10 = 75 → the half rounds up to 100.
            (749, 50, 15),
            (750, 100, 8),
            (1_249, 100, 13),
            (1_250, 150, 9),
            (4_749, 450, 11),
            (4_750, 500, 10),
            (100_000, 500, 200),
        ];
        for (devices, batch_size, batches) in cases {
            let sizing = size(devices, &policy);
            assert_eq!(
                (sizing.batch_size, sizing.batch_count),
                (batch_size, batches),
                "{devices} devices"
            );
            assert!(u64::from(sizing.batch_size) * u64::from(sizing.batch_count) >= devices);
        }
        assert!(size(100_000, &policy).clamped);
        assert_eq!(size(100_000, &policy).unclamped_batch_size, 10_000);
        assert!(!size(875, &policy).clamped);
    }

    #[test]
    fn the_explanation_shows_the_arithmetic_and_the_log_line_is_the_seeds() {
        let sizing = size(875, &SizingPolicy::default());
        assert_eq!(
            sizing.explanation,
            "875 devices / 10 target batches = 87.5 → nearest 50 = 100 → clamp [50, 500] = 100 → ceil(875 / 100) = 9 batches"
        );
        assert_eq!(
            log_line(&sizing),
            "AUTO-SCALING: 875 devices → batch size 100 → 9 batches"
        );
    }

    #[test]
    fn other_policies_and_their_validation() {
        let policy = SizingPolicy {
            target_batches: 5,
            rounding_step: 100,
            min_batch_size: 100,
            max_batch_size: 1_000,
        };
        assert_eq!(size(10_000, &policy).batch_size, 1_000);
        assert_eq!(size(2_400, &policy).batch_size, 500);
        assert!(policy.violations().is_empty());
        let bad = SizingPolicy {
            target_batches: 0,
            rounding_step: 50,
            min_batch_size: 600,
            max_batch_size: 500,
        };
        let fields: Vec<String> = bad.violations().into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["target_batches", "min_batch_size"]);
    }
}

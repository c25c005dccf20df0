//! Resource limits of a sandbox and their bounds.

use serde::{Deserialize, Serialize};

/// What a sandbox may use. The HopX sandbox object reports `vcpu`, `memory_mb` and `disk_mb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Resources {
    /// CPU quota in whole CPUs (a CFS quota of `vcpu` × the period).
    pub vcpu: u32,
    /// Memory limit in MiB, swap included (memory + swap may not exceed it).
    pub memory_mb: u64,
    /// Disk size reported to clients, in MiB.
    pub disk_mb: u64,
    /// Maximum number of processes and threads.
    pub pids: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            vcpu: 1,
            memory_mb: 1024,
            disk_mb: 10 * 1024,
            pids: 1024,
        }
    }
}

/// Why a resource request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourcesError {
    /// A value was outside what this host can give.
    #[error("{field} must be between {min} and {max}, got {value}")]
    OutOfRange {
        /// The field name as the API spells it.
        field: &'static str,
        /// Lowest allowed value.
        min: u64,
        /// Highest allowed value.
        max: u64,
        /// The refused value.
        value: u64,
    },
}

impl Resources {
    /// Smallest memory limit: below this the agent and a Python interpreter do not fit.
    pub const MIN_MEMORY_MB: u64 = 64;
    /// Smallest process limit that still lets a shell run a pipeline.
    pub const MIN_PIDS: u32 = 16;

    /// Checks the limits against what the host has (`host_cpus`, `host_memory_mb`).
    pub fn validate(&self, host_cpus: u32, host_memory_mb: u64) -> Result<(), ResourcesError> {
        check("vcpu", u64::from(self.vcpu), 1, u64::from(host_cpus.max(1)))?;
        check(
            "memory_mb",
            self.memory_mb,
            Self::MIN_MEMORY_MB,
            host_memory_mb.max(Self::MIN_MEMORY_MB),
        )?;
        check("disk_mb", self.disk_mb, 64, 16 * 1024 * 1024)?;
        check(
            "pids",
            u64::from(self.pids),
            u64::from(Self::MIN_PIDS),
            65_536,
        )?;
        Ok(())
    }
}

fn check(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ResourcesError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ResourcesError::OutOfRange {
            field,
            min,
            max,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_a_small_host() {
        Resources::default().validate(2, 4096).unwrap();
    }

    #[test]
    fn absurd_values_are_refused_with_the_field_name() {
        let r = Resources {
            memory_mb: 1 << 40,
            ..Resources::default()
        };
        let err = r.validate(2, 4096).unwrap_err();
        assert!(err.to_string().contains("memory_mb"), "{err}");
        let r = Resources {
            vcpu: 0,
            ..Resources::default()
        };
        assert!(r.validate(2, 4096).is_err());
    }
}

//! `custom`: user-supplied WGSL with declared bindings. Shoal cannot check
//! such code against a reference, so it relies on redundancy alone; the
//! source is validated with naga (in `shoal-compute`) before any dispatch
//! and, by the coordinator, when the job is submitted.

use serde::{Deserialize, Serialize};

use super::{
    binding_size, check_buffer, invalid, Binding, BindingRole, Comparator, KernelError, KernelId,
    MAX_WORKGROUPS_PER_DIM,
};

/// Longest WGSL source accepted (64 KiB).
pub const MAX_WGSL_LEN: usize = 64 * 1024;
/// Most bindings a custom kernel may declare.
pub const MAX_CUSTOM_BINDINGS: usize = 8;
/// Longest entry-point name.
pub const MAX_ENTRY_POINT_LEN: usize = 64;
/// Most workgroups one custom task may dispatch, all dimensions together
/// (65 535³ would hold a GPU for days).
pub const MAX_CUSTOM_WORKGROUPS: u64 = 1 << 24;
/// Most operations a custom task may declare (about 17.6 × 10¹²: seconds
/// on a real GPU, and the coordinator's deadlines come from this bound).
pub const MAX_CUSTOM_OPS: u64 = 1 << 44;
/// Operations counted for each workgroup at the least, whatever is
/// declared: a kernel's cost is never below what it dispatches.
pub const MIN_OPS_PER_WORKGROUP: u64 = 64;

/// Whether a custom binding is an input or an output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CustomRole {
    /// `var<storage, read>` filled from the next input attachment.
    Input,
    /// `var<storage, read_write>` read back as the next output.
    Output,
}

/// One declared binding of a custom kernel (group 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomBinding {
    /// `@binding(n)`.
    pub binding: u32,
    /// Input or output.
    pub role: CustomRole,
    /// Data length in bytes.
    pub len: u64,
}

/// A user kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomKernel {
    /// WGSL source.
    pub wgsl: String,
    /// Name of the `@compute` function.
    pub entry_point: String,
    /// Bindings, inputs and outputs in the order of the attachments.
    pub bindings: Vec<CustomBinding>,
    /// Workgroups to dispatch.
    pub workgroups: [u32; 3],
    /// How replicas are compared.
    pub comparator: Comparator,
    /// The submitter's estimate of operations (for scheduling only; at
    /// most [`MAX_CUSTOM_OPS`], and the cost counts at least
    /// [`MIN_OPS_PER_WORKGROUP`] per workgroup whatever is declared).
    pub ops: u64,
}

impl CustomKernel {
    /// Workgroups one run dispatches, all dimensions together.
    pub fn total_workgroups(&self) -> u64 {
        self.workgroups.iter().map(|&w| u64::from(w)).product()
    }

    /// The operations the coordinator schedules by: the declaration, but
    /// never less than the workgroups dispatched, nor more than the
    /// ceiling (the declaration alone is the submitter's word).
    pub fn bounded_ops(&self) -> u64 {
        self.ops.max(self.total_workgroups().saturating_mul(MIN_OPS_PER_WORKGROUP)).min(MAX_CUSTOM_OPS)
    }

    pub(super) fn lens(&self, pick: impl Fn(CustomRole) -> bool) -> Vec<u64> {
        self.bindings.iter().filter(|b| pick(b.role)).map(|b| b.len).collect()
    }

    pub(super) fn layout(&self) -> Vec<Binding> {
        let (mut inputs, mut outputs) = (0u8, 0u8);
        self.bindings
            .iter()
            .map(|b| {
                let role = match b.role {
                    CustomRole::Input => {
                        inputs += 1;
                        BindingRole::Input(inputs - 1)
                    }
                    CustomRole::Output => {
                        outputs += 1;
                        BindingRole::Output(outputs - 1)
                    }
                };
                Binding { binding: b.binding, role, size: binding_size(b.len), data_len: b.len }
            })
            .collect()
    }

    pub(super) fn validate(&self) -> Result<(), KernelError> {
        let k = KernelId::Custom;
        if self.wgsl.is_empty() || self.wgsl.len() > MAX_WGSL_LEN {
            return Err(invalid(k, "wgsl", format!("must be 1 to {MAX_WGSL_LEN} bytes")));
        }
        let ep = &self.entry_point;
        let ident = ep.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && ep.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident || ep.len() > MAX_ENTRY_POINT_LEN {
            return Err(invalid(k, "entry_point", "must be a WGSL identifier of at most 64 characters"));
        }
        if self.bindings.is_empty() || self.bindings.len() > MAX_CUSTOM_BINDINGS {
            return Err(invalid(k, "bindings", format!("must number 1 to {MAX_CUSTOM_BINDINGS}")));
        }
        if !self.bindings.iter().any(|b| b.role == CustomRole::Output) {
            return Err(invalid(k, "bindings", "must include at least one output"));
        }
        for (i, b) in self.bindings.iter().enumerate() {
            if self.bindings[..i].iter().any(|o| o.binding == b.binding) {
                return Err(invalid(k, "bindings", format!("binding {} is declared twice", b.binding)));
            }
            check_buffer(k, "binding", b.len)?;
        }
        if self.workgroups.iter().any(|&w| w == 0 || w > MAX_WORKGROUPS_PER_DIM) {
            return Err(invalid(k, "workgroups", format!("each must be in 1..={MAX_WORKGROUPS_PER_DIM}")));
        }
        if self.total_workgroups() > MAX_CUSTOM_WORKGROUPS {
            return Err(invalid(k, "workgroups", format!("at most {MAX_CUSTOM_WORKGROUPS} in all")));
        }
        if self.ops > MAX_CUSTOM_OPS {
            return Err(invalid(k, "ops", format!("at most {MAX_CUSTOM_OPS}")));
        }
        self.comparator.validate().map_err(|reason| invalid(k, "comparator", reason))
    }
}

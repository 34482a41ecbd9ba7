//! WGSL validation with naga (the front end wgpu itself uses), before any
//! dispatch: a custom kernel whose shader does not parse, does not
//! validate, lacks its compute entry point or declares bindings other than
//! the ones the job says is refused with naga's message. The coordinator
//! calls the same function when a job is submitted, so invalid shaders are
//! refused at the door.

use shoal_core::kernels::{BindingRole, KernelSpec};

/// Why a kernel's WGSL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShaderError {
    /// The source does not parse.
    #[error("WGSL does not parse:\n{0}")]
    Parse(String),
    /// The module does not validate.
    #[error("WGSL does not validate: {0}")]
    Validate(String),
    /// No `@compute` function of that name.
    #[error("WGSL has no @compute entry point `{0}`")]
    EntryPoint(String),
    /// The shader's bindings differ from the declared layout.
    #[error(
        "WGSL bindings {declared:?} differ from the declared bindings {expected:?} (binding, is-uniform; group 0)"
    )]
    Bindings {
        /// What the shader declares.
        declared: Vec<(u32, bool)>,
        /// What the job declares.
        expected: Vec<(u32, bool)>,
    },
}

/// Parses and validates a kernel's WGSL and checks it against the kernel's
/// layout.
pub fn validate_kernel(kernel: &KernelSpec) -> Result<(), ShaderError> {
    let source = kernel.wgsl();
    let module = naga::front::wgsl::parse_str(source).map_err(|e| ShaderError::Parse(e.emit_to_string(source)))?;
    let mut validator =
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty());
    validator.validate(&module).map_err(|e| ShaderError::Validate(e.emit_to_string(source)))?;
    let entry = kernel.entry_point();
    if !module.entry_points.iter().any(|e| e.name == entry && e.stage == naga::ShaderStage::Compute) {
        return Err(ShaderError::EntryPoint(entry.to_owned()));
    }
    let mut declared: Vec<(u32, bool)> = module
        .global_variables
        .iter()
        .filter_map(|(_, g)| {
            let rb = g.binding.as_ref()?;
            // Anything outside group 0 is reported as a mismatch below.
            let binding = if rb.group == 0 { rb.binding } else { u32::MAX };
            Some((binding, g.space == naga::AddressSpace::Uniform))
        })
        .collect();
    declared.sort_unstable();
    let mut expected: Vec<(u32, bool)> =
        kernel.layout().iter().map(|b| (b.binding, b.role == BindingRole::Params)).collect();
    expected.sort_unstable();
    if declared != expected {
        return Err(ShaderError::Bindings { declared, expected });
    }
    Ok(())
}

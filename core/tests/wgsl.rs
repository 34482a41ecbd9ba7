//! Every built-in kernel's WGSL parses and validates with naga (the same
//! front end wgpu uses), and its declared bindings match the kernel's
//! layout, so a shader mistake is caught here and not on a worker's GPU.

#![cfg(not(target_arch = "wasm32"))]

use shoal_core::kernels::{BindingRole, KernelId, KernelSpec, MandelbrotParams, MatmulParams, Program, Sha256Params};

fn built_ins() -> Vec<KernelSpec> {
    vec![
        KernelSpec::Sha256(Sha256Params { count: 10, message_len: 13 }),
        KernelSpec::MatmulF32(MatmulParams { m: 3, n: 5, k: 7 }),
        // n and k multiples of 4: the streamed program too.
        KernelSpec::MatmulF32(MatmulParams { m: 3, n: 8, k: 4 }),
        KernelSpec::MatmulF16(MatmulParams { m: 3, n: 5, k: 7 }),
        KernelSpec::MatmulF16(MatmulParams { m: 3, n: 8, k: 4 }),
        KernelSpec::Mandelbrot(MandelbrotParams::from_plane(16, 16, -2.0, -1.5, 0.1, 64)),
    ]
}

#[test]
fn built_in_wgsl_validates_and_matches_its_layout() {
    for spec in built_ins() {
        for program in spec.programs() {
            check_program(&spec, &program);
        }
    }
    let matmul = KernelSpec::MatmulF32(MatmulParams { m: 3, n: 8, k: 4 });
    let names: Vec<&str> = matmul.programs().iter().map(|p| p.name).collect();
    assert_eq!(names, ["tiled", "streamed"]);
    let odd = KernelSpec::MatmulF32(MatmulParams { m: 3, n: 5, k: 8 });
    assert_eq!(odd.programs().len(), 1, "the streamed program reads vec4s: n and k multiples of 4");
}

fn check_program(spec: &KernelSpec, program: &Program<'_>) {
    {
        let module = naga::front::wgsl::parse_str(program.wgsl).unwrap_or_else(|e| {
            panic!("{} ({}) does not parse:\n{}", spec.id(), program.name, e.emit_to_string(program.wgsl))
        });
        // Only the f16 kernel may use f16 (workers without it never get it).
        let caps = if spec.id() == KernelId::MatmulF16 {
            naga::valid::Capabilities::SHADER_FLOAT16
        } else {
            naga::valid::Capabilities::empty()
        };
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{} does not validate: {e:?}", spec.id()));
        assert!(
            module.entry_points.iter().any(|e| e.name == program.entry_point && e.stage == naga::ShaderStage::Compute),
            "{} has no compute entry point {}",
            spec.id(),
            program.entry_point
        );
        let mut declared: Vec<(u32, bool)> = module
            .global_variables
            .iter()
            .filter_map(|(_, g)| {
                let rb = g.binding.as_ref()?;
                assert_eq!(rb.group, 0, "{}: everything is in group 0", spec.id());
                let uniform = g.space == naga::AddressSpace::Uniform;
                Some((rb.binding, uniform))
            })
            .collect();
        declared.sort_unstable();
        let mut want: Vec<(u32, bool)> =
            spec.layout().iter().map(|b| (b.binding, b.role == BindingRole::Params)).collect();
        want.sort_unstable();
        assert_eq!(declared, want, "{}: WGSL bindings differ from the layout", spec.id());
    }
}

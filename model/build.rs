//! 1. Gives the binaries an rpath to the venv's `torch/lib`, so they run without
//!    LD_LIBRARY_PATH. tch's build script finds libtorch through `LIBTORCH_USE_PYTORCH` (set in
//!    .cargo/config.toml); we ask the same Python where torch lives.
//! 2. Compiles `csrc/fused_attention.cpp`, the autograd glue of the fused CPU attention,
//!    against the libtorch headers that torch-sys found (`DEP_TCH_LIBTORCH_LIB`, its lib dir;
//!    the headers sit beside it in both the wheel's and the libtorch zip's layout), with the
//!    C++ ABI flag torch-sys uses (`LIBTORCH_CXX11_ABI`, default 1 as in torch-sys).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let lib = String::from_utf8_lossy(&o.stdout).trim().to_string();
            println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        }
        _ => println!("cargo:warning=could not ask {python} where torch/lib is; run `make setup` first"),
    }
    compile_fused_attention_glue();
}

fn compile_fused_attention_glue() {
    println!("cargo:rerun-if-changed=csrc/fused_attention.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys reports its libtorch lib dir"));
    let root = lib.parent().expect("libtorch's lib dir has a parent").to_path_buf();
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // at::parallel_for is inline OpenMP; libgomp is already linked by torch-sys and
        // resolves to the copy libtorch ships (same soname), so there is one thread pool.
        .flag("-fopenmp")
        .file("csrc/fused_attention.cpp")
        .compile("bf_fused_attention");
}

//! 1. Gives the binaries an rpath to the venv's `torch/lib`, so they run without
//!    LD_LIBRARY_PATH. tch's build script finds libtorch through `LIBTORCH_USE_PYTORCH` (set in
//!    .cargo/config.toml); we ask the same Python where torch lives.
//! 2. Compiles `csrc/fused_attention.cpp`, the autograd glue of the fused CPU attention,
//!    against the libtorch headers that torch-sys found (`DEP_TCH_LIBTORCH_LIB`, its lib dir;
//!    the headers sit beside it in both the wheel's and the libtorch zip's layout), with the
//!    C++ ABI flag torch-sys uses (`LIBTORCH_CXX11_ABI`, default 1 as in torch-sys).
//! 3. Compiles `csrc/distributed.cpp` likewise (see `compile_distributed_glue`), and
//!    `csrc/chunked_ce.cpp` (the chunked output layer + cross-entropy, `chunked_ce.rs`) and
//!    `csrc/fused_adamw.cpp` (libtorch's fused AdamW kernel, `optim.rs`).

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
    compile_glue("csrc/chunked_ce.cpp", "bf_chunked_ce", &[], &[]);
    compile_glue("csrc/fused_adamw.cpp", "bf_fused_adamw", &[], &[]);
    compile_distributed_glue();
}

fn compile_fused_attention_glue() {
    compile_glue("csrc/fused_attention.cpp", "bf_fused_attention", &[], &[]);
}

/// 3. Compiles `csrc/distributed.cpp` (c10d process groups on Gloo and DDP's Reducer, for
///    data-parallel bf-train) the same way, with gloo's vendored headers
///    (`csrc/third_party/gloo`, which the torch wheel lacks) and `USE_C10D_GLOO`.
fn compile_distributed_glue() {
    println!("cargo:rerun-if-changed=csrc/third_party/gloo");
    compile_glue("csrc/distributed.cpp", "bf_distributed", &["csrc/third_party/gloo"], &["-DUSE_C10D_GLOO"]);
}

/// Compiles one C++ file against libtorch's headers into `lib{name}.a`. One such file takes
/// minutes, so a library newer than its source, this script and the gloo headers is reused
/// (cargo reruns the script when any of the glue sources changes, not only this one's).
fn compile_glue(source: &str, name: &str, includes: &[&str], flags: &[&str]) {
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys reports its libtorch lib dir"));
    let root = lib.parent().expect("libtorch's lib dir has a parent").to_path_buf();
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let archive = out_dir.join(format!("lib{name}.a"));
    let stamp = out_dir.join(format!("lib{name}.inputs"));
    let inputs = format!("{root:?} abi={abi} {includes:?} {flags:?}");
    let newest_input = [source, "build.rs", "csrc/third_party/gloo"]
        .iter()
        .filter_map(|p| newest_mtime(std::path::Path::new(p)))
        .max();
    let fresh = std::fs::metadata(&archive).and_then(|m| m.modified()).ok().zip(newest_input).is_some_and(|(built, input)| built > input)
        && std::fs::read_to_string(&stamp).is_ok_and(|s| s == inputs);
    if fresh {
        println!("cargo:rustc-link-search=native={}", out_dir.display());
        println!("cargo:rustc-link-lib=static={name}");
        println!("cargo:rustc-link-lib=stdc++");
        return;
    }
    let mut build = cc::Build::new();
    build
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
        .flag("-fopenmp");
    for dir in includes {
        build.include(dir);
    }
    for flag in flags {
        build.flag(flag);
    }
    build.file(source).compile(name);
    std::fs::write(&stamp, inputs).expect("writing into OUT_DIR");
}

/// The latest modification time of a file, or of the files under a folder.
fn newest_mtime(path: &std::path::Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path).ok()?.flatten().filter_map(|e| newest_mtime(&e.path())).max()
}

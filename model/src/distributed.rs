//! Data-parallel training across processes on libtorch's own c10d (Gloo on CPU), through the
//! C++ glue in `csrc/distributed.cpp`.
//!
//! [`World`] says which process this is (torchrun's or SLURM's variables); a
//! [`ProcessGroup`] connects the processes (rendezvous on a TCP store served by rank 0, or on
//! a shared file); a [`GradientReducer`] is PyTorch DDP's engine (`c10d::Reducer`): armed
//! before a backward pass, it all-reduces the gradients in buckets while the pass runs and
//! leaves in every parameter's `.grad` the mean over the processes. The reducer borrows its
//! group, so it is dropped first.

use std::ffi::{c_char, c_void, CString};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tch::Tensor;

/// Errors of the distributed layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The environment names no consistent rank and world.
    #[error("distributed environment: {0}")]
    Env(String),
    /// c10d or Gloo refused or failed (rendezvous timeout, a peer gone, ...).
    #[error("{what}: {message}")]
    Collective { what: &'static str, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// This process's place among the training processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct World {
    pub rank: usize,
    pub size: usize,
    /// Rank among the processes of this machine.
    pub local_rank: usize,
    /// Host and port of the rendezvous store (served by rank 0).
    pub master_addr: String,
    pub master_port: u16,
}

/// The port when neither MASTER_PORT nor a SLURM job id gives one (torchrun's default).
pub const DEFAULT_PORT: u16 = 29500;

impl World {
    /// From the process environment: torchrun's `RANK`, `WORLD_SIZE` (and `LOCAL_RANK`,
    /// `MASTER_ADDR`, `MASTER_PORT`), else, inside an `srun` job step (`SLURM_STEP_ID` set),
    /// SLURM's `SLURM_PROCID`, `SLURM_STEP_NUM_TASKS` (or `SLURM_NTASKS`), `SLURM_LOCALID`
    /// with the first host of `SLURM_JOB_NODELIST` as the master (`MASTER_ADDR` and
    /// `MASTER_PORT` still win when set; the port otherwise derives from the job id, so two
    /// jobs on one node do not collide). `None` when neither applies: one process. A batch
    /// script itself is no step (it sees `SLURM_NTASKS` of the whole job and `SLURM_PROCID`
    /// 0 without being one of the tasks), so bf-train started there without srun trains alone
    /// rather than wait for tasks that never come.
    pub fn from_env() -> Result<Option<World>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`World::from_env`] over any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<World>> {
        let number = |k: &str| -> Result<Option<usize>> {
            var(k).map(|v| v.trim().parse::<usize>().map_err(|_| Error::Env(format!("{k}={v:?} is not a non-negative integer")))).transpose()
        };
        let (rank, size, local_rank, default_addr, default_port) = if let (Some(rank), Some(size)) = (number("RANK")?, number("WORLD_SIZE")?) {
            (rank, size, number("LOCAL_RANK")?.unwrap_or(rank), "127.0.0.1".to_string(), DEFAULT_PORT)
        } else if var("RANK").is_some() || var("WORLD_SIZE").is_some() {
            return Err(Error::Env("RANK and WORLD_SIZE must be set together".into()));
        } else if let (Some(_step), Some(rank), Some(size)) =
            (var("SLURM_STEP_ID"), number("SLURM_PROCID")?, number("SLURM_STEP_NUM_TASKS")?.or(number("SLURM_NTASKS")?))
        {
            let nodes = var("SLURM_JOB_NODELIST").or_else(|| var("SLURM_NODELIST"));
            let addr = match nodes {
                Some(list) => first_host(&list).ok_or_else(|| Error::Env(format!("SLURM_JOB_NODELIST={list:?} names no host")))?,
                None => "127.0.0.1".to_string(),
            };
            let port = match number("SLURM_JOB_ID")? {
                Some(job) => 20000 + (job % 20000) as u16,
                None => DEFAULT_PORT,
            };
            (rank, size, number("SLURM_LOCALID")?.unwrap_or(0), addr, port)
        } else {
            return Ok(None);
        };
        if size == 0 || rank >= size {
            return Err(Error::Env(format!("rank {rank} of world size {size}: the rank must be below the world size")));
        }
        let master_addr = var("MASTER_ADDR").filter(|a| !a.is_empty()).unwrap_or(default_addr);
        let master_port = match var("MASTER_PORT") {
            Some(p) => p.trim().parse().map_err(|_| Error::Env(format!("MASTER_PORT={p:?} is not a port number")))?,
            None => default_port,
        };
        Ok(Some(World { rank, size, local_rank, master_addr, master_port }))
    }

    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
}

/// The first host of a SLURM node list: `node[03-05,07],gpu1` → `node03`.
pub fn first_host(list: &str) -> Option<String> {
    let list = list.trim();
    let head_end = list.find([',', '[']).unwrap_or(list.len());
    let prefix = &list[..head_end];
    if list[head_end..].starts_with('[') {
        let inner = &list[head_end + 1..list[head_end..].find(']')? + head_end];
        let first = inner.split(',').next()?.split('-').next()?;
        return Some(format!("{prefix}{first}"));
    }
    (!prefix.is_empty()).then(|| prefix.to_string())
}

/// How the processes find each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rendezvous {
    /// A TCP key-value store at addr:port, served by rank 0 (torchrun's and SLURM's way).
    Tcp { addr: String, port: u16 },
    /// A file every process can reach (one machine or a shared filesystem; tests). It must
    /// not exist before the group is made, and is removed when the group ends.
    File(PathBuf),
}

#[repr(C)]
struct RawPg(c_void);
#[repr(C)]
struct RawDdp(c_void);

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn bf_pg_new(
        out: *mut *mut RawPg,
        store_kind: i32,
        addr: *const c_char,
        port: i32,
        rank: i32,
        world: i32,
        timeout_ms: i64,
        iface: *const c_char,
        host: *const c_char,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn bf_pg_free(pg: *mut RawPg);
    fn bf_pg_broadcast(pg: *mut RawPg, tensors: *const *const torch_sys::C_tensor, n: usize, root: i32, err: *mut c_char, err_len: usize) -> i32;
    fn bf_pg_allreduce_f64(pg: *mut RawPg, values: *mut f64, n: usize, err: *mut c_char, err_len: usize) -> i32;
    fn bf_pg_barrier(pg: *mut RawPg, err: *mut c_char, err_len: usize) -> i32;
    fn bf_ddp_new(
        out: *mut *mut RawDdp,
        pg: *mut RawPg,
        params: *const *const torch_sys::C_tensor,
        n: usize,
        bucket_bytes: i64,
        find_unused: i32,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn bf_ddp_prepare(ddp: *mut RawDdp, loss: *const torch_sys::C_tensor, err: *mut c_char, err_len: usize) -> i32;
    fn bf_ddp_free(ddp: *mut RawDdp);
}

/// Calls a glue function with an error buffer; its message on failure.
fn call(what: &'static str, f: impl FnOnce(*mut c_char, usize) -> i32) -> Result<()> {
    crate::glue::call(f).map_err(|m| Error::Collective { what, message: m.trim().to_string() })
}

fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Env(format!("{s:?} holds a NUL byte")))
}

/// A c10d process group on Gloo (CPU tensors).
pub struct ProcessGroup {
    raw: *mut RawPg,
    rank: usize,
    size: usize,
}

impl ProcessGroup {
    /// Joins the group: blocks until all `world.size` processes have arrived (or `timeout`,
    /// which also bounds every later collective). Gloo's connections bind to the interface
    /// in `GLOO_SOCKET_IFNAME` when set (as torch.distributed), to the loopback address when
    /// the rendezvous is local (a file, or a loopback master), else to the address of this
    /// machine's hostname.
    pub fn new(world: &World, rendezvous: &Rendezvous, timeout: Duration) -> Result<ProcessGroup> {
        let iface = std::env::var("GLOO_SOCKET_IFNAME").ok().and_then(|v| v.split(',').next().map(str::to_string)).unwrap_or_default();
        let (kind, addr, port, local) = match rendezvous {
            Rendezvous::Tcp { addr, port } => (0, addr.clone(), *port, is_loopback(addr)),
            Rendezvous::File(path) => (1, path.to_string_lossy().into_owned(), 0, true),
        };
        let host = if local { "127.0.0.1" } else { "" };
        let (addr, iface, host) = (c_string(&addr)?, c_string(&iface)?, c_string(host)?);
        let mut raw = std::ptr::null_mut();
        call("joining the process group", |err, len| unsafe {
            // SAFETY: the strings live for the call; `raw` receives a new group or stays null.
            bf_pg_new(
                &mut raw,
                kind,
                addr.as_ptr(),
                port as i32,
                world.rank as i32,
                world.size as i32,
                timeout.as_millis().min(i64::MAX as u128) as i64,
                iface.as_ptr(),
                host.as_ptr(),
                err,
                len,
            )
        })?;
        Ok(ProcessGroup { raw, rank: world.rank, size: world.size })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Overwrites every tensor with `root`'s (in place, outside autograd); the tensors must be
    /// contiguous and alike on every process.
    pub fn broadcast(&self, tensors: &[&Tensor], root: usize) -> Result<()> {
        let ptrs: Vec<*const torch_sys::C_tensor> = tensors.iter().map(|t| t.as_ptr()).collect();
        // SAFETY: the tensors are live for the call.
        call("broadcast", |err, len| unsafe { bf_pg_broadcast(self.raw, ptrs.as_ptr(), ptrs.len(), root as i32, err, len) })
    }

    /// Replaces every value by its sum over the processes.
    pub fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()> {
        // SAFETY: `values` is a live buffer of its length.
        call("all-reduce", |err, len| unsafe { bf_pg_allreduce_f64(self.raw, values.as_mut_ptr(), values.len(), err, len) })
    }

    /// Whether any process passes `true`.
    pub fn any(&self, flag: bool) -> Result<bool> {
        let mut v = [flag as u8 as f64];
        self.all_reduce_sum(&mut v)?;
        Ok(v[0] > 0.0)
    }

    /// Returns once every process has called it.
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: the group is live.
        call("barrier", |err, len| unsafe { bf_pg_barrier(self.raw, err, len) })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: made by bf_pg_new, freed once; reducers borrowing it are gone (lifetimes).
        unsafe { bf_pg_free(self.raw) }
    }
}

fn is_loopback(addr: &str) -> bool {
    addr == "localhost" || addr == "::1" || addr.starts_with("127.")
}

/// PyTorch DDP's gradient reducer over a model's parameters (the same list, in the same order,
/// on every process; checked when it is made).
pub struct GradientReducer<'g> {
    raw: *mut RawDdp,
    _group: PhantomData<&'g ProcessGroup>,
}

/// DDP's default bucket size (after a first bucket of 1 MiB).
pub const DEFAULT_BUCKET_BYTES: i64 = 25 * 1024 * 1024;

impl<'g> GradientReducer<'g> {
    /// A reducer over `params` with buckets of `bucket_bytes`. Parameters that a step's loss
    /// does not reach are found by walking its graph (DDP's `find_unused_parameters`), so a
    /// model with parameters some steps do not use trains without hanging.
    pub fn new(group: &'g ProcessGroup, params: &[&Tensor], bucket_bytes: i64) -> Result<GradientReducer<'g>> {
        let ptrs: Vec<*const torch_sys::C_tensor> = params.iter().map(|t| t.as_ptr()).collect();
        let mut raw = std::ptr::null_mut();
        // SAFETY: the tensors are live for the call (the reducer keeps its own references).
        call("making the gradient reducer", |err, len| unsafe {
            bf_ddp_new(&mut raw, group.raw, ptrs.as_ptr(), ptrs.len(), bucket_bytes, 1, err, len)
        })?;
        Ok(GradientReducer { raw, _group: PhantomData })
    }

    /// Arms the reducer: the next backward pass from `loss` all-reduces the gradients (the
    /// mean over the processes lands in `.grad`). Without it, a backward pass only
    /// accumulates locally (DDP's `no_sync`, for all but the last micro-batch of a step).
    pub fn prepare(&self, loss: &Tensor) -> Result<()> {
        // SAFETY: the reducer and the tensor are live.
        call("preparing the gradient all-reduce", |err, len| unsafe { bf_ddp_prepare(self.raw, loss.as_ptr(), err, len) })
    }
}

impl Drop for GradientReducer<'_> {
    fn drop(&mut self) {
        // SAFETY: made by bf_ddp_new, freed once.
        unsafe { bf_ddp_free(self.raw) }
    }
}

/// A fresh path for a file rendezvous next to `dir` (tests and one-machine runs).
pub fn rendezvous_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.rendezvous"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn world_from_torchrun_slurm_or_neither() {
        assert_eq!(World::from_vars(vars(&[])).unwrap(), None);
        let w = World::from_vars(vars(&[("RANK", "1"), ("WORLD_SIZE", "4"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "n1"), ("MASTER_PORT", "1234")]))
            .unwrap()
            .unwrap();
        assert_eq!(w, World { rank: 1, size: 4, local_rank: 1, master_addr: "n1".into(), master_port: 1234 });
        let w = World::from_vars(vars(&[("RANK", "0"), ("WORLD_SIZE", "2")])).unwrap().unwrap();
        assert_eq!((w.master_addr.as_str(), w.master_port), ("127.0.0.1", DEFAULT_PORT));
        let w = World::from_vars(vars(&[
            ("SLURM_STEP_ID", "0"),
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[07-08]"),
            ("SLURM_JOB_ID", "123456"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(w, World { rank: 3, size: 4, local_rank: 1, master_addr: "gpu07".into(), master_port: 20000 + 3456 });
        // A batch script (no job step) is one process, whatever the job's task count.
        let batch = [("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_JOB_NODELIST", "vm"), ("SLURM_JOB_ID", "5")];
        assert_eq!(World::from_vars(vars(&batch)).unwrap(), None);
        // In a step, the step's task count.
        let step = [("SLURM_STEP_ID", "1"), ("SLURM_PROCID", "1"), ("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_NTASKS", "4")];
        assert_eq!(World::from_vars(vars(&step)).unwrap().map(|w| (w.rank, w.size)), Some((1, 2)));
        // torchrun's variables win over SLURM's.
        let w = World::from_vars(vars(&[("RANK", "0"), ("WORLD_SIZE", "1"), ("SLURM_PROCID", "1"), ("SLURM_NTASKS", "2")])).unwrap().unwrap();
        assert_eq!((w.rank, w.size), (0, 1));
        for bad in [vec![("RANK", "2"), ("WORLD_SIZE", "2")], vec![("RANK", "x"), ("WORLD_SIZE", "2")], vec![("RANK", "0")], vec![("RANK", "0"), ("WORLD_SIZE", "0")]] {
            assert!(matches!(World::from_vars(vars(&bad)), Err(Error::Env(_))), "{bad:?}");
        }
    }

    #[test]
    fn first_host_of_slurm_node_lists() {
        assert_eq!(first_host("node03").as_deref(), Some("node03"));
        assert_eq!(first_host("node[03-05,07],gpu1").as_deref(), Some("node03"));
        assert_eq!(first_host("a1,b2").as_deref(), Some("a1"));
        assert_eq!(first_host("n[9,10]").as_deref(), Some("n9"));
        assert_eq!(first_host(""), None);
    }

    /// Two ranks as two threads of this process on a file rendezvous: the group's collectives
    /// and the reducer's gradient mean.
    #[test]
    fn two_ranks_all_reduce_broadcast_and_average_gradients() {
        let dir = std::env::temp_dir().join(format!("bf-dist-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = rendezvous_file(&dir, "t");
        let results: Vec<(Vec<f64>, Vec<f32>, Vec<f32>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2usize)
                .map(|rank| {
                    let file = file.clone();
                    s.spawn(move || {
                        let world = World { rank, size: 2, local_rank: rank, master_addr: String::new(), master_port: 0 };
                        let pg = ProcessGroup::new(&world, &Rendezvous::File(file), Duration::from_secs(60)).unwrap();
                        let mut v = [rank as f64 + 1.0, 10.0];
                        pg.all_reduce_sum(&mut v).unwrap();
                        // Different weights per rank until the broadcast makes them rank 0's.
                        let w = Tensor::from_slice(&[1.0f32 + rank as f32, 2.0]).set_requires_grad(true);
                        pg.broadcast(&[&w], 0).unwrap();
                        let weights = Vec::<f32>::try_from(&w.detach()).unwrap();
                        let reducer = GradientReducer::new(&pg, &[&w], DEFAULT_BUCKET_BYTES).unwrap();
                        let mut grads = Vec::new();
                        for step in 0..2 {
                            // loss = x·w with x = (rank + 1 + step)·[1, 2]: gradient x.
                            let x = Tensor::from_slice(&[1.0f32, 2.0]) * (rank + 1 + step) as f64;
                            let loss = (&w * &x).sum(tch::Kind::Float);
                            reducer.prepare(&loss).unwrap();
                            loss.backward();
                            grads.extend(Vec::<f32>::try_from(&w.grad()).unwrap());
                            let _ = w.grad().zero_();
                        }
                        pg.barrier().unwrap();
                        drop(reducer);
                        (v.to_vec(), weights, grads)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (sums, weights, grads) in &results {
            assert_eq!(sums, &vec![3.0, 20.0]);
            assert_eq!(weights, &vec![1.0, 2.0], "rank 0's weights everywhere");
            // Mean of (1, 2)·[1,2] and then of (2, 3)·[1,2].
            assert_eq!(grads, &vec![1.5, 3.0, 2.5, 5.0]);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

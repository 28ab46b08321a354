// Data-parallel training glue (`model/src/distributed.rs`, `bf-train` with several processes):
// libtorch's own c10d process group on Gloo, and its `c10d::Reducer`, the engine of PyTorch's
// DistributedDataParallel (gradients all-reduced in buckets from hooks on the parameters'
// gradient accumulators while the backward pass runs, averaged over the processes).
//
// tch wraps none of c10d, so this file exposes the few calls bf-train makes as C functions:
// a process group (rendezvous on a TCPStore whose server is rank 0, or on a FileStore for
// tests), broadcast of tensors from a root, sum all-reduce of f64 scalars, a barrier, and a
// Reducer over tch's `at::Tensor*` parameters. Each returns 0, or 1 with the message in `err`.
//
// The torch wheel ships c10d's headers but not gloo's, which ProcessGroupGloo.hpp includes;
// they are vendored in third_party/gloo (declarations only: gloo's code is the copy inside
// libtorch_cpu.so). USE_C10D_GLOO is defined by build.rs, as torch's own build does.

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace {

struct BfPg {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
};

struct BfDdp {
  // Holds its own reference to the process group, so it may outlive the BfPg handle.
  std::unique_ptr<c10d::Reducer> reducer;
};

void write_err(char* err, size_t err_len, const char* msg) {
  if (err && err_len) std::snprintf(err, err_len, "%s", msg);
}

// Runs `body`, turning exceptions into a message and status 1.
template <typename F>
int guarded(char* err, size_t err_len, F body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    write_err(err, err_len, e.what_without_backtrace());
  } catch (const std::exception& e) {
    write_err(err, err_len, e.what());
  } catch (...) {
    write_err(err, err_len, "unknown C++ exception");
  }
  return 1;
}

void wait(const c10::intrusive_ptr<c10d::Work>& work) {
  work->wait();
}

}  // namespace

extern "C" {

// A Gloo process group of `world` processes, this one `rank`.
// store_kind 0: TCPStore at addr:port, served by rank 0. store_kind 1: FileStore at the path
// `addr` (port unused; the file must not be left from an earlier group).
// Gloo's own connections bind to: the interface `iface` when not empty, else the address
// `host` when not empty, else the address this machine's hostname resolves to (loopback when
// it resolves to none), as torch.distributed does.
int bf_pg_new(BfPg** out, int store_kind, const char* addr, int port, int rank, int world, int64_t timeout_ms,
              const char* iface, const char* host, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto g = std::make_unique<BfPg>();
    if (store_kind == 0) {
      c10d::TCPStoreOptions opts;
      opts.port = static_cast<std::uint16_t>(port);
      opts.isServer = rank == 0;
      opts.numWorkers = static_cast<std::size_t>(world);
      opts.waitWorkers = true;
      opts.timeout = timeout;
      g->store = c10::make_intrusive<c10d::TCPStore>(std::string(addr), opts);
    } else {
      g->store = c10::make_intrusive<c10d::FileStore>(std::string(addr), world);
      g->store->setTimeout(timeout);
    }
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    if (iface && *iface) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
    } else if (host && *host) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    g->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, rank, world, options);
    g->pg = c10::make_intrusive<c10d::ProcessGroup>(g->store, rank, world);
    g->pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    g->pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, g->gloo);
    *out = g.release();
  });
}

void bf_pg_free(BfPg* g) {
  delete g;
}

// Overwrites each tensor with root's copy (in place, outside autograd).
int bf_pg_broadcast(BfPg* g, const at::Tensor* const* tensors, size_t n, int root, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    at::NoGradGuard no_grad;
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    for (size_t i = 0; i < n; ++i) {
      TORCH_CHECK(tensors[i]->is_contiguous(), "broadcast: tensor ", i, " is not contiguous");
      std::vector<at::Tensor> one{tensors[i]->detach()};
      wait(g->gloo->broadcast(one, opts));
    }
  });
}

// Replaces values[0..n] by their sums over the processes.
int bf_pg_allreduce_f64(BfPg* g, double* values, size_t n, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    at::Tensor t = at::from_blob(values, {static_cast<int64_t>(n)}, at::TensorOptions().dtype(at::kDouble)).clone();
    std::vector<at::Tensor> one{t};
    wait(g->gloo->allreduce(one));
    std::copy(t.data_ptr<double>(), t.data_ptr<double>() + n, values);
  });
}

int bf_pg_barrier(BfPg* g, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { wait(g->gloo->barrier()); });
}

// A Reducer over the parameters (the same list, in the same order, on every process): after
// bf_ddp_prepare, the next backward pass leaves in each parameter's .grad the mean over the
// processes of their gradients. Buckets as DDP's: the first of 1 MiB, then `bucket_bytes`.
// find_unused: parameters that took no part in a step's loss are found by walking the graph
// (a parameter used by none of the processes keeps an undefined gradient).
int bf_ddp_new(BfDdp** out, BfPg* g, const at::Tensor* const* params, size_t n, int64_t bucket_bytes, int find_unused,
               char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> ps;
    ps.reserve(n);
    for (size_t i = 0; i < n; ++i) ps.push_back(*params[i]);
    c10d::verify_params_across_processes(g->pg, ps, std::nullopt);
    const int64_t first_bucket = std::min<int64_t>(1024 * 1024, bucket_bytes);
    std::vector<bool> sparse(n, false);
    auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(
        ps, {static_cast<size_t>(first_bucket), static_cast<size_t>(bucket_bytes)}, sparse);
    // As DDP: gradients arrive roughly in reverse order of the parameters.
    std::reverse(buckets.begin(), buckets.end());
    std::reverse(limits.begin(), limits.end());
    std::vector<int64_t> limits64(limits.begin(), limits.end());
    auto d = std::make_unique<BfDdp>();
    d->reducer = std::make_unique<c10d::Reducer>(ps, buckets, g->pg, sparse, bucket_bytes, find_unused != 0,
                                                 /*gradient_as_bucket_view=*/false,
                                                 std::unordered_map<size_t, std::string>{}, first_bucket,
                                                 /*skip_all_reduce_unused_params=*/false,
                                                 /*use_python_reducer=*/false, limits64);
    *out = d.release();
  });
}

// Arms the reducer for the next backward pass from `loss` (DDP's prepare_for_forward and
// prepare_for_backward). Skip it on micro-batches whose gradients should only accumulate.
int bf_ddp_prepare(BfDdp* d, const at::Tensor* loss, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    d->reducer->rebuild_buckets();
    d->reducer->prepare_for_forward();
    d->reducer->prepare_for_backward({*loss});
  });
}

void bf_ddp_free(BfDdp* d) {
  try {
    delete d;
  } catch (...) {
    // ~Reducer may throw (noexcept(false)); a failing teardown must not abort the process.
  }
}

}  // extern "C"

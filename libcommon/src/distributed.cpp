#include "hfr/distributed.hpp"

#include <cerrno>
#include <cstdlib>
#include <limits>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if HFR_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "hfr/error.hpp"

namespace hfr::dist {

namespace {

// An integer environment variable; `fallback` when unset.
long env_int(const char* name, long fallback, long lo, long hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  errno = 0;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (errno || *end || x < lo || x > hi)
    throw UsageError(std::string("environment: ") + name + "='" + v + "' is not an integer in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
  return x;
}

}  // namespace

Env env_from_environment() {
  Env e;
  const bool has_world = std::getenv("WORLD_SIZE") && *std::getenv("WORLD_SIZE");
  e.world_size = static_cast<int>(env_int("WORLD_SIZE", 1, 1, 1 << 16));
  e.rank = static_cast<int>(env_int("RANK", 0, 0, 1 << 16));
  e.local_rank = static_cast<int>(env_int("LOCAL_RANK", 0, 0, 1 << 16));
  if (!has_world && e.rank != 0) throw UsageError("environment: RANK is set but WORLD_SIZE is not");
  if (e.rank >= e.world_size)
    throw UsageError("environment: RANK=" + std::to_string(e.rank) + " is not below WORLD_SIZE=" + std::to_string(e.world_size));
  if (!e.distributed()) return e;
  const char* addr = std::getenv("MASTER_ADDR");
  if (!addr || !*addr) throw UsageError("environment: WORLD_SIZE>1 needs MASTER_ADDR (the host of rank 0)");
  e.master_addr = addr;
  if (!std::getenv("MASTER_PORT") || !*std::getenv("MASTER_PORT"))
    throw UsageError("environment: WORLD_SIZE>1 needs MASTER_PORT (a free TCP port on rank 0's host)");
  e.master_port = static_cast<int>(env_int("MASTER_PORT", 0, 1, 65535));
  return e;
}

struct Group::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  torch::Device comm = torch::kCPU;  // where the collectives' buffers live
  const char* backend = "Gloo";
};

Group::Group(const Env& env, std::chrono::milliseconds timeout, const torch::Device& device) : env_(env) {
  if (!env.distributed()) return;
  impl_ = std::make_unique<Impl>();
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = static_cast<std::size_t>(env.world_size);
    so.waitWorkers = true;
    so.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    impl_->store = c10::make_intrusive<c10d::PrefixStore>("hfr", tcp);
#if HFR_HAVE_NCCL
    if (device.is_cuda()) {  // NCCL between the GPUs: buffers stay on the device
      auto nopts = c10d::ProcessGroupNCCL::Options::create();
      nopts->timeout = timeout;
      impl_->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env.rank, env.world_size, nopts);
      impl_->comm = device;
      impl_->backend = "NCCL";
      return;
    }
#else
    (void)device;
#endif
    // Gloo: CPU buffers (CUDA tensors are copied to the host and back)
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname && *ifname)
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    opts->threads = 2;
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world_size, opts);
  } catch (const std::exception& ex) {
    impl_.reset();
    throw Error("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) + ": could not join the group at " +
                env.master_addr + ":" + std::to_string(env.master_port) + ": " + ex.what());
  }
}

Group::Group() = default;
Group::~Group() = default;
Group::Group(Group&&) noexcept = default;
Group& Group::operator=(Group&&) noexcept = default;

namespace {

void wait(const c10::intrusive_ptr<c10d::Work>& work, int rank, const char* what) {
  try {
    work->wait();
  } catch (const std::exception& ex) {
    throw Error("rank " + std::to_string(rank) + ": " + what + " failed (did another rank stop?): " + ex.what());
  }
}

}  // namespace

namespace {

// The tensors as one float buffer on `device` (one collective for all of
// them): packed where the first tensor lives, then moved in one copy (CUDA
// gradients reduced through Gloo cross to the host once, not per tensor) ...
torch::Tensor pack(const std::vector<torch::Tensor>& tensors, const torch::Device& device) {
  const torch::Device home = tensors.front().device();
  std::vector<torch::Tensor> flat;
  for (const auto& t : tensors) flat.push_back(t.detach().reshape({-1}).to(home, torch::kFloat));
  return torch::cat(flat).to(device);
}

// ... and back into them, in place (the buffer moved back in one copy first).
void unpack(const torch::Tensor& buf, const std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard ng;
  const torch::Tensor src = buf.to(tensors.front().device());
  std::int64_t off = 0;
  for (const auto& t : tensors) {
    torch::Tensor dst = t;
    dst.copy_(src.narrow(0, off, t.numel()).view(t.sizes()));
    off += t.numel();
  }
}

}  // namespace

void Group::allreduce_sum(const std::vector<torch::Tensor>& tensors) {
  if (!impl_ || tensors.empty()) return;
  std::vector<torch::Tensor> buf{pack(tensors, impl_->comm)};
  wait(impl_->pg->allreduce(buf), env_.rank, "allreduce");
  unpack(buf[0], tensors);
}

void Group::broadcast_from_root(const std::vector<torch::Tensor>& tensors) {
  if (!impl_ || tensors.empty()) return;
  std::vector<torch::Tensor> buf{pack(tensors, impl_->comm)};
  c10d::BroadcastOptions bo;
  bo.rootRank = 0;
  wait(impl_->pg->broadcast(buf, bo), env_.rank, "broadcast");
  unpack(buf[0], tensors);
}

std::vector<std::uint64_t> Group::allgather(std::uint64_t value) {
  if (!impl_) return {value};
  // one slot per rank, the others zero: a sum gathers them
  torch::Tensor slots = torch::zeros({env_.world_size}, torch::kLong);
  slots[env_.rank] = static_cast<std::int64_t>(value);
  std::vector<torch::Tensor> buf{slots.to(impl_->comm)};
  wait(impl_->pg->allreduce(buf), env_.rank, "allgather");
  buf[0] = buf[0].to(torch::kCPU);
  std::vector<std::uint64_t> out(static_cast<std::size_t>(env_.world_size));
  for (int r = 0; r < env_.world_size; ++r) out[static_cast<std::size_t>(r)] = static_cast<std::uint64_t>(buf[0][r].item<std::int64_t>());
  return out;
}

const char* Group::backend() const { return impl_ ? impl_->backend : "none"; }

void Group::barrier() {
  if (!impl_) return;
  wait(impl_->pg->barrier(), env_.rank, "barrier");
}

}  // namespace hfr::dist

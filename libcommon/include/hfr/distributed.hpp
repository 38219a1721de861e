// Data-parallel training across processes and machines: a process group of
// torch.distributed (c10d) set up from the usual environment
//
//   RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT   (LOCAL_RANK is accepted)
//
// as torchrun and Slurm wrappers set it. Rank 0 hosts the TCP rendezvous
// store on MASTER_ADDR:MASTER_PORT; every rank then joins a Gloo group
// (CPU buffers; GLOO_SOCKET_IFNAME picks the network interface, as in
// PyTorch), or an NCCL group for a CUDA device when LibTorch was built with
// NCCL (HFR_HAVE_NCCL; else CUDA tensors go through Gloo via host copies). Without WORLD_SIZE (or with WORLD_SIZE=1) there is no group and
// every call is a no-op on one process.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace hfr::dist {

struct Env {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  bool distributed() const { return world_size > 1; }
};

// Reads and checks the environment (UsageError naming the variable when a
// value is malformed or inconsistent).
Env env_from_environment();

class Group {
 public:
  // No group: one process.
  Group();
  // Joins the group `env` describes; waits up to `timeout` for the others.
  // `device`: where this rank's tensors live (a CUDA device selects NCCL
  // when built with it).
  explicit Group(const Env& env, std::chrono::milliseconds timeout = std::chrono::minutes(10),
                 const torch::Device& device = torch::kCPU);
  ~Group();
  Group(Group&&) noexcept;
  Group& operator=(Group&&) noexcept;

  int rank() const { return env_.rank; }
  int size() const { return env_.world_size; }
  bool active() const { return impl_ != nullptr; }
  const char* backend() const;  // "Gloo", "NCCL" or "none"

  // Sums the float tensors across ranks in place, packed into one buffer (one
  // collective per call). The result is bitwise the same on every rank.
  void allreduce_sum(const std::vector<torch::Tensor>& tensors);
  // Copies rank 0's values into every rank's tensors, in place.
  void broadcast_from_root(const std::vector<torch::Tensor>& tensors);
  // Every rank's 64-bit value, in rank order.
  std::vector<std::uint64_t> allgather(std::uint64_t value);
  void barrier();

 private:
  struct Impl;
  Env env_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hfr::dist

// Test helpers for hand-built executor graphs.
#pragma once
#include <string>

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "hfr/graph.hpp"

namespace hfr::test {

// Adds a Const node named `name` holding t.
inline void add_const(nn::Graph& g, const std::string& name, torch::Tensor t) {
  g.nodes.push_back({name, "Const", {}, nlohmann::json::object()});
  g.consts[name] = std::move(t);
}

}  // namespace hfr::test

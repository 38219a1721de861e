// Include this instead of <catch2/catch.hpp> in tests that use LibTorch:
// c10's logging header defines a CHECK macro (abort on failure) that would
// silently replace Catch's CHECK assertion.
#pragma once
#include <ATen/ATen.h>
#include <torch/torch.h>
#undef CHECK
#include <catch2/catch.hpp>

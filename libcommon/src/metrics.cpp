#include "hfr/metrics.hpp"

#include "hfr/plot.hpp"

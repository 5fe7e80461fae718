// The projections walfold has, and which one a configuration selects (`projection:`, default
// bank). The configuration checks `tables:` and the priority rules against the selected one's
// ProjectionConfigSpec (config/config.h projection_config_specs(), defined here).
#pragma once

#include <memory>

#include "config/config.h"
#include "projections/projection.h"

namespace walfold::projections {

// The projection `cfg` selects, built from its section (the user directory reads its salt
// file here: ConfigError naming the file, never its content). Shared: the bank is one static
// instance.
std::shared_ptr<const Projection> projection_for(const Config& cfg);

}  // namespace walfold::projections

// The projections walfold has, and which one a configuration selects (`projection:`, default
// bank). config/ checks `tables:` and the priority rules against the selected one's
// ProjectionConfigSpec; it links no projection, so the specs come from here: config_specs(),
// and load_config / parse_config / check_config_* that pass them.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "projections/projection.h"

namespace walfold::projections {

// Every projection walfold has.
const ProjectionSpecs& config_specs();

// config/config.h's functions checked against config_specs(): what the commands read.
Config load_config(const std::string& path);
Config parse_config(const std::string& yaml_text, const std::string& source_name);
ConfigCheck check_config_file(const std::string& path);
ConfigCheck check_config_text(const std::string& yaml_text, const std::string& source_name);

// The secret files the selected projection reads from its section ({"section.key", path}; a key
// not set has an empty path), for `walfold check-config`; none for a projection without any.
std::vector<std::pair<std::string, std::string>> secret_files(const Config& cfg);

// The projection `cfg` selects, built from its section (the user directory reads its salt
// file here: ConfigError naming the file, never its content). Shared: the bank is one static
// instance.
std::shared_ptr<const Projection> projection_for(const Config& cfg);

}  // namespace walfold::projections

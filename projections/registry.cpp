#include "projections/registry.h"

#include "common/error.h"
#include "projections/bank/bank.h"
#include "projections/bank/schema.h"
#include "projections/user_directory/user_directory.h"

namespace walfold {
namespace {

// The bank: its models from its tables(); priority rules may test a transaction's kind and
// amount (config/README.md).
const ProjectionConfigSpec& bank_spec() {
  static const ProjectionConfigSpec spec = [] {
    ProjectionConfigSpec s;
    s.name = "bank";
    for (const auto& t : projections::bank::tables()) s.models.push_back(t.model);
    using Op = RowCondition::Op;
    const std::string tx = projections::bank::table_name(projections::bank::kTransactions);
    const auto& cols = projections::bank::tables()[projections::bank::kTransactions].columns;
    s.rule_keys = {{"kind", tx, cols[projections::bank::kTxKind].name, Op::Equals},
                   {"amount_above", tx, cols[projections::bank::kTxAmount].name, Op::Above}};
    const int priorities[] = {3, 3, 5};
    for (std::size_t i = 0; i < s.models.size(); ++i)
      s.default_tables.push_back({"public", s.models[i], s.models[i], priorities[i]});
    return s;
  }();
  return spec;
}

}  // namespace

namespace projections {

const ProjectionSpecs& config_specs() {
  static const ProjectionSpecs specs{&bank_spec(), &user_directory::config_spec()};
  return specs;
}

Config load_config(const std::string& path) {
  return walfold::load_config(path, config_specs());
}

Config parse_config(const std::string& yaml_text, const std::string& source_name) {
  return walfold::parse_config(yaml_text, source_name, config_specs());
}

ConfigCheck check_config_file(const std::string& path) {
  return walfold::check_config_file(path, config_specs());
}

ConfigCheck check_config_text(const std::string& yaml_text, const std::string& source_name) {
  return walfold::check_config_text(yaml_text, source_name, config_specs());
}

std::vector<std::pair<std::string, std::string>> secret_files(const Config& cfg) {
  for (const auto* s : config_specs())
    if (s->name == cfg.projection && s->secret_files && cfg.projection_settings)
      return s->secret_files(*cfg.projection_settings);
  return {};
}

std::shared_ptr<const Projection> projection_for(const Config& cfg) {
  if (cfg.projection == "bank")
    return std::shared_ptr<const Projection>(std::shared_ptr<void>(), &bank::projection());
  if (cfg.projection == "user_directory") {
    const auto* s = dynamic_cast<const user_directory::Settings*>(cfg.projection_settings.get());
    if (!s) throw InternalError("the user_directory section was not read");
    std::string salt = s->salt_file.empty() ? "" : read_secret_file(s->salt_file);
    return std::make_shared<user_directory::UserDirectoryProjection>(*s, std::move(salt));
  }
  throw ConfigError("projection '" + cfg.projection + "' is not one walfold has");
}

}  // namespace projections
}  // namespace walfold

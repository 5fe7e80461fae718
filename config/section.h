// A projection's own section of the configuration file (e.g. `user_directory:`), read with the
// checks every section gets: unknown keys with a near name, values of the wrong type, every
// problem with its line and column, all of them at once. A projection's parse_section
// (ProjectionConfigSpec) gets one of these; config/config.cpp implements it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace walfold {

struct ConfigProblem;

class SectionReader {
 public:
  virtual ~SectionReader() = default;
  // The section (IsDefined() false when the file has none) and its key.
  virtual const YAML::Node& section() const = 0;
  virtual const std::string& key() const = 0;
  // `node` is a mapping whose keys are all in `allowed` (each other key is a problem); false
  // when it is no mapping.
  virtual bool check_keys(const YAML::Node& node, const std::string& where,
                          const std::vector<std::string>& allowed) = 0;
  // parent[key] as text; `fallback` when absent (or, with a problem, not a scalar).
  virtual std::string text(const YAML::Node& parent, const std::string& key,
                           const std::string& where, const std::string& fallback) = 0;
  // A problem at `at` (without a position when `at` is undefined).
  virtual void error(const YAML::Node& at, const std::string& message) = 0;
  // The closest of `candidates` to `word` (config.h closest_name), for "did you mean".
  static std::string near(const std::string& word, const std::vector<std::string>& candidates);
};

}  // namespace walfold

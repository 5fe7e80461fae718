// The man page (packaging/walfold.1) and `--help` agree: every option that a command's --help
// lists is documented in that command's subsection of the man page's OPTIONS, and every option
// documented there exists. Both sides are parsed; nothing is listed by hand here, so a new
// option or subcommand fails this test until the man page describes it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/harness/servers.h"

namespace walfold::test {
namespace {

using OptionSet = std::set<std::string>;

std::string join(const std::vector<std::string>& v, const std::string& sep = " ") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string join(const OptionSet& v) {
  return join(std::vector<std::string>(v.begin(), v.end()));
}

OptionSet minus(const OptionSet& a, const OptionSet& b) {
  OptionSet out;
  for (const auto& x : a)
    if (!b.count(x)) out.insert(x);
  return out;
}

// One command's --help, parsed: the option names of its "Options:" block and the names in its
// "Subcommands:" block. CLI11 prints an option as two spaces, then its names separated by commas
// (e.g. "-c,--config"), then its type and description after a space.
struct Help {
  OptionSet options;
  std::vector<std::string> subcommands;
};

Help parse_help(const std::string& text) {
  Help h;
  std::istringstream in(text);
  std::string line, block;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != ' ') {
      block = line;
      continue;
    }
    if (line.size() < 3 || line.compare(0, 2, "  ") != 0 || line[2] == ' ') continue;
    std::string first = line.substr(2, line.find(' ', 2) - 2);
    if (block == "Options:") {
      std::istringstream names(first);
      std::string n;
      while (std::getline(names, n, ','))
        if (!n.empty() && n[0] == '-') h.options.insert(n);
    } else if (block == "Subcommands:") {
      h.subcommands.push_back(first);
    }
  }
  return h;
}

// Every command path ("" for the program itself, "run", "queue dead purge", ...) with its
// --help, found by walking the "Subcommands:" blocks from the top.
std::map<std::string, Help> all_help() {
  std::map<std::string, Help> out;
  std::vector<std::vector<std::string>> todo{{}};
  while (!todo.empty()) {
    auto path = todo.back();
    todo.pop_back();
    std::vector<std::string> argv{walfold_binary()};
    argv.insert(argv.end(), path.begin(), path.end());
    argv.push_back("--help");
    auto r = run_command(argv, 30);
    EXPECT_EQ(r.status, 0) << join(argv) << ":\n" << r.output;
    Help h = parse_help(r.output);
    EXPECT_FALSE(h.options.empty()) << "no options parsed from `" << join(argv) << "`:\n"
                                    << r.output;
    for (const auto& sub : h.subcommands) {
      auto child = path;
      child.push_back(sub);
      todo.push_back(child);
    }
    out[join(path)] = h;
  }
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A roff line as text: font escapes and quotes dropped, "\-" and "\e" resolved, the macro name
// (".BR", ".B", ...) removed.
std::string roff_text(std::string line) {
  line = std::regex_replace(line, std::regex(R"(\\f[BIRP])"), "");
  line = std::regex_replace(line, std::regex(R"(\\-)"), "-");
  line = std::regex_replace(line, std::regex(R"(\\e)"), "\\");
  line = std::regex_replace(line, std::regex(R"(^\.[A-Z]+\s*)"), "");
  line.erase(std::remove(line.begin(), line.end(), '"'), line.end());
  line = std::regex_replace(line, std::regex(R"(\s+)"), " ");
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

// The option names on a roff line (a .TP term), e.g. ".BR \-c ", " \-\-config" -> -c, --config.
OptionSet roff_options(const std::string& line) {
  OptionSet out;
  std::string text = " " + roff_text(line);
  static const std::regex opt(R"([\s,|(](--?[A-Za-z][A-Za-z0-9-]*))");
  for (std::sregex_iterator it(text.begin(), text.end(), opt), end; it != end; ++it)
    out.insert((*it)[1].str());
  return out;
}

struct ManPage {
  // OPTIONS: subsection title -> the options named in its .TP terms. "walfold run" -> "run",
  // "walfold" -> "", "Every command" -> "*".
  std::map<std::string, OptionSet> options;
  // SUBCOMMANDS: the text of every .TP term.
  std::vector<std::string> subcommand_terms;
};

ManPage parse_man(const std::string& text) {
  ManPage m;
  std::istringstream in(text);
  std::string line, section, subsection;
  bool term_next = false;
  while (std::getline(in, line)) {
    if (line.rfind(".SH ", 0) == 0) {
      section = roff_text(line);
      subsection.clear();
      term_next = false;
      continue;
    }
    if (line.rfind(".SS ", 0) == 0) {
      subsection = roff_text(line);
      if (subsection == "Every command") {
        subsection = "*";
      } else if (subsection == "walfold") {
        subsection = "";
      } else if (subsection.rfind("walfold ", 0) == 0) {
        subsection = subsection.substr(8);
      } else {
        ADD_FAILURE() << "OPTIONS subsection '" << subsection
                      << "' is neither 'Every command' nor 'walfold [SUBCOMMAND]'";
      }
      if (section == "OPTIONS") m.options[subsection];
      term_next = false;
      continue;
    }
    if (line == ".TP") {
      term_next = true;
      continue;
    }
    if (!term_next) continue;
    term_next = false;
    if (section == "OPTIONS") {
      EXPECT_FALSE(m.options.empty()) << "an option before the first .SS in OPTIONS: " << line;
      for (const auto& o : roff_options(line)) m.options[subsection].insert(o);
    } else if (section == "SUBCOMMANDS") {
      m.subcommand_terms.push_back(roff_text(line));
    }
  }
  return m;
}

const OptionSet kHelp{"-h", "--help"};

TEST(ManPage, EveryCommandsOptionsMatchItsHelp) {
  const auto help = all_help();
  const auto man = parse_man(read_file(source_dir() + "/packaging/walfold.1"));
  ASSERT_GT(help.size(), 8u) << "fewer commands than expected were found in --help";
  ASSERT_TRUE(man.options.count("*")) << "no 'Every command' subsection in OPTIONS";
  EXPECT_EQ(man.options.at("*"), kHelp)
      << "'Every command' documents the options every --help lists";

  for (const auto& [path, h] : help) {
    const std::string cmd = path.empty() ? "walfold" : "walfold " + path;
    EXPECT_TRUE(minus(kHelp, h.options).empty()) << cmd << " --help lacks -h,--help";
    const OptionSet own = minus(h.options, kHelp);
    auto it = man.options.find(path);
    const OptionSet documented = it == man.options.end() ? OptionSet{} : it->second;
    EXPECT_TRUE(minus(own, documented).empty())
        << cmd << ": in --help but not in the man page's OPTIONS subsection \"" << cmd
        << "\": " << join(minus(own, documented));
    EXPECT_TRUE(minus(documented, own).empty())
        << cmd << ": in the man page's OPTIONS but not in --help: " << join(minus(documented, own));
  }
  for (const auto& [path, opts] : man.options) {
    if (path == "*") continue;
    EXPECT_TRUE(help.count(path)) << "the man page has options for 'walfold " << path
                                  << "', which is not a command (" << join(opts) << ")";
  }
}

TEST(ManPage, EverySubcommandIsDescribed) {
  const auto help = all_help();
  const auto man = parse_man(read_file(source_dir() + "/packaging/walfold.1"));
  ASSERT_FALSE(man.subcommand_terms.empty()) << "no .TP terms in SUBCOMMANDS";
  for (const auto& [path, h] : help) {
    if (path.empty() || !h.subcommands.empty()) continue;  // the program, or a group
    bool found = false;
    for (const auto& term : man.subcommand_terms) {
      // "queue dead purge KEY|--all --yes" describes "queue dead purge"; "reconcile --verify"
      // describes "reconcile".
      auto pos = term.find(path);
      if (pos != std::string::npos &&
          (pos + path.size() == term.size() || !std::isalnum(term[pos + path.size()]))) {
        found = true;
        break;
      }
    }
    EXPECT_TRUE(found) << "walfold " << path << " is not described in the man page's SUBCOMMANDS";
  }
}

// The parsers themselves, on text whose answer is known.
TEST(ManPage, ParsersReadHelpAndRoff) {
  auto h = parse_help(
      "Usage: walfold run [OPTIONS]\n\nOptions:\n"
      "  -h,--help                   Print this help message and exit\n"
      "  -c,--config TEXT=/etc/walfold/walfold.yaml\n"
      "                              Configuration file\n"
      "  --verify Excludes: --repair --full\n"
      "\nSubcommands:\n  stats                       Keys\n  dead     Dead letters\n");
  EXPECT_EQ(h.options, (OptionSet{"-h", "--help", "-c", "--config", "--verify"}));
  EXPECT_EQ(h.subcommands, (std::vector<std::string>{"stats", "dead"}));

  auto m = parse_man(
      ".SH SUBCOMMANDS\n.TP\n.BR \"queue dead purge \" \\fIKEY\\fR|\\-\\-all \" \\-\\-yes\"\n"
      "Drop.\n.SH OPTIONS\n.SS \"walfold run\"\n.TP\n.BR \\-c \", \" \\-\\-config \" "
      "\\fIFILE\\fR\"\nRead \\-\\-not\\-a\\-term here.\n.TP\n.BR \\-\\-stop\\-at\\-lsn \" "
      "\\fIX/Y\\fR|\" current\nExit.\n.SH EXIT STATUS\n.TP\n.B 64\n");
  EXPECT_EQ(m.options.at("run"), (OptionSet{"-c", "--config", "--stop-at-lsn"}));
  ASSERT_EQ(m.subcommand_terms.size(), 1u);
  EXPECT_EQ(m.subcommand_terms[0], "queue dead purge KEY|--all --yes");
}

}  // namespace
}  // namespace walfold::test
